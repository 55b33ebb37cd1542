"""Handshakes against two real Daphne processes sharing a real Redis.

WebsocketCommunicator reports close codes and subprotocol choices that a real client
never sees, so everything about the handshake is checked here, over TCP.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.daphne import REDIS_URL, DaphneServer, flush_redis, manage, migrated_project_env
from tests.issuer import Issuer, new_key

ALLOWED = "http://allowed.test"
PREFIX = "authorization_bearer_"


class Stack:
    def __init__(self, issuer: Issuer, env: dict[str, str], a: DaphneServer, b: DaphneServer):
        self.issuer, self.env, self.a, self.b = issuer, env, a, b


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("live")
    issuer = Issuer().start()
    env = migrated_project_env(tmp, issuer, REDIS_URL)
    manage(env, "wsauth_origins", "add", ALLOWED)
    a = DaphneServer(env, tmp / "a.log").start()
    b = DaphneServer(env, tmp / "b.log").start()
    yield Stack(issuer, env, a, b)
    a.stop()
    b.stop()
    issuer.stop()
    flush_redis()


def refused(url: str, **kwargs) -> int:
    with pytest.raises(InvalidStatus) as info:
        connect(url, open_timeout=5, **kwargs)
    return info.value.response.status_code


def post_ticket(server: DaphneServer, token: str, origin: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    if origin:
        headers["Origin"] = origin
    request = urllib.request.Request(
        server.http + "/wsauth/ticket/", method="POST", headers=headers
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)["ticket"]


# -- subprotocol ---------------------------------------------------------------------------


def test_token_only_offer_selects_the_token(stack):
    token = stack.issuer.token()
    with connect(stack.a.ws + "/ws/echo/", subprotocols=[PREFIX + token], origin=ALLOWED) as ws:
        assert ws.subprotocol == PREFIX + token
        assert ws.recv(timeout=5) == "Hello Alice Liddell"
        ws.send("hi")
        assert ws.recv(timeout=5) == 'I\'m not very smart, all I can do is repeat: "hi"'


def test_app_protocol_is_selected_and_token_never_echoed(stack):
    token = stack.issuer.token()
    with connect(
        stack.a.ws + "/ws/echo/", subprotocols=["chat", PREFIX + token], origin=ALLOWED
    ) as ws:
        assert ws.response.headers["Sec-WebSocket-Protocol"] == "chat"
        assert token not in str(ws.response.headers)
        assert ws.recv(timeout=5) == "Hello Alice Liddell"


def test_first_offered_app_protocol_wins(stack):
    token = stack.issuer.token()
    with connect(stack.b.ws + "/ws/echo/", subprotocols=["v2.chat", PREFIX + token, "chat"]) as ws:
        assert ws.subprotocol == "v2.chat"


@pytest.mark.parametrize(
    "case",
    ["garbage", "tampered", "expired", "wrong_audience", "wrong_issuer", "alg_none", "other_key"],
)
def test_bad_tokens_are_refused_before_accept(stack, case):
    issuer = stack.issuer
    token = {
        "garbage": lambda: "not.a.jwt",
        "tampered": lambda: issuer.token()[:-6] + "AAAAAA",
        "expired": lambda: issuer.token(exp=int(time.time()) - 120),
        "wrong_audience": lambda: issuer.token(aud="other"),
        "wrong_issuer": lambda: issuer.token(iss="http://127.0.0.1:9/evil"),
        "alg_none": lambda: "eyJhbGciOiJub25lIn0." + issuer.token().split(".")[1] + ".",
        "other_key": lambda: __import__("jwt").encode(
            issuer.claims(), new_key(), algorithm="RS256", headers={"kid": issuer.default_kid}
        ),
    }[case]()
    assert refused(stack.a.ws + "/ws/echo/", subprotocols=["chat", PREFIX + token]) == 403


def test_no_credentials_refused(stack):
    assert refused(stack.a.ws + "/ws/echo/", origin=ALLOWED) == 403
    assert refused(stack.a.ws + "/ws/echo/", subprotocols=["chat"]) == 403


def test_refusal_is_logged_once_with_the_token_masked(stack):
    token = stack.issuer.token(aud="other")
    refused(stack.b.ws + "/ws/echo/", subprotocols=["chat", PREFIX + token])
    deadline = time.monotonic() + 5
    while "reason=wrong_audience" not in stack.b.log():
        assert time.monotonic() < deadline, stack.b.log()
        time.sleep(0.05)
    log = stack.b.log()
    assert log.count("reason=wrong_audience") == 1
    assert token not in log
    assert token.split(".")[1] not in log  # not even the claims part
    line = next(x for x in log.splitlines() if "reason=wrong_audience" in x)
    assert token[:6] + "…" in line


# -- tickets --------------------------------------------------------------------------------


def test_ticket_flow_and_replay(stack):
    ticket = post_ticket(stack.a, stack.issuer.token())
    with connect(stack.a.ws + f"/ws/echo/?ticket={ticket}") as ws:
        assert ws.subprotocol is None
        assert ws.recv(timeout=5) == "Hello Alice Liddell"
    assert refused(stack.a.ws + f"/ws/echo/?ticket={ticket}") == 403
    assert refused(stack.b.ws + f"/ws/echo/?ticket={ticket}") == 403


def test_ticket_issued_on_one_process_works_on_the_other(stack):
    ticket = post_ticket(stack.a, stack.issuer.token())
    with connect(stack.b.ws + f"/ws/echo/?ticket={ticket}", subprotocols=["chat"]) as ws:
        assert ws.subprotocol == "chat"
        assert ws.recv(timeout=5).startswith("Hello ")


def test_ticket_bound_to_its_origin(stack):
    ticket = post_ticket(stack.a, stack.issuer.token(), origin=ALLOWED)
    manage(stack.env, "wsauth_origins", "add", "http://other.test")
    try:
        assert refused(stack.a.ws + f"/ws/echo/?ticket={ticket}", origin="http://other.test") == 403
    finally:
        manage(stack.env, "wsauth_origins", "remove", "http://other.test")
    ticket = post_ticket(stack.a, stack.issuer.token(), origin=ALLOWED)
    with connect(stack.a.ws + f"/ws/echo/?ticket={ticket}", origin=ALLOWED) as ws:
        assert ws.recv(timeout=5).startswith("Hello ")


def test_unknown_ticket_refused(stack):
    assert refused(stack.a.ws + "/ws/echo/?ticket=" + "A" * 43) == 403


def test_ticket_endpoint_refuses_bad_token(stack):
    with pytest.raises(urllib.error.HTTPError) as info:
        post_ticket(stack.a, "garbage")
    assert info.value.code == 401
    assert json.load(info.value)["error"] == "invalid_token"


# -- origins ---------------------------------------------------------------------------------


def wait_until(predicate, timeout: float = 6.0) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "not within the time allowed"
        time.sleep(0.1)
    return time.monotonic() - started


def can_connect(server: DaphneServer, origin: str, token: str) -> bool:
    try:
        with connect(server.ws + "/ws/echo/", subprotocols=["chat", PREFIX + token], origin=origin):
            return True
    except InvalidStatus:
        return False


def test_origin_added_and_removed_live_on_two_processes(stack):
    t = stack.issuer.token()
    origin = "https://live.example"
    assert not can_connect(stack.a, origin, t) and not can_connect(stack.b, origin, t)
    manage(stack.env, "wsauth_origins", "add", origin)
    wait_until(lambda: can_connect(stack.a, origin, t) and can_connect(stack.b, origin, t), 5)
    manage(stack.env, "wsauth_origins", "remove", origin)
    wait_until(
        lambda: not can_connect(stack.a, origin, t) and not can_connect(stack.b, origin, t), 5
    )


def test_disallowed_origin_refused_and_missing_origin_allowed(stack):
    token = stack.issuer.token()
    assert not can_connect(stack.a, "http://evil.test", token)
    assert not can_connect(stack.a, "null", token)
    with connect(stack.a.ws + "/ws/echo/", subprotocols=["chat", PREFIX + token]) as ws:
        assert ws.recv(timeout=5).startswith("Hello")


# -- chat over the Redis channel layer ------------------------------------------------------


def test_chat_crosses_processes_and_bad_json_gets_an_error(stack):
    t1 = stack.issuer.token(name="Ann")
    t2 = stack.issuer.token(name="Ben")
    with (
        connect(stack.a.ws + "/ws/chat/lobby/", subprotocols=["chat", PREFIX + t1]) as ann,
        connect(stack.b.ws + "/ws/chat/lobby/", subprotocols=["chat", PREFIX + t2]) as ben,
    ):
        time.sleep(0.2)  # both group_add calls have reached Redis
        ann.send(json.dumps({"message": "hello from A"}))
        for ws in (ann, ben):
            event = json.loads(ws.recv(timeout=5))
            assert (event["user"], event["message"]) == ("Ann", "hello from A")
        ben.send("{not json")
        assert json.loads(ben.recv(timeout=5))["type"] == "error"
        ben.send(json.dumps({"message": "still here"}))
        assert json.loads(ann.recv(timeout=5))["message"] == "still here"


def test_idle_consumer_survives_redis_read_timeout(stack):
    # redis-py 8's 5 s socket timeout equals channels-redis's blocking read: without
    # socket_timeout 10 in the layer config, this consumer dies while idle.
    token = stack.issuer.token(name="Idle")
    with connect(stack.a.ws + "/ws/chat/idle/", subprotocols=["chat", PREFIX + token]) as ws:
        time.sleep(15.5)
        ws.send(json.dumps({"message": "awake"}))
        assert json.loads(ws.recv(timeout=5))["message"] == "awake"
    assert "Timeout reading" not in stack.a.log()
