"""wsauth.edge in-process: finding the server's connection behind ``send`` wrappers, the
copies without the credential, and the one warning when no adapter applies. Live, on
every server: tests/test_server_memory_live.py."""

from __future__ import annotations

import functools
import logging
from typing import Any

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.testing import WebsocketCommunicator

from wsauth import conf as wsauth_conf
from wsauth import edge
from wsauth.logutil import CredentialFilter, mask_text
from wsauth.middleware import WSAuthMiddlewareStack

PREFIX = "authorization_bearer_"


class Connection:
    """Stands for a server's connection object."""

    async def send(self, message: dict[str, Any]) -> None:
        pass


class Adapter(edge.ServerAdapter):
    name = "test"
    modules = ("tests.test_edge",)
    forgotten: list[Any] = []

    def connection(self, obj: Any) -> Any | None:
        return obj if isinstance(obj, Connection) else None

    def forget(self, connection: Any, scope: dict[str, Any], prefix: str) -> None:
        edge.forget_in_scope(scope, prefix)
        self.forgotten.append(connection)


def closure_around(send: Any) -> Any:  # Sentry's and OpenTelemetry's shape
    async def wrapped(message: dict[str, Any]) -> None:
        await send(message)

    return wrapped


class Holder:  # a middleware that keeps send as an attribute
    def __init__(self, send: Any) -> None:
        self.inner = send

    async def __call__(self, message: dict[str, Any]) -> None:
        await self.inner(message)


def with_wrapped(send: Any) -> Any:
    @functools.wraps(send)
    async def wrapper(message: dict[str, Any]) -> None:
        await send(message)

    return wrapper


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: s,
        lambda s: functools.partial(s),
        closure_around,
        lambda s: closure_around(closure_around(Holder(s))),
        with_wrapped,
        lambda s: functools.partial(lambda conn, m: None, s.__self__),  # Daphne's shape
    ],
)
def test_the_connection_is_found_through_wrappers(wrap: Any) -> None:
    connection = Connection()
    found = edge.find(wrap(connection.send), [Adapter()])
    assert found is not None and found[1] is connection


def test_a_hidden_connection_is_not_found_and_the_search_is_bounded() -> None:
    connection = Connection()
    deep: Any = connection.send
    for _ in range(10):
        deep = closure_around(deep)
    assert edge.find(deep, [Adapter()]) is None
    assert edge.find(print, [Adapter()]) is None


def test_copies_and_in_place_forgetting() -> None:
    headers = [(b"host", b"x"), (b"sec-websocket-protocol", f"chat, {PREFIX}eyJ.a.b".encode())]
    assert edge.headers_without_token(headers, PREFIX) == [
        (b"host", b"x"),
        (b"sec-websocket-protocol", b"chat"),
    ]
    assert headers[1][1].endswith(b"eyJ.a.b")  # a copy: the server's list is untouched
    scope = {"headers": headers, "subprotocols": ["chat", PREFIX + "eyJ.a.b"]}
    offers = scope["subprotocols"]
    edge.forget_in_scope(scope, PREFIX)
    assert scope["subprotocols"] is offers and offers == ["chat"]
    assert headers[1] == (b"sec-websocket-protocol", b"chat")
    assert edge.uri_without("/ws/?room=1&ticket=abc&access_token=x") == "/ws/?room=1"


class Plain(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()


@pytest.mark.django_db(transaction=True)
async def test_no_adapter_applies_is_said_once(issuer, wsauth_settings, caplog) -> None:
    wsauth_settings.WSAUTH = {**wsauth_settings.WSAUTH, "SERVER_ADAPTERS": []}
    wsauth_conf.reset()
    app = WSAuthMiddlewareStack(Plain.as_asgi())
    with caplog.at_level(logging.WARNING, logger="wsauth"):
        for _ in range(2):
            comm = WebsocketCommunicator(
                app, "/ws/", subprotocols=["chat", PREFIX + issuer.token()]
            )
            assert (await comm.connect(timeout=5))[0]
            await comm.disconnect()
    said = [r.getMessage() for r in caplog.records if "no server adapter applies" in r.getMessage()]
    assert len(said) == 1 and "Servers" in said[0]


class Broken(Adapter):
    name = "broken"

    def forget(self, connection: Any, scope: dict[str, Any], prefix: str) -> None:
        raise AttributeError("a server version it does not know")


async def test_a_failing_adapter_keeps_the_socket_and_says_so(settings, caplog) -> None:
    settings.WSAUTH = {**settings.WSAUTH, "SERVER_ADAPTERS": ["tests.test_edge.Broken"]}
    wsauth_conf.reset()
    scope = {"subprotocols": ["chat", PREFIX + "eyJ.a.b"], "query_string": b""}
    with caplog.at_level(logging.WARNING, logger="wsauth"):
        assert edge.forget(scope, Connection().send, wsauth_conf.get_conf()) is False
    assert "the broken adapter failed (AttributeError" in caplog.text
    settings.WSAUTH = {**settings.WSAUTH, "SERVER_ADAPTERS": ["tests.test_edge.Adapter"]}
    wsauth_conf.reset()
    assert edge.forget(scope, Connection().send, wsauth_conf.get_conf()) is True
    assert scope["subprotocols"] == ["chat"]
    wsauth_conf.reset()


def test_server_log_records_are_masked() -> None:
    ticket = "T" * 43
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5", f"/ws/echo/?ticket={ticket}&room=1"),
        None,
    )
    assert CredentialFilter().filter(record)
    assert (
        record.getMessage()
        == '127.0.0.1:5 - "WebSocket /ws/echo/?ticket=TTTTTT…[43]&room=1" [accepted]'
    )
    try:
        raise ValueError(f"unexpected subprotocol {PREFIX}{token}")
    except ValueError:
        import sys

        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    CredentialFilter().filter(failed)
    assert token not in logging.Formatter().format(failed)
    assert mask_text("nothing here") == "nothing here"
