"""Abuse limits through real Daphne processes sharing a real Redis: failures per address
(4429 for failing handshakes only, logged once), handshakes per user, sockets per user
across processes (first-frame sockets included) on leases that outlive a killed process
by one lease only, frame size (4009) and rate (4429), X-Forwarded-For only from trusted
proxies and by its rightmost untrusted hop, slow authentication."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.daphne import REDIS_URL, DaphneServer, flush_redis, migrated_project_env, with_overrides
from tests.issuer import Issuer

PREFIX = "authorization_bearer_"


class Stack:
    def __init__(self, issuer: Issuer, make: Callable[..., DaphneServer]) -> None:
        self.issuer, self.make = issuer, make


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("limits")
    issuer = Issuer().start()
    env = migrated_project_env(tmp, issuer, REDIS_URL)
    servers: list[DaphneServer] = []

    def make(**overrides: Any) -> DaphneServer:
        server_env = with_overrides(env, **overrides)
        server = DaphneServer(server_env, tmp / f"{uuid.uuid4().hex[:6]}.log").start()
        servers.append(server)
        return server

    yield Stack(issuer, make)
    for server in servers:
        server.stop()
    issuer.stop()
    flush_redis()


@pytest.fixture(autouse=True)
def fresh_counters(stack: Stack) -> None:
    """Every test's handshakes come from 127.0.0.1: start each with no counts."""
    flush_redis()


def hello(ws: ClientConnection) -> ClientConnection:
    assert ws.recv(timeout=5).startswith("Hello ")
    return ws


def close_code(ws: ClientConnection, within: float = 5.0) -> int:
    try:
        while True:
            ws.recv(timeout=within)
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        return closed.rcvd.code
    except TimeoutError:
        pytest.fail("not closed in time")


def attempt(server: DaphneServer, token: str, headers: dict[str, str] | None = None) -> Any:
    """Open and close a socket: "ok", 4429 (limited) or 403 (refused)."""
    try:
        with connect(
            server.ws + "/ws/echo/",
            subprotocols=["chat", PREFIX + token],
            additional_headers=headers,
            open_timeout=5,
        ) as ws:
            first = ws.recv(timeout=5)
            return "ok" if first.startswith("Hello ") else first
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        return closed.rcvd.code
    except InvalidStatus as exc:
        return exc.response.status_code


def test_user_handshake_rate_limited_and_logged_once(stack: Stack) -> None:
    server = stack.make(USER_HANDSHAKE_RATE="5/minute")
    token = stack.issuer.token(sub="rate-" + uuid.uuid4().hex[:6])
    results = [attempt(server, token) for _ in range(9)]
    assert results == ["ok"] * 5 + [4429] * 4
    assert server.log().count("reason=too_many_user_handshakes") == 1
    assert attempt(server, stack.issuer.token(sub="someone-else")) == "ok"  # per user


def test_user_handshake_rate_is_shared_by_processes_exactly(stack: Stack) -> None:
    """``LIMITS_SYNC_INTERVAL = 0``: every check is the store's own count."""
    a = stack.make(USER_HANDSHAKE_RATE="4/minute", LIMITS_SYNC_INTERVAL=0)
    b = stack.make(USER_HANDSHAKE_RATE="4/minute", LIMITS_SYNC_INTERVAL=0)
    token = stack.issuer.token(sub="shared-" + uuid.uuid4().hex[:6])
    results = [attempt(server, token) for server in (a, b, a, b, a, b)]
    assert results == ["ok"] * 4 + [4429] * 2


def test_batched_limits_overshoot_by_at_most_one_interval_per_process(stack: Stack) -> None:
    """The default: counted in each process, synced every LIMITS_SYNC_INTERVAL. Within an
    interval each process admits at most the limit on its own count; once synced, the
    deployment's count holds on every process."""
    interval = 1.0
    a = stack.make(USER_HANDSHAKE_RATE="4/minute", LIMITS_SYNC_INTERVAL=interval)
    b = stack.make(USER_HANDSHAKE_RATE="4/minute", LIMITS_SYNC_INTERVAL=interval)
    token = stack.issuer.token(sub="batched-" + uuid.uuid4().hex[:6])
    started = time.monotonic()
    burst = [attempt(server, token) for server in (a, b) * 6]
    assert time.monotonic() - started < interval  # one interval: no sync in between
    admitted = burst.count("ok")
    assert 4 <= admitted <= 2 * 4  # limit <= admitted <= processes x limit
    assert burst[:8].count("ok") == admitted and set(burst[8:]) == {4429}
    time.sleep(interval * 2.5)  # both processes synced
    assert [attempt(server, token) for server in (a, b, a, b)] == [4429] * 4


def bad_token(stack: Stack) -> str:
    return stack.issuer.token()[:-8] + "AAAAAAAA"


def test_failures_get_4429_and_valid_tokens_still_get_in(stack: Stack) -> None:
    """The QA machine and the foreign page: failures from one address are throttled as
    failures; a valid token from that address is never refused for them."""
    server = stack.make(FAILED_AUTH_RATE="3/minute")
    bad = bad_token(stack)
    assert [attempt(server, bad) for _ in range(5)] == [403] * 3 + [4429] * 2
    good = stack.issuer.token()
    assert [attempt(server, good) for _ in range(3)] == ["ok"] * 3
    assert attempt(server, bad) == 4429
    assert server.log().count("reason=too_many_failures") == 1


def test_forwarded_for_is_believed_only_from_trusted_proxies(stack: Stack) -> None:
    bad = bad_token(stack)
    untrusted = stack.make(FAILED_AUTH_RATE="2/minute")
    forged = [attempt(untrusted, bad, {"X-Forwarded-For": f"198.51.100.{i}"}) for i in range(4)]
    assert forged == [403, 403, 4429, 4429]  # a client cannot pick its own address
    assert "not in WSAUTH['TRUSTED_PROXIES']" in untrusted.log()

    behind_proxy = stack.make(FAILED_AUTH_RATE="2/minute", TRUSTED_PROXIES=["127.0.0.1"])
    per_client = [
        attempt(behind_proxy, bad, {"X-Forwarded-For": f"203.0.113.7, 198.51.100.{i}"})
        for i in (1, 1, 1, 2)
    ]
    assert per_client == [403, 403, 4429, 403]  # the rightmost untrusted hop counts
    assert "client=198.51.100.1" in behind_proxy.log()


def test_rotating_forged_hops_behind_nginx_still_reach_the_limit(stack: Stack) -> None:
    """nginx's ``$proxy_add_x_forwarded_for`` appends the real peer to what the client
    sent: 45 bad tokens, each with a new forged leftmost hop, count as one client."""
    server = stack.make(FAILED_AUTH_RATE="30/minute", TRUSTED_PROXIES=["127.0.0.1"])
    bad = bad_token(stack)
    results = [
        attempt(server, bad, {"X-Forwarded-For": f"10.{i}.{i}.{i}, 198.51.100.77"})
        for i in range(45)
    ]
    assert results == [403] * 30 + [4429] * 15


def synced() -> None:
    """Past two LIMITS_SYNC_INTERVAL (0.5 s): each process knows the others' counts."""
    time.sleep(1.2)


def test_sockets_per_user_across_processes(stack: Stack) -> None:
    a = stack.make(MAX_SOCKETS_PER_USER=3)
    b = stack.make(MAX_SOCKETS_PER_USER=3)
    token = stack.issuer.token(sub="many-" + uuid.uuid4().hex[:6])
    other = stack.issuer.token(sub="other-" + uuid.uuid4().hex[:6])
    with ExitStack() as stack_:
        for server in (a, b, a):
            ws = stack_.enter_context(
                connect(server.ws + "/ws/echo/", subprotocols=["chat", PREFIX + token])
            )
            hello(ws)
        synced()
        assert attempt(b, token) == 4429
        assert attempt(a, other) == "ok"  # someone else is not affected
    # Closed sockets give their places back.
    deadline = time.monotonic() + 5
    while attempt(b, token) != "ok":
        assert time.monotonic() < deadline, "places were not released"
        time.sleep(0.2)


def first_frame(server: DaphneServer, token: str, sockets: ExitStack) -> Any:
    """A socket on the first-frame route authenticated in band: "ok" (the socket stays
    open until ``sockets`` closes) or the close code."""
    ws = sockets.enter_context(
        connect(server.ws + "/ws/echo/inband/", subprotocols=["chat"], open_timeout=5)
    )
    ws.send(json.dumps({"type": "wsauth.auth", "token": token}))
    try:
        first = ws.recv(timeout=5)
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        return closed.rcvd.code
    return "ok" if first.startswith("Hello ") else first


def test_first_frame_sockets_take_the_users_places(stack: Stack) -> None:
    server = stack.make(MAX_SOCKETS_PER_USER=2)
    token = stack.issuer.token(sub="inband-" + uuid.uuid4().hex[:6])
    with ExitStack() as sockets:
        assert [first_frame(server, token, sockets) for _ in range(3)] == ["ok", "ok", 4429]
        assert attempt(server, token) == 4429  # by handshake too: the same places
    assert "MAX_SOCKETS_PER_USER" in server.log()
    # Closed first-frame sockets give their places back.
    deadline = time.monotonic() + 5
    while attempt(server, token) != "ok":
        assert time.monotonic() < deadline, "places were not released"
        time.sleep(0.2)


def test_refused_first_frames_count_as_failed_authentications(stack: Stack) -> None:
    server = stack.make(FAILED_AUTH_RATE="2/minute")
    bad = bad_token(stack)
    with ExitStack() as sockets:
        assert [first_frame(server, bad, sockets) for _ in range(2)] == [4401, 4401]
    assert attempt(server, bad) == 4429
    assert attempt(server, stack.issuer.token()) == "ok"


def test_a_killed_processs_places_lapse_within_one_lease(stack: Stack) -> None:
    """SIGKILL: no finally block runs; the places lapse once their lease does, while a
    live process keeps its own sockets' places past the lease."""
    lease = 4
    a = stack.make(MAX_SOCKETS_PER_USER=2, SOCKET_LEASE=lease)
    b = stack.make(MAX_SOCKETS_PER_USER=2, SOCKET_LEASE=lease)
    token = stack.issuer.token(sub="killed-" + uuid.uuid4().hex[:6])
    with ExitStack() as sockets:
        for server in (a, b):
            ws = sockets.enter_context(
                connect(server.ws + "/ws/echo/", subprotocols=["chat", PREFIX + token])
            )
            hello(ws)
        synced()
        killed_at = time.monotonic()
        a.kill()
        assert attempt(b, token) == 4429  # a's place is still leased
        time.sleep(lease + 0.5)  # past one lease: b renewed its own, a renewed nothing
        deadline = killed_at + lease + 3
        while (result := attempt(b, token)) != "ok":
            assert time.monotonic() < deadline, f"a's place did not lapse: {result}"
            time.sleep(0.2)
        # The place of the attempt just closed is given back once b has seen the close.
        while True:
            extra = sockets.enter_context(
                connect(b.ws + "/ws/echo/", subprotocols=["chat", PREFIX + token])
            )
            try:
                hello(extra)
                break
            except ConnectionClosed:
                assert time.monotonic() < deadline + 3, "the closed socket's place stayed"
                time.sleep(0.2)
        assert attempt(b, token) == 4429  # b's renewed place and this one: two


def test_frame_size_and_rate_per_socket(stack: Stack) -> None:
    server = stack.make(MAX_MESSAGE_SIZE=1000, MESSAGE_RATE="5/second")
    token = stack.issuer.token()
    with connect(server.ws + "/ws/echo/", subprotocols=["chat", PREFIX + token]) as ws:
        hello(ws)
        ws.send("é" * 400)  # 800 bytes: fine
        assert "é" in str(ws.recv(timeout=5))
        ws.send("é" * 600)  # 600 characters, 1200 bytes: too big
        assert close_code(ws) == 4009  # 1009 is refused by autobahn
    with connect(server.ws + "/ws/echo/", subprotocols=["chat", PREFIX + token]) as ws:
        hello(ws)
        for i in range(20):
            try:
                ws.send(f"m{i}")
            except ConnectionClosed:
                break
        assert close_code(ws) == 4429
    assert "too many frames" in server.log()


def test_slow_authentication_is_dropped(stack: Stack) -> None:
    # The issuer answers after 3 s; the handshake may take 1.
    server = stack.make(HANDSHAKE_TIMEOUT=1.0, JWKS_TIMEOUT=5.0)
    stack.issuer.delay = 3.0
    try:
        started = time.monotonic()
        assert attempt(server, stack.issuer.token()) == 403
        assert time.monotonic() - started < 2.9
    finally:
        stack.issuer.delay = 0.0
    deadline = time.monotonic() + 5
    while "reason=timeout" not in server.log():
        assert time.monotonic() < deadline
        time.sleep(0.1)
