"""The README's "Servers" table, row by row: each server, run by the command line the
table gives (tests/servers.py), serves the demo project with every credential path.

One server per kind for the module, sharing a real Redis and a real issuer, a handful
of handshakes each: token-only and app-protocol forms, a token at wsauth's size limit,
tickets (across gunicorn's two workers), first-message authentication, refusals (403),
expiry (4001), refresh, revocation (4403); then the server's whole log is searched for
every credential it saw."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.daphne import REDIS_URL, flush_redis, manage, migrated_project_env
from tests.issuer import Issuer
from tests.servers import KINDS, AsgiServer
from tests.test_middleware_live import PREFIX, post_ticket

pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")
OVERRIDES = {"EXPIRING_LEAD": 2, "MAX_TOKEN_SIZE": 12 * 1024}
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
TICKET = re.compile(r"ticket[=:\"' ]+[A-Za-z0-9_-]{43}")


class Live:
    def __init__(self, kind: str, issuer: Issuer, env: dict[str, str], server: AsgiServer):
        self.kind, self.issuer, self.env, self.server = kind, issuer, env, server
        self.secrets: list[str] = []  # every credential this server saw

    def token(self, **claims) -> str:
        token = self.issuer.token(**claims)
        self.secrets.append(token)
        return token

    def ticket(self, token: str) -> str:
        ticket = post_ticket(self.server, token)
        self.secrets.append(ticket)
        return ticket

    def connect(self, path: str = "/ws/echo/", **kwargs) -> ClientConnection:
        return connect(self.server.ws + path, open_timeout=8, max_size=None, **kwargs)


@pytest.fixture(scope="module", params=KINDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    kind = request.param
    tmp: Path = tmp_path_factory.mktemp(f"server-{kind}")
    issuer = Issuer().start()
    env = migrated_project_env(
        tmp, issuer, REDIS_URL, WSAUTH_OVERRIDES=json.dumps(OVERRIDES), WSAUTH_LOG_LEVEL="DEBUG"
    )
    server = AsgiServer(kind, env, tmp / f"{kind}.log").start()
    yield Live(kind, issuer, env, server)
    server.stop()
    issuer.stop()
    flush_redis()


def close_code(ws: ClientConnection, within: float = 8.0) -> int:
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        return closed.rcvd.code
    except TimeoutError:
        pass
    pytest.fail(f"the socket was not closed within {within} s")


def control(ws: ClientConnection) -> dict:
    while True:
        frame = ws.recv(timeout=8)
        if frame.startswith('{"type":"wsauth.'):
            return json.loads(frame)


def echoes(ws: ClientConnection, text: str = "hi") -> bool:
    ws.send(text)
    return ws.recv(timeout=5) == f'I\'m not very smart, all I can do is repeat: "{text}"'


def test_token_only_form(live: Live) -> None:
    token = live.token(name="Only Token")
    with live.connect(subprotocols=[PREFIX + token]) as ws:  # the seed's form
        assert ws.subprotocol == PREFIX + token
        assert ws.recv(timeout=5) == "Hello Only Token"
        assert echoes(ws)


def test_app_protocol_form(live: Live) -> None:
    with live.connect(subprotocols=["chat", PREFIX + live.token(name="App")]) as ws:
        assert ws.subprotocol == "chat"
        assert ws.recv(timeout=5) == "Hello App"
        assert echoes(ws)


def test_a_token_of_the_readmes_budget(live: Live) -> None:
    # The README promises MAX_TOKEN_SIZE (12 KiB) on every server, run as its table says.
    bare = len(live.issuer.token(name="Big", sub="big", pad=""))
    token = live.token(name="Big", sub="big", pad="x" * ((12_200 - bare) * 3 // 4))
    assert 12_100 < len(token) <= 12 * 1024
    with live.connect(subprotocols=["chat", PREFIX + token]) as ws:
        assert ws.recv(timeout=5) == "Hello Big"


def test_tickets(live: Live) -> None:
    # On gunicorn, each ticket is issued by one worker and redeemed by either.
    for i in range(4):
        ticket = live.ticket(live.token(name=f"Ticket {i}"))
        with live.connect(f"/ws/echo/?ticket={ticket}") as ws:
            assert ws.recv(timeout=5) == f"Hello Ticket {i}"
            assert echoes(ws)
        with pytest.raises(InvalidStatus) as replay:
            live.connect(f"/ws/echo/?ticket={ticket}")
        assert replay.value.response.status_code == 403


def test_first_message_authentication(live: Live) -> None:
    with live.connect("/ws/echo/inband/", subprotocols=["chat"]) as ws:
        assert ws.subprotocol == "chat"
        ws.send(json.dumps({"type": "wsauth.auth", "token": live.token(name="Inband")}))
        assert ws.recv(timeout=5) == "Hello Inband"
        assert echoes(ws)


@pytest.mark.parametrize("form", ["app", "token-only"])
def test_refusals_are_403_and_logged_masked(live: Live, form: str) -> None:
    bad = live.token(aud="someone-else")
    offers = ["chat", PREFIX + bad] if form == "app" else [PREFIX + bad]
    before = live.server.log().count("reason=wrong_audience")
    with pytest.raises(InvalidStatus) as refused:
        live.connect(subprotocols=offers)
    assert refused.value.response.status_code == 403
    deadline = time.monotonic() + 5
    while live.server.log().count("reason=wrong_audience") == before:
        assert time.monotonic() < deadline, live.server.log()
        time.sleep(0.05)
    assert f"credential={bad[:6]}…[{len(bad)}]" in live.server.log()


def test_expiry_4001_and_refresh(live: Live) -> None:
    exp = int(time.time()) + 3
    expiring = live.connect(subprotocols=["chat", PREFIX + live.token(sub="exp", exp=exp)])
    refreshed = live.connect(subprotocols=["chat", PREFIX + live.token(sub="ref", exp=exp)])
    with expiring, refreshed:
        assert expiring.recv(timeout=5).startswith("Hello")
        assert refreshed.recv(timeout=5).startswith("Hello")
        assert control(refreshed) == {"type": "wsauth.expiring", "expires_at": exp}
        later = int(time.time()) + 120
        fresh = live.token(sub="ref", exp=later)
        refreshed.send(json.dumps({"type": "wsauth.refresh", "token": fresh}))
        assert control(refreshed) == {"type": "wsauth.refreshed", "expires_at": later}
        assert close_code(expiring) == 4001
        assert time.time() >= exp - 0.5
        assert echoes(refreshed, "still here")


def test_revocation_4403(live: Live) -> None:
    name = f"revoked-{live.kind}"
    token = live.token(sub=f"sub-{name}", preferred_username=name)
    sockets = [live.connect(subprotocols=["chat", PREFIX + token]) for _ in range(3)]
    for ws in sockets:
        assert ws.recv(timeout=5).startswith("Hello")
    started = time.monotonic()
    manage(live.env, "wsauth_disconnect", name)
    for ws in sockets:
        assert close_code(ws, within=max(0.1, 2.0 - (time.monotonic() - started))) == 4403
        ws.close()
    with pytest.raises(InvalidStatus):
        live.connect(subprotocols=["chat", PREFIX + token])


def test_forwarded_for_by_default(live: Live) -> None:
    """uvicorn (and its gunicorn workers) believe X-Forwarded-For from 127.0.0.1 by
    default; Daphne and hypercorn do not. wsauth names either case once."""
    with live.connect(
        subprotocols=["chat", PREFIX + live.token()],
        additional_headers={"X-Forwarded-For": "203.0.113.9"},
    ) as ws:
        assert ws.recv(timeout=5).startswith("Hello")
    took = live.kind.startswith(("uvicorn", "gunicorn"))
    expected = (
        "the server took the client address from X-Forwarded-For"
        if took
        else "X-Forwarded-For from 127.0.0.1, which is not in WSAUTH['TRUSTED_PROXIES']"
    )
    deadline = time.monotonic() + 5
    while expected not in live.server.log():
        assert time.monotonic() < deadline, live.server.log()
        time.sleep(0.05)


def test_no_credential_in_the_servers_log(live: Live) -> None:
    """Last in the module: the failure modes too, then the whole log of this server."""
    good = live.token()
    bare = len(live.issuer.token(pad=""))
    huge = live.token(pad="x" * ((20_000 - bare) * 3 // 4))  # over every server's cap
    for attempt in (
        {"path": "/ws/echo/", "subprotocols": ["chat", PREFIX + huge]},
        {"path": "/ws/echo/?access_token=" + good},  # off by default: refused
        {"path": "/ws/echo/?ticket=" + "x" * 43},  # unknown ticket
        {"path": "/ws/nowhere/", "subprotocols": [PREFIX + good]},  # no route after accept
        {"path": "/ws/echo/", "subprotocols": [PREFIX + good, PREFIX + good]},  # ambiguous
        {"path": "/ws/echo/", "subprotocols": ["chat", PREFIX + good + "x"]},  # bad signature
    ):
        path = attempt.pop("path")
        try:
            with live.connect(path, **attempt) as ws:
                ws.recv(timeout=2)
        except (InvalidHandshake, ConnectionClosed, TimeoutError, OSError):
            pass  # refused, dropped (Daphne, a huge request) or closed: all logged
    time.sleep(0.3)
    log = live.server.log()
    assert "reason=" in log and "authenticated" in log  # it did log, DEBUG lines too
    leaked = [secret for secret in live.secrets if secret in log]
    assert not leaked, f"{len(leaked)} credentials in clear in the {live.kind} log"
    assert not JWT.search(log), JWT.search(log)
    assert not TICKET.search(log), TICKET.search(log)


def test_uvicorn_with_its_default_line_cap_refuses_large_tokens_and_says_why(
    tmp_path: Path,
) -> None:
    """Run as plain ``uvicorn`` (no WEBSOCKETS_MAX_LINE_LENGTH), a token over about 8 KiB
    gets HTTP 431 from websockets before wsauth sees it: wsauth says so, once, at the
    first socket, naming the fix."""
    issuer = Issuer().start()
    server = AsgiServer("uvicorn", migrated_project_env(tmp_path, issuer), tmp_path / "u.log")
    server.env.pop("WEBSOCKETS_MAX_LINE_LENGTH")
    try:
        server.start()
        bare = len(issuer.token(pad=""))
        big = issuer.token(pad="x" * ((9_000 - bare) * 3 // 4))
        with pytest.raises(InvalidStatus) as refused:
            connect(server.ws + "/ws/echo/", subprotocols=["chat", PREFIX + big])
        assert refused.value.response.status_code == 431
        with connect(server.ws + "/ws/echo/", subprotocols=["chat", PREFIX + issuer.token()]) as ws:
            assert ws.recv(timeout=5).startswith("Hello")
        deadline = time.monotonic() + 5
        while "WEBSOCKETS_MAX_LINE_LENGTH=16384" not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        assert server.log().count("tokens of more than about") == 1
    finally:
        server.stop()
        issuer.stop()
