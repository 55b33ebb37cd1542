"""wsauth.contrib.daphne: after the accept, the credential is taken out of what Daphne's
stack keeps (autobahn's protocol, Twisted's request), on the libraries' own objects.
(On a live Daphne, searched in its memory: tests/test_server_memory_live.py.)"""

from __future__ import annotations

from types import SimpleNamespace

from daphne.ws_protocol import WebSocketProtocol
from twisted.internet.testing import StringTransport
from twisted.web import http

from wsauth.contrib.daphne import DaphneAdapter

PREFIX = "authorization_bearer_"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
OFFER = f"chat, {PREFIX}{TOKEN}"


def twisted_request(uri: bytes) -> http.Request:
    channel = http.HTTPChannel()
    channel.makeConnection(StringTransport())
    request = http.Request(channel)
    request.uri = uri
    request.args = {b"ticket": [b"t-123"], b"room": [b"lobby"]}
    request.query_string = uri.partition(b"?")[2]
    request.requestHeaders.setRawHeaders(b"sec-websocket-protocol", [OFFER.encode()])
    request.requestHeaders.setRawHeaders(b"host", [b"chat.test"])
    return request


def daphne_protocol(request: http.Request) -> WebSocketProtocol:
    protocol = WebSocketProtocol()
    protocol.http_request_data = (
        f"GET /ws/?ticket=t-123 HTTP/1.1\r\nSec-WebSocket-Protocol: {OFFER}\r\n\r\n".encode()
    )
    protocol.websocket_protocols = ["chat", PREFIX + TOKEN]
    protocol.http_headers = {"sec-websocket-protocol": OFFER, "host": "chat.test"}
    protocol.http_response_data = f"HTTP/1.1 101\r\nSec-WebSocket-Protocol: {PREFIX}{TOKEN}\r\n\r\n"
    protocol.http_request_params = {"ticket": ["t-123"], "room": ["lobby"]}
    protocol.http_request_uri = "/ws/?ticket=t-123&room=lobby"
    protocol.http_status_line = "GET /ws/?ticket=t-123&room=lobby HTTP/1.1"
    protocol.transport = SimpleNamespace(producer=SimpleNamespace(requests=[request]))
    return protocol


def test_the_adapter_recognises_only_daphnes_protocol():
    adapter = DaphneAdapter()
    protocol = WebSocketProtocol()
    assert adapter.connection(protocol) is protocol
    assert adapter.connection(object()) is None
    assert adapter.connection(SimpleNamespace(http_request_data=b"")) is None


def test_forget_takes_the_credential_out_of_autobahn_and_twisted():
    request = twisted_request(b"/ws/?ticket=t-123&room=lobby")
    protocol = daphne_protocol(request)
    scope = {
        "headers": [(b"sec-websocket-protocol", OFFER.encode()), (b"host", b"chat.test")],
        "subprotocols": ["chat", PREFIX + TOKEN],
    }
    DaphneAdapter().forget(protocol, scope, PREFIX)

    assert protocol.http_request_data == b""
    assert protocol.websocket_protocols == ["chat"]
    assert protocol.http_headers == {"host": "chat.test"}
    assert protocol.http_response_data == ""
    assert protocol.http_request_params == {"room": ["lobby"]}
    assert protocol.http_request_uri == "/ws/?room=lobby"
    assert protocol.http_status_line == "GET /ws/?room=lobby HTTP/1.1"
    assert not request.requestHeaders.hasHeader(b"sec-websocket-protocol")
    assert request.requestHeaders.getRawHeaders(b"host") == [b"chat.test"]
    assert request.args == {b"room": [b"lobby"]}
    assert request.uri == b"/ws/?room=lobby"
    assert request.query_string == b"room=lobby"
    assert TOKEN not in repr(scope)


def test_nothing_to_forget_leaves_everything_as_it_was():
    request = twisted_request(b"/ws/")
    request.args = {b"room": [b"lobby"]}
    request.requestHeaders.setRawHeaders(b"sec-websocket-protocol", [b"chat"])
    protocol = daphne_protocol(request)
    protocol.websocket_protocols = ["chat"]
    protocol.http_headers = {"sec-websocket-protocol": "chat"}
    protocol.http_response_data = "HTTP/1.1 101\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
    protocol.http_request_params = {"room": ["lobby"]}
    DaphneAdapter().forget(protocol, {"headers": [], "subprotocols": ["chat"]}, PREFIX)
    assert protocol.http_headers == {"sec-websocket-protocol": "chat"}
    assert protocol.http_response_data.endswith("chat\r\n\r\n")
    assert (
        protocol.http_request_uri == "/ws/?ticket=t-123&room=lobby"
    )  # no credential argument: untouched
    assert request.requestHeaders.getRawHeaders(b"sec-websocket-protocol") == [b"chat"]


def test_attributes_of_unexpected_types_are_not_touched():
    protocol = WebSocketProtocol()
    protocol.http_request_data = "not bytes"
    protocol.websocket_protocols = ("chat", PREFIX + TOKEN)  # a tuple: not Daphne's list
    protocol.transport = SimpleNamespace(producer=SimpleNamespace(requests="not a list"))
    DaphneAdapter().forget(protocol, {}, PREFIX)
    assert protocol.http_request_data == "not bytes"
    assert protocol.websocket_protocols == ("chat", PREFIX + TOKEN)


def test_a_send_into_a_socket_the_client_closed_is_recognised():
    """autobahn raises Disconnected, not an OSError, from a send after the client's close
    frame; only then, with the protocol no longer open, is the send dropped."""
    from autobahn.exception import Disconnected

    adapter = DaphneAdapter()
    protocol = WebSocketProtocol()
    protocol.state = protocol.STATE_CLOSED
    assert adapter.closed(protocol, Disconnected("Attempt to send on a closed protocol"))
    assert not adapter.closed(protocol, ValueError("Socket has not been accepted"))
    protocol.state = protocol.STATE_OPEN
    assert not adapter.closed(protocol, Disconnected("?"))
