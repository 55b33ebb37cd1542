"""wsauth.signals: what each signal is sent with, through the real middleware and
consumer; no argument ever holds a credential; nothing is sent without receivers."""

from __future__ import annotations

from typing import Any

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from chatdemo.routing import websocket_urlpatterns
from wsauth import signals
from wsauth.middleware import WSAuthMiddleware, WSAuthMiddlewareStack
from wsauth.testing import TestIssuer

pytestmark = pytest.mark.django_db(transaction=True)
application = WSAuthMiddlewareStack(URLRouter(websocket_urlpatterns))


@pytest.fixture
def received():
    seen: list[tuple[str, Any, dict[str, Any]]] = []

    def receivers():
        def make(name):
            def receiver(sender, signal=None, **kwargs):
                seen.append((name, sender, kwargs))

            return receiver

        return {
            name: make(name)
            for name in ("handshake_accepted", "handshake_refused", "socket_closed")
        }

    made = receivers()
    for name, receiver in made.items():
        getattr(signals, name).connect(receiver)
    yield seen
    for name, receiver in made.items():
        getattr(signals, name).disconnect(receiver)


def no_credential(kwargs: dict[str, Any], token: str) -> None:
    assert token not in repr(kwargs)
    assert token.split(".")[2] not in repr(kwargs)


async def test_accepted_then_closed(received):
    issuer = TestIssuer()
    with issuer.activate():
        token = issuer.token(sub="sig-1")
        ws = WebsocketCommunicator(
            application, "/ws/echo/", subprotocols=["chat", "authorization_bearer_" + token]
        )
        connected, _ = await ws.connect()
        assert connected
        await ws.receive_from()
        await ws.disconnect(code=4321)
    names = [name for name, _, _ in received]
    assert names == ["handshake_accepted", "socket_closed"]
    (_, sender, accepted), (_, closer, closed) = received
    assert sender is WSAuthMiddleware and closer is WSAuthMiddleware
    assert accepted["method"] == "subprotocol" and accepted["path"] == "/ws/echo/"
    assert (
        accepted["claims"]["sub"] == "sig-1" and accepted["expires_at"] == accepted["claims"]["exp"]
    )
    assert accepted["socket_id"] == closed["socket_id"] and closed["code"] == 4321
    assert closed["duration"] >= 0 and closed["user"] == accepted["user"]
    for _, _, kwargs in received:
        no_credential(kwargs, token)


async def test_refused(received):
    issuer = TestIssuer()
    with issuer.activate():
        token = issuer.token(aud="someone-else")
        ws = issuer.communicator(application, "/ws/echo/", token=token)
        connected, _ = await ws.connect()
        assert not connected
    ((name, sender, kwargs),) = received
    assert (name, sender) == ("handshake_refused", WSAuthMiddleware)
    assert (kwargs["reason"], kwargs["method"], kwargs["limited"]) == (
        "wrong_audience",
        "subprotocol",
        False,
    )
    no_credential(kwargs, token)


async def test_first_message_authentication_is_signalled_by_the_consumer(received):
    from wsauth.consumers import EchoConsumer

    issuer = TestIssuer()
    with issuer.activate():
        ws = WebsocketCommunicator(application, "/ws/echo/inband/", subprotocols=["chat"])
        assert (await ws.connect())[0]
        await ws.send_json_to({"type": "wsauth.auth", "token": issuer.token(sub="sig-2")})
        await ws.receive_from()
        await ws.disconnect()
    name, sender, kwargs = received[0]
    assert (name, kwargs["method"]) == ("handshake_accepted", "message")
    assert issubclass(sender, EchoConsumer)


async def test_send_is_a_no_op_without_receivers():
    calls = []
    signal = signals.handshake_accepted.__class__()
    await signals.send(signal, None, x=1)  # nobody listens: nothing runs
    signal.connect(lambda sender, **kw: calls.append(kw), weak=False)
    await signals.send(signal, None, x=1)
    assert calls == [{"signal": signal, "x": 1}]


async def test_a_failing_receiver_does_not_fail_the_handshake(caplog):
    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    signals.handshake_accepted.connect(broken)
    try:
        issuer = TestIssuer()
        with issuer.activate():
            ws = await issuer.connect(application, "/ws/echo/")
            assert (await ws.receive_from()).startswith("Hello")
            await ws.disconnect()
    finally:
        signals.handshake_accepted.disconnect(broken)
