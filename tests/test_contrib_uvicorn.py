"""wsauth.contrib.uvicorn: after the accept, the credential is taken out of what each of
uvicorn's websocket protocols keeps, on protocol objects uvicorn builds from its Config
and requests parsed by websockets' and wsproto's own parsers; and the header budgets.
(On live uvicorn processes: tests/test_server_memory_live.py.)"""

from __future__ import annotations

import asyncio
import warnings

import pytest
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.protocols.websockets.wsproto_impl import WSProtocol
from uvicorn.server import ServerState
from websockets.datastructures import Headers
from websockets.server import ServerProtocol

from wsauth.contrib.uvicorn import UvicornAdapter

with warnings.catch_warnings():  # uvicorn deprecates its legacy websockets protocol
    warnings.simplefilter("ignore")
    from uvicorn.protocols.websockets.websockets_impl import WebSocketProtocol as LegacyProtocol

PREFIX = "authorization_bearer_"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
RAW = (
    "GET /ws/?ticket=t-123&room=lobby HTTP/1.1\r\n"
    "Host: chat.test\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    f"Sec-WebSocket-Protocol: chat, {PREFIX}{TOKEN}\r\n"
    "\r\n"
).encode()


async def app(scope, receive, send):  # pragma: no cover - never called
    raise AssertionError


def make(cls, **config):
    async def build():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls(Config(app, **config), ServerState(), {}, _loop=asyncio.get_running_loop())

    return asyncio.run(build())


def server_scope():
    return {
        "headers": [
            (b"sec-websocket-protocol", f"chat, {PREFIX}{TOKEN}".encode()),
            (b"host", b"chat.test"),
        ],
        "subprotocols": ["chat", PREFIX + TOKEN],
    }


def test_the_adapter_recognises_each_uvicorn_protocol():
    adapter = UvicornAdapter()
    for cls in (WebSocketsSansIOProtocol, WSProtocol, LegacyProtocol):
        protocol = make(cls)
        assert adapter.connection(protocol) is protocol
    assert adapter.connection(object()) is None


def test_sansio_protocol():
    protocol = make(WebSocketsSansIOProtocol)
    parser = ServerProtocol()
    parser.receive_data(RAW)
    (protocol.request,) = parser.events_received()  # websockets' own Request
    protocol.scope = server_scope()
    application_scope = dict(protocol.scope)
    UvicornAdapter().forget(protocol, application_scope, PREFIX)
    assert protocol.request.path == "/ws/?room=lobby"
    assert "Sec-WebSocket-Protocol" not in protocol.request.headers
    assert protocol.request.headers["Host"] == "chat.test"
    assert protocol.scope["subprotocols"] == ["chat"]
    assert TOKEN.encode() not in repr(protocol.scope["headers"]).encode()


def test_wsproto_protocol():
    protocol = make(WSProtocol)
    protocol.conn.receive_data(RAW)  # wsproto parses the handshake itself
    event = protocol.conn.handshake._initiating_request
    assert "ticket=" in event.target
    UvicornAdapter().forget(protocol, server_scope(), PREFIX)
    assert protocol.conn.handshake._initiating_request.target == "/ws/?room=lobby"


def test_legacy_protocol():
    protocol = make(LegacyProtocol)
    protocol.path = "/ws/?access_token=abc&room=lobby"
    protocol.request_headers = Headers(
        [("Host", "chat.test"), ("Sec-WebSocket-Protocol", f"chat, {PREFIX}{TOKEN}")]
    )
    UvicornAdapter().forget(protocol, server_scope(), PREFIX)
    assert protocol.path == "/ws/?room=lobby"
    assert "Sec-WebSocket-Protocol" not in protocol.request_headers


def test_without_a_credential_nothing_changes():
    protocol = make(LegacyProtocol)
    protocol.path = "/ws/?room=lobby"
    protocol.request_headers = Headers([("Sec-WebSocket-Protocol", "chat")])
    UvicornAdapter().forget(protocol, {"headers": [], "subprotocols": ["chat"]}, PREFIX)
    assert protocol.path == "/ws/?room=lobby"
    assert protocol.request_headers["Sec-WebSocket-Protocol"] == "chat"


@pytest.mark.parametrize("cls", [WebSocketsSansIOProtocol, LegacyProtocol, WSProtocol])
def test_header_budgets(cls):
    budget = UvicornAdapter().header_budget(make(cls, http="h11"))
    size, advice = budget
    assert size > 0 and ("uvicorn" in advice)
    larger = UvicornAdapter().header_budget(
        make(cls, http="h11", h11_max_incomplete_event_size=10**6)
    )
    if cls is WSProtocol:  # no line limit of its own: h11's is the budget
        assert larger[0] == 10**6
    else:
        assert larger[0] <= 10**6
