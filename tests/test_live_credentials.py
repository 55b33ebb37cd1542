"""The life of a socket on a real Daphne: expiry, refresh, first-message auth, query token."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.daphne import DaphneServer, manage, migrated_project_env, with_overrides
from tests.issuer import Issuer

PREFIX = "authorization_bearer_"
OVERRIDES = {"EXPIRING_LEAD": 2, "AUTH_TIMEOUT": 1.5, "REFRESH_BURST": 3, "REFRESH_INTERVAL": 60}


class Live:
    def __init__(self, issuer: Issuer, server: DaphneServer, query: DaphneServer) -> None:
        self.issuer, self.server, self.query = issuer, server, query


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp: Path = tmp_path_factory.mktemp("lifecycle")
    issuer = Issuer().start()
    env = migrated_project_env(tmp, issuer, WSAUTH_OVERRIDES=json.dumps(OVERRIDES))
    manage(env, "wsauth_origins", "add", "http://allowed.test")
    server = DaphneServer(env, tmp / "server.log").start()
    query = DaphneServer(with_overrides(env, ALLOW_QUERY_TOKEN=True), tmp / "query.log").start()
    yield Live(issuer, server, query)
    server.stop()
    query.stop()
    issuer.stop()


def close_code(ws, timeout: float = 8.0) -> int:
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=deadline - time.monotonic())
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        return closed.rcvd.code
    except TimeoutError:
        pass
    pytest.fail("the socket was not closed in time")


def control(ws) -> dict:
    while True:
        frame = ws.recv(timeout=8)
        if frame.startswith('{"type":"wsauth.'):
            return json.loads(frame)


@contextmanager
def echo_socket(live: Live, token: str) -> Iterator:
    with connect(live.server.ws + "/ws/echo/", subprotocols=["chat", PREFIX + token]) as ws:
        assert ws.recv(timeout=5).startswith("Hello ")
        yield ws


# -- expiry and refresh ---------------------------------------------------------------------


def test_expiring_then_closed_with_4001(live):
    exp = int(time.time()) + 4
    with echo_socket(live, live.issuer.token(sub="exp-1", exp=exp)) as ws:
        frame = control(ws)
        assert frame == {"type": "wsauth.expiring", "expires_at": exp}
        assert close_code(ws) == 4001
        assert time.time() >= exp - 0.5  # at exp, not before (leeway is for the handshake)


def test_expiring_at_once_when_less_life_is_left(live):
    exp = int(time.time()) + 2  # less than the 2 s lead... by the time it connects
    with echo_socket(live, live.issuer.token(sub="exp-2", exp=exp)) as ws:
        started = time.monotonic()
        assert control(ws)["type"] == "wsauth.expiring"
        assert time.monotonic() - started < 1.5


def test_refresh_keeps_the_socket_past_the_first_expiry(live):
    first_exp = int(time.time()) + 4
    with echo_socket(live, live.issuer.token(sub="ref-1", exp=first_exp)) as ws:
        assert control(ws)["type"] == "wsauth.expiring"
        new_exp = int(time.time()) + 120
        ws.send(
            json.dumps(
                {"type": "wsauth.refresh", "token": live.issuer.token(sub="ref-1", exp=new_exp)}
            )
        )
        assert control(ws) == {"type": "wsauth.refreshed", "expires_at": new_exp}
        while time.time() < first_exp + 1:
            time.sleep(0.2)
        ws.send("still here")
        assert ws.recv(timeout=5).endswith('"still here"')


def test_refresh_for_another_subject_closes_4403(live):
    with echo_socket(live, live.issuer.token(sub="ref-2")) as ws:
        ws.send(json.dumps({"type": "wsauth.refresh", "token": live.issuer.token(sub="mallory")}))
        assert close_code(ws) == 4403


def test_invalid_refresh_closes_4401(live):
    with echo_socket(live, live.issuer.token(sub="ref-3")) as ws:
        ws.send(
            json.dumps({"type": "wsauth.refresh", "token": live.issuer.token(sub="ref-3", aud="x")})
        )
        assert close_code(ws) == 4401


def test_refreshes_are_rate_limited(live):
    with echo_socket(live, live.issuer.token(sub="ref-4")) as ws:
        for _ in range(3):
            ws.send(json.dumps({"type": "wsauth.refresh", "token": live.issuer.token(sub="ref-4")}))
            assert control(ws)["type"] == "wsauth.refreshed"
        ws.send(json.dumps({"type": "wsauth.refresh", "token": live.issuer.token(sub="ref-4")}))
        assert close_code(ws) == 4429


def test_control_frames_never_reach_the_application(live):
    with echo_socket(live, live.issuer.token(sub="ctl-1")) as ws:
        ws.send('{"type":"wsauth.bogus"}')
        assert control(ws)["error"] == "unknown_type"
        ws.send(json.dumps({"type": "wsauth.auth", "token": "x"}))
        assert control(ws)["error"] == "already_authenticated"
        ws.send('{"type": "chat"}')  # not a control frame: echoed
        assert "chat" in ws.recv(timeout=5)


# -- first-message authentication -------------------------------------------------------------


def inband(live: Live, **kwargs):
    return connect(live.server.ws + "/ws/echo/inband/", **kwargs)


def test_first_message_auth(live):
    with inband(live, subprotocols=["chat"]) as ws:
        assert ws.subprotocol == "chat"
        ws.send(json.dumps({"type": "wsauth.auth", "token": live.issuer.token(name="Inband")}))
        assert ws.recv(timeout=5) == "Hello Inband"
        ws.send("x")
        assert ws.recv(timeout=5).endswith('"x"')


def test_first_message_timeout_4408(live):
    with inband(live) as ws:
        started = time.monotonic()
        assert close_code(ws) == 4408
        assert time.monotonic() - started >= 1.0


def test_application_frame_before_auth_4401(live):
    with inband(live) as ws:
        ws.send("hello?")
        assert close_code(ws) == 4401


def test_bad_first_message_token_4401(live):
    with inband(live) as ws:
        ws.send(json.dumps({"type": "wsauth.auth", "token": "garbage"}))
        assert close_code(ws) == 4401


def test_first_message_routes_keep_the_origin_gate(live):
    with pytest.raises(InvalidStatus):
        inband(live, origin="http://evil.test")
    with inband(live, origin="http://allowed.test") as ws:
        ws.send(json.dumps({"type": "wsauth.auth", "token": live.issuer.token()}))
        assert ws.recv(timeout=5).startswith("Hello")


def test_other_routes_still_need_handshake_credentials(live):
    with pytest.raises(InvalidStatus) as info:
        connect(live.server.ws + "/ws/echo/")
    assert info.value.response.status_code == 403


# -- query-string token -------------------------------------------------------------------------


def test_query_token_off_by_default_and_never_logged(live):
    token = live.issuer.token()
    with pytest.raises(InvalidStatus):
        connect(live.server.ws + f"/ws/echo/?access_token={token}")
    deadline = time.monotonic() + 5
    while "query_token_disabled" not in live.server.log():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert token not in live.server.log()


def test_query_token_when_enabled(live):
    token = live.issuer.token(name="Query")
    with connect(live.query.ws + f"/ws/echo/?access_token={token}") as ws:
        assert ws.recv(timeout=5) == "Hello Query"
    time.sleep(0.3)
    assert token not in live.query.log()
