"""wsauth.contrib.hypercorn: after the accept, the credential is taken out of hypercorn's
websocket stream (its scope and its handshake, parsed by hypercorn's own Handshake),
and the header budget read from its config. (On a live hypercorn:
tests/test_server_memory_live.py.)"""

from __future__ import annotations

from hypercorn.config import Config
from hypercorn.protocol.ws_stream import Handshake, WSStream

from wsauth.contrib.hypercorn import HypercornAdapter

PREFIX = "authorization_bearer_"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
HEADERS = [
    (b"host", b"chat.test"),
    (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    (b"sec-websocket-version", b"13"),
    (b"sec-websocket-protocol", f"chat, {PREFIX}{TOKEN}".encode()),
]


def stream() -> WSStream:
    ws = WSStream.__new__(WSStream)  # the stream as its protocol holds it after the upgrade
    ws.config = Config()
    ws.handshake = Handshake(list(HEADERS), "1.1")
    ws.scope = {"headers": list(HEADERS), "subprotocols": list(ws.handshake.subprotocols)}
    return ws


def test_the_adapter_recognises_only_hypercorns_stream():
    ws = stream()
    assert HypercornAdapter().connection(ws) is ws
    assert HypercornAdapter().connection(object()) is None


def test_forget_cleans_the_streams_scope_and_handshake():
    ws = stream()
    assert PREFIX + TOKEN in ws.handshake.subprotocols
    application_scope = {"headers": list(HEADERS), "subprotocols": ["chat", PREFIX + TOKEN]}
    HypercornAdapter().forget(ws, application_scope, PREFIX)
    assert TOKEN not in repr(ws.scope) and TOKEN not in repr(application_scope)
    assert ws.handshake.subprotocols == ["chat"]
    assert ws.scope["subprotocols"] == ["chat"]
    assert (b"host", b"chat.test") in ws.scope["headers"]


def test_header_budget_is_h11s_incomplete_size():
    ws = stream()
    size, advice = HypercornAdapter().header_budget(ws)
    assert size == ws.config.h11_max_incomplete_size
    assert "h11_max_incomplete_size" in advice
    ws.config = object()
    assert HypercornAdapter().header_budget(ws) is None
