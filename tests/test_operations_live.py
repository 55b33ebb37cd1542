"""Operations through real processes: two Daphne processes of the demo sharing Redis, a
real HTTP issuer. /metrics as Prometheus scrapes it, the whole deployment's sockets from
the registry, revocations and their latency, and the demo's audit log fed by the
signals. (The admin's live page and presence in Chromium: tests/test_browser.py.)"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.daphne import REDIS_URL, DaphneServer, flush_redis, manage, migrated_project_env
from tests.issuer import Issuer

PREFIX = "authorization_bearer_"
pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")


class Stack:
    def __init__(self, issuer: Issuer, env: dict[str, str], a: DaphneServer, b: DaphneServer):
        self.issuer, self.env, self.a, self.b = issuer, env, a, b


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # One per test: the metrics test counts from zero, and a scrape caches the
    # deployment-wide gauges for 5 s, so no other test may touch its processes first.
    tmp: Path = tmp_path_factory.mktemp("ops")
    issuer = Issuer().start()
    env = migrated_project_env(tmp, issuer, REDIS_URL, DEMO_AUDIT="1")
    a = DaphneServer(env, tmp / "a.log").start()
    b = DaphneServer(env, tmp / "b.log").start()
    yield Stack(issuer, env, a, b)
    a.stop()
    b.stop()
    issuer.stop()
    flush_redis()


def scrape(server: DaphneServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"{server.http}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def get(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def open_socket(server: DaphneServer, token: str, path: str = "/ws/echo/") -> ClientConnection:
    ws = connect(server.ws + path, subprotocols=["chat", PREFIX + token], open_timeout=10)
    if path == "/ws/echo/":
        assert ws.recv(timeout=5).startswith("Hello")
    return ws


def ticket_from(server: DaphneServer, token: str) -> str:
    request = urllib.request.Request(
        f"{server.http}/wsauth/ticket/", method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["ticket"]


def closed_with(ws: ClientConnection, timeout: float = 4) -> int | None:
    try:
        while True:
            ws.recv(timeout=timeout)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


def wait_for(check, timeout: float = 15):  # type: ignore[no-untyped-def]
    # Generous: the closes are counted once each server has seen them, late on a loaded CI.
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_metrics_of_each_process_and_of_the_deployment(stack: Stack) -> None:
    a, b, issuer = stack.a, stack.b, stack.issuer
    ann = issuer.token(sub="ops-ann", name="Ann")
    ben = issuer.token(sub="ops-ben", name="Ben")
    first = open_socket(a, ann)
    ticket = ticket_from(b, ann)  # issued by b, redeemed on a
    by_ticket = connect(f"{a.ws}/ws/echo/?ticket={ticket}", open_timeout=10)
    assert by_ticket.recv(timeout=5).startswith("Hello")
    on_b = open_socket(b, ben)
    with pytest.raises(InvalidStatus):
        connect(a.ws + "/ws/echo/", subprotocols=["chat", PREFIX + ann[:-4] + "AAAA"])

    # The registry is written in batches (LIMITS_SYNC_INTERVAL): past one sync, before
    # the first scrape (the deployment-wide gauges are cached for 5 s).
    time.sleep(1.2)
    at_a, at_b = scrape(a), scrape(b)
    assert get(at_a, "wsauth_sockets_open", method="subprotocol") == 1
    assert get(at_a, "wsauth_sockets_open", method="ticket") == 1
    assert get(at_b, "wsauth_sockets_open", method="subprotocol") == 1
    for samples in (at_a, at_b):  # the registry: the same on every process
        assert get(samples, "wsauth_deployment_sockets", method="subprotocol") == 2
        assert get(samples, "wsauth_deployment_sockets", method="ticket") == 1
        assert get(samples, "wsauth_deployment_processes") == 2
        assert get(samples, "wsauth_jwks_fetches_total", result="ok") == 1
        assert 0 <= get(samples, "wsauth_jwks_age_seconds") < 120
    hs = "wsauth_handshakes_total"
    assert get(at_a, hs, outcome="accepted", reason="ok", method="subprotocol") == 1
    assert get(at_a, hs, outcome="accepted", reason="ok", method="ticket") == 1
    assert get(at_a, hs, outcome="refused", reason="bad_signature", method="subprotocol") == 1
    assert get(at_b, "wsauth_tickets_total", event="issued") == 1
    assert get(at_a, "wsauth_tickets_total", event="redeemed") == 1
    # Admission asks memory; the store sees the batched syncs (and the ticket's GETDEL).
    assert get(at_a, "wsauth_store_requests_total", operation="sync") >= 1
    assert get(at_a, "wsauth_store_request_seconds_count", operation="sync") >= 1
    assert get(at_a, "wsauth_store_requests_total", operation="getdel") >= 1
    assert get(at_a, "wsauth_store_errors_total", operation="sync") == 0

    # An administrator revokes Ben (another process: the management command).
    manage(stack.env, "wsauth_disconnect", "--subject", "ops-ben", "--issuer", issuer.issuer)
    assert closed_with(on_b) == 4403
    first.close()
    by_ticket.close()

    def settled() -> tuple[dict, dict] | None:
        at_a, at_b = scrape(a), scrape(b)
        done = get(at_b, "wsauth_socket_closes_total", code="4403") == 1 and (
            get(at_a, "wsauth_socket_closes_total", code="1000") == 2
        )
        return (at_a, at_b) if done else None

    found = wait_for(settled)
    assert found, "closes not counted"
    at_a, at_b = found
    for samples in (at_a, at_b):  # every process hears the broadcast
        assert get(samples, "wsauth_revocations_delivered_total", target="user") == 1
        assert get(samples, "wsauth_revocation_latency_seconds_count") == 1
        assert get(samples, "wsauth_revocation_latency_seconds_bucket", le="2.0") == 1
    assert get(at_b, "wsauth_revoked_sockets_total", target="user") == 1
    assert get(at_a, "wsauth_sockets_open", method="subprotocol") == 0
    assert get(at_a, "wsauth_socket_duration_seconds_count") == 2
    assert get(at_a, "wsauth_socket_closes_total", code="1000") == 2


def test_the_demo_audit_log_is_fed_by_the_signals(stack: Stack) -> None:
    a, issuer = stack.a, stack.issuer
    token = issuer.token(sub="audit-cy", name="Cy")
    ws = open_socket(a, token, "/ws/chat/audited/")
    ws.close()
    with pytest.raises(InvalidStatus):
        # A bad signature (a trailing "x" makes the base64url non-canonical: malformed).
        connect(a.ws + "/ws/echo/", subprotocols=["chat", PREFIX + token[:-4] + "AAAA"])
    with pytest.raises(InvalidStatus):
        connect(a.ws + "/ws/echo/", origin="https://evil.example")

    def lines() -> list[str]:
        return [line for line in a.log().splitlines() if "chatdemo.audit" in line]

    assert wait_for(lambda: any("audit closed" in line and "audited" in line for line in lines()))
    log = "\n".join(lines())
    assert "audit accepted user=" in log and "sub=audit-cy method=subprotocol" in log
    assert "path=/ws/chat/audited/ origin=None address=127.0.0.1" in log
    assert "audit refused reason=bad_signature method=subprotocol" in log
    assert "audit refused reason=origin_not_allowed method=none" in log
    assert "origin=https://evil.example" in log
    assert "code=1000" in log
    assert token not in a.log() and token.split(".")[2] not in a.log()


def test_metrics_page_needs_no_login_but_serves_text_only(stack: Stack) -> None:
    # django-prometheus's convention: /metrics for Prometheus, guarded at the proxy.
    with urllib.request.urlopen(f"{stack.a.http}/metrics", timeout=10) as response:
        body = response.read().decode()
    assert "# TYPE wsauth_handshakes_total counter" in body
    assert PREFIX not in body and "ops-ann" not in body and "127.0.0.1" not in body
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{stack.a.http}/metrics/nothing", timeout=10)
    assert refused.value.code == 404
