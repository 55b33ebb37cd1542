"""Metrics and signals in process: the real middleware and consumers, a real in-memory
channel layer, Redis for the store's counters. (Through Daphne: tests/test_operations_live.py.)"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import prometheus_client
import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import RequestFactory

from chatdemo.routing import websocket_urlpatterns
from wsauth import admission, metrics, revoke, signals, tickets
from wsauth import conf as wsauth_conf
from wsauth.admission.places import all_sockets_sync
from wsauth.checks import check_settings
from wsauth.jwks import get_jwks_cache
from wsauth.middleware import WSAuthMiddlewareStack
from wsauth.testing import TestIssuer

pytestmark = pytest.mark.django_db(transaction=True)
application = WSAuthMiddlewareStack(URLRouter(websocket_urlpatterns))


def value(name: str, **labels: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """Samples' change over a block: the registry is the process's, shared by tests."""

    def __init__(self, *samples: tuple[str, dict[str, str]]) -> None:
        self.samples = samples
        self.before = [value(name, **labels) for name, labels in samples]

    def __call__(self) -> list[float]:
        return [
            value(name, **labels) - b
            for (name, labels), b in zip(self.samples, self.before, strict=True)
        ]


def hs(outcome: str, reason: str, method: str) -> tuple[str, dict[str, str]]:
    labels = {"outcome": outcome, "reason": reason, "method": method}
    return "wsauth_handshakes_total", labels


@pytest.fixture
def heard() -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Every signal's arguments, as receivers get them (a sync receiver and an async one)."""
    seen: dict[str, list[dict[str, Any]]] = {"accepted": [], "refused": [], "closed": []}

    def on_accepted(sender: Any, **kwargs: Any) -> None:  # sync: runs in a thread
        seen["accepted"].append({"sender": sender, **kwargs})

    async def on_refused(sender: Any, **kwargs: Any) -> None:
        seen["refused"].append({"sender": sender, **kwargs})

    def on_closed(sender: Any, **kwargs: Any) -> None:
        seen["closed"].append({"sender": sender, **kwargs})

    signals.handshake_accepted.connect(on_accepted)
    signals.handshake_refused.connect(on_refused)
    signals.socket_closed.connect(on_closed)
    yield seen
    signals.handshake_accepted.disconnect(on_accepted)
    signals.handshake_refused.disconnect(on_refused)
    signals.socket_closed.disconnect(on_closed)


async def closed_code(ws: Any) -> int:
    output = await ws.receive_output(timeout=3)
    assert output["type"] == "websocket.close", output
    return int(output["code"])


async def test_handshakes_sockets_and_closes_are_counted() -> None:
    issuer = TestIssuer()
    delta = Delta(
        hs("accepted", "ok", "subprotocol"),
        hs("refused", "bad_signature", "subprotocol"),
        hs("refused", "no_credentials", "none"),
        ("wsauth_socket_closes_total", {"code": "1000"}),
        ("wsauth_socket_duration_seconds_count", {}),
    )
    with issuer.activate():
        ws = await issuer.connect(application, "/ws/echo/", name="Ann")
        assert await ws.receive_from() == "Hello Ann"
        assert value("wsauth_sockets_open", method="subprotocol") >= 1
        opened = value("wsauth_sockets_open", method="subprotocol")
        forged = issuer.token()[:-4] + "AAAA"
        bad = issuer.communicator(application, "/ws/echo/", token=forged)
        assert not (await bad.connect(timeout=5))[0]
        none = WebsocketCommunicator(application, "/ws/echo/")
        assert not (await none.connect(timeout=5))[0]
        await ws.disconnect()
        await asyncio.sleep(0.05)
        assert value("wsauth_sockets_open", method="subprotocol") == opened - 1
    assert delta() == [1, 1, 1, 1, 1]


async def test_server_close_code_and_revocation_are_counted(heard) -> None:
    issuer = TestIssuer()
    delta = Delta(
        ("wsauth_socket_closes_total", {"code": "4403"}),
        ("wsauth_revocations_delivered_total", {"target": "user"}),
        ("wsauth_revoked_sockets_total", {"target": "user"}),
        ("wsauth_revocation_latency_seconds_count", {}),
    )
    with issuer.activate():
        ws = await issuer.connect(application, "/ws/echo/", sub="rev-ann")
        await ws.receive_from()
        user = await get_user_model().objects.aget(oidc_identities__subject="rev-ann")
        await revoke.adisconnect_user(user, reason="test")
        assert await closed_code(ws) == 4403
        await ws.wait()
        for _ in range(50):  # the broadcast's copy reaches this process's listener too
            if delta()[1]:
                break
            await asyncio.sleep(0.02)
    closes, delivered, revoked_sockets, latencies = delta()
    assert (closes, delivered, latencies) == (1, 1, 1)
    # The local delivery closed it; the broadcast's copy found it closing.
    assert revoked_sockets in (0, 1)
    [closed] = heard["closed"]
    assert closed["code"] == 4403 and closed["user"].pk == user.pk


async def test_signals_carry_what_an_audit_log_needs_and_never_the_credential(heard) -> None:
    issuer = TestIssuer()
    with issuer.activate():
        token = issuer.token(sub="sig-ann", name="Ann")
        ws = issuer.communicator(application, "/ws/echo/", token=token, origin="http://testserver")
        # (the origin is refused: not in ALLOWED_ORIGINS) -> a refusal with an origin
        assert not (await ws.connect(timeout=5))[0]
        ws = await issuer.connect(application, "/ws/echo/", token=token)
        await ws.receive_from()
        started = time.time()
        await asyncio.sleep(0.2)
        await ws.disconnect(code=1001)
        await asyncio.sleep(0.05)
    [refused] = heard["refused"]
    assert refused["reason"] == "origin_not_allowed"
    assert refused["method"] == "subprotocol"  # what it offered, refused at the origin gate
    assert refused["origin"] == "http://testserver" and refused["address"]
    assert refused["limited"] is False and refused["path"] == "/ws/echo/"
    [accepted] = heard["accepted"]
    assert accepted["user"].get_username() and accepted["method"] == "subprotocol"
    assert accepted["claims"]["sub"] == "sig-ann" and accepted["expires_at"] > started
    assert accepted["socket_id"].count("/") == 1 and accepted["path"] == "/ws/echo/"
    [closed] = heard["closed"]
    assert closed["socket_id"] == accepted["socket_id"]
    assert closed["code"] == 1001 and 0.2 <= closed["duration"] < 5
    assert closed["method"] == "subprotocol" and closed["user"].pk == accepted["user"].pk
    everything = repr(heard)
    assert token not in everything and token.split(".")[2] not in everything
    assert all(e["sender"].__name__ == "WSAuthMiddleware" for e in [refused, accepted, closed])


async def test_a_broken_receiver_does_not_fail_the_handshake(caplog) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("audit database down")

    signals.handshake_accepted.connect(broken)
    try:
        issuer = TestIssuer()
        with issuer.activate():
            ws = await issuer.connect(application, "/ws/echo/", name="Bea")
            assert await ws.receive_from() == "Hello Bea"
            await ws.disconnect()
    finally:
        signals.handshake_accepted.disconnect(broken)
    assert "audit database down" in caplog.text  # Django logs it (send_robust)


async def test_first_message_authentication_is_a_handshake_too(heard) -> None:
    issuer = TestIssuer()
    delta = Delta(hs("accepted", "ok", "message"), hs("refused", "bad_signature", "message"))
    with issuer.activate():
        for token, expected in ((issuer.token(sub="fm-ann"), None), ("x.y.z", 4401)):
            ws = WebsocketCommunicator(application, "/ws/echo/inband/")
            assert (await ws.connect(timeout=5))[0]
            await ws.send_to(text_data=json.dumps({"type": "wsauth.auth", "token": token}))
            if expected is None:
                assert (await ws.receive_from()).startswith("Hello")
                await ws.disconnect()
            else:
                assert await closed_code(ws) == expected
        await asyncio.sleep(0.05)
    accepted, refused = delta()
    assert accepted == 1 and refused in (0, 1)  # "x.y.z" may fail as malformed instead
    assert [a["method"] for a in heard["accepted"]] == ["message"]
    assert heard["accepted"][0]["socket_id"] and heard["refused"][0]["method"] == "message"
    # The first-message socket's close knows its user and id (the consumer's record).
    first = heard["closed"][0]
    assert first["socket_id"] == heard["accepted"][0]["socket_id"]
    assert first["user"].pk == heard["accepted"][0]["user"].pk


async def test_limits_and_refreshes_are_counted() -> None:
    issuer = TestIssuer()
    delta = Delta(
        ("wsauth_limit_hits_total", {"limit": "failed_auth_rate"}),
        hs("limited", "too_many_failures", "subprotocol"),
        ("wsauth_refreshes_total", {"outcome": "accepted"}),
        ("wsauth_refreshes_total", {"outcome": "refused"}),
    )
    with issuer.activate(FAILED_AUTH_RATE="2/minute"):
        for _ in range(3):
            bad = issuer.communicator(application, "/ws/echo/", token="a.b.c")
            await bad.connect(timeout=5)
            await bad.disconnect()
        ws = await issuer.connect(application, "/ws/echo/", sub="ref-ann")
        await ws.receive_from()
        fresh = issuer.token(sub="ref-ann")
        await ws.send_to(text_data=json.dumps({"type": "wsauth.refresh", "token": fresh}))
        assert json.loads(await ws.receive_from())["type"] == "wsauth.refreshed"
        await ws.send_to(text_data=json.dumps({"type": "wsauth.refresh", "token": "x.y.z"}))
        assert await closed_code(ws) == 4401
    assert delta() == [1, 1, 1, 1]


async def test_tickets_issued_redeemed_expired_and_invalid(monkeypatch) -> None:
    issuer = TestIssuer()
    delta = Delta(
        *(("wsauth_tickets_total", {"event": e}) for e in ("issued", "redeemed", "expired"))
    )
    invalid = value("wsauth_tickets_total", event="invalid")
    with issuer.activate():
        ticket, _ = await tickets.issue({"uid": 1})
        assert await tickets.redeem(ticket) is not None
        assert await tickets.redeem(ticket) is None  # used: invalid
        late, _ = await tickets.issue({"uid": 1}, ttl=1)
        monkeypatch.setattr(tickets.time, "time", lambda: time.time_ns() / 1e9 + 5)
        assert await tickets.redeem(late) is None  # past its life, still in the store
    assert delta() == [2, 1, 1]
    assert value("wsauth_tickets_total", event="invalid") == invalid + 1


async def test_jwks_fetches_and_key_set_age(issuer, wsauth_settings) -> None:
    before = value("wsauth_jwks_fetches_total", result="ok")
    cache = get_jwks_cache()
    assert await cache._refresh()
    assert value("wsauth_jwks_fetches_total", result="ok") == before + 1
    age = value("wsauth_jwks_age_seconds")
    assert 0 <= age < 5
    issuer.stop()  # the issuer is down: a failed fetch, the old keys kept (and aging)
    errors = value("wsauth_jwks_fetches_total", result="error")
    assert not await cache._refresh()
    assert value("wsauth_jwks_fetches_total", result="error") == errors + 1
    assert value("wsauth_jwks_age_seconds") >= age


def redis_caches(url: str) -> dict[str, Any]:
    return {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}


async def test_store_requests_and_errors_on_redis(settings, redis_url) -> None:
    settings.CACHES = redis_caches(redis_url)
    issuer = TestIssuer()
    delta = Delta(
        ("wsauth_store_requests_total", {"operation": "admit"}),
        ("wsauth_store_requests_total", {"operation": "release"}),
        ("wsauth_store_request_seconds_count", {"operation": "admit"}),
    )
    with issuer.activate(LIMITS_SYNC_INTERVAL=0):  # exact: one request per check
        ws = await issuer.connect(application, "/ws/echo/")
        await ws.receive_from()
        await ws.disconnect()
        await asyncio.sleep(0.05)
    assert delta() == [1, 1, 1]
    synced = Delta(
        ("wsauth_store_requests_total", {"operation": "admit"}),
        ("wsauth_store_requests_total", {"operation": "sync"}),
    )
    with issuer.activate():  # batched: none on the handshake, one sync for the batch
        for _ in range(3):
            ws = await issuer.connect(application, "/ws/echo/")
            await ws.receive_from()
            await ws.disconnect()
        await admission.sync_now()
    assert synced() == [0, 1]
    settings.CACHES = redis_caches("redis://127.0.0.1:9/0")  # nothing listens there
    errors = Delta(
        *(("wsauth_store_errors_total", {"operation": op}) for op in ("get_many", "admit"))
    )
    with issuer.activate():
        refused = issuer.communicator(application, "/ws/echo/", token=issuer.token())
        assert not (await refused.connect(timeout=6))[0]  # revocation fails closed
    assert sum(errors()) >= 1


async def test_per_socket_disconnect_closes_that_socket_only(settings, redis_url) -> None:
    settings.CACHES = redis_caches(redis_url)
    issuer = TestIssuer()
    with issuer.activate():
        echo = await issuer.connect(application, "/ws/echo/", sub="two-sockets")
        await echo.receive_from()
        chat = await issuer.connect(application, "/ws/chat/lobby/", sub="two-sockets")
        await admission.sync_now()  # the registry is written in batches
        listed = await asyncio.to_thread(all_sockets_sync)
        assert len(listed) == 2 and len({s["id"] for s in listed}) == 2
        [target] = [s for s in listed if s["path"] == "/ws/echo/"]
        await revoke.adisconnect_socket(target["id"], target["user"], reason="test")
        assert await closed_code(echo) == 4403
        await echo.disconnect()
        assert await chat.receive_nothing(timeout=0.3)  # the user's other socket stays
        await admission.sync_now()
        survivors = [s["id"] for s in await asyncio.to_thread(all_sockets_sync)]
        assert target["id"] not in survivors and len(survivors) == 1
        # Its credential stays valid: the same person opens a new socket.
        again = await issuer.connect(application, "/ws/echo/", sub="two-sockets")
        await again.receive_from()
        await again.disconnect()
        await chat.disconnect()


async def test_metrics_off_counts_nothing() -> None:
    issuer = TestIssuer()
    delta = Delta(hs("accepted", "ok", "subprotocol"))
    with issuer.activate(METRICS=False):
        assert metrics.active() is None
        ws = await issuer.connect(application, "/ws/echo/")
        await ws.receive_from()
        await ws.disconnect()
    assert delta() == [0]


def test_without_prometheus_client_everything_is_a_no_op(monkeypatch, settings) -> None:
    monkeypatch.setattr(metrics, "prometheus_client", None)
    wsauth_conf.reset()
    try:
        assert metrics.active() is None
        metrics.handshake("accepted", "ok", "ticket")  # nothing happens, nothing raises
        metrics.socket_closed("ticket", 1000, 1.0)
        response = metrics.metrics_view(RequestFactory().get("/metrics"))
        assert response.status_code == 501 and b"django-wsauth[metrics]" in response.content
        settings.WSAUTH = {**settings.WSAUTH, "METRICS": True}
        assert errors(check_settings()) == ["wsauth.E021"]
    finally:
        wsauth_conf.reset()


def errors(found: list[Any]) -> list[str]:
    return [e.id for e in found if e.id.startswith("wsauth.E")]


def test_a_bad_metrics_setting_fails_the_check(settings) -> None:
    settings.WSAUTH = {**settings.WSAUTH, "METRICS": "yes"}
    assert errors(check_settings()) == ["wsauth.E022"]
    settings.WSAUTH = {**settings.WSAUTH, "METRICS": True}
    assert errors(check_settings()) == []  # installed here


def test_exported_by_wsauths_view_and_by_django_prometheus() -> None:
    exports = pytest.importorskip(
        "django_prometheus.exports",
        reason="django-prometheus 2.5 caps Django < 6.1 (tox.ini installs it with 5.2 and 6.0)",
    )
    ExportToDjangoView = exports.ExportToDjangoView

    metrics.handshake("accepted", "ok", "ticket")
    for view in (metrics.metrics_view, ExportToDjangoView):
        response = view(RequestFactory().get("/metrics"))
        text = response.content.decode()
        assert response.status_code == 200
        assert 'wsauth_handshakes_total{method="ticket",outcome="accepted",reason="ok"}' in text
        assert "wsauth_deployment_sockets" in text and "wsauth_store_requests_total" in text


def test_labels_stay_bounded() -> None:
    assert metrics.reason_label("bad_signature") == "bad_signature"
    assert metrics.reason_label("Bad Reason: user@example.com") == "other"
    assert metrics.method_label("pending") == "message"
    assert metrics.method_label("something-else") == "none"
    assert metrics.close_code_label(4403) == "4403"
    assert metrics.close_code_label(4777) == "other"  # an application's own code
    text = prometheus_client.generate_latest().decode()
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE wsauth")]
    labels = set()
    for line in text.splitlines():
        if line.startswith("wsauth") and "{" in line:
            labels |= {part.split("=")[0] for part in line.split("{")[1].split("}")[0].split(",")}
    assert labels <= {"outcome", "reason", "method", "code", "target", "limit", "result"} | {
        "event",
        "operation",
        "le",
    }
    assert len(families) >= 15


def test_django_prometheus_namespace_prefixes_the_names(settings) -> None:
    settings.PROMETHEUS_METRIC_NAMESPACE = "myproject"
    registry = prometheus_client.CollectorRegistry()
    built = metrics.Metrics(registry)
    built.handshake("accepted", "ok", "ticket")
    text = prometheus_client.generate_latest(registry).decode()
    assert 'myproject_wsauth_handshakes_total{method="ticket"' in text
    assert "# TYPE myproject_wsauth_deployment_sockets gauge" in text


def test_multiprocess_mode_serves_the_collected_files(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    response = metrics.metrics_view(RequestFactory().get("/metrics"))
    assert response.status_code == 200
    # Only what the workers' files hold: the gauges read when scraped are not among them.
    assert b"wsauth_deployment_sockets" not in response.content
