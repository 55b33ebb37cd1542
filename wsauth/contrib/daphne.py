"""Daphne: what its stack keeps of the upgrade request, forgotten after the accept.

Daphne's protocol is autobahn's, which keeps the raw request bytes, the parsed headers,
the offered subprotocols (Daphne's scope shares that list) and the query's parsed
arguments; Twisted's HTTP request (Daphne's ``WebRequest``, which did the upgrade) stays
in its ``HTTPChannel``, the connection's registered producer, with its headers, URI and
arguments. Measured at 10k idle sockets: the token in ``Sec-WebSocket-Protocol`` cost
Daphne's stack 3.6 KiB per socket, more than all of wsauth's own state. Nothing reads them
once the handshake is answered (autobahn keeps the raw request and response for its own
test suite; Daphne reads the path for its access log). Every attribute is checked for
the type Daphne, autobahn and Twisted give it before it is touched.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ..edge import (
    CREDENTIAL_ARGUMENTS,
    RAW_CREDENTIAL_ARGUMENTS,
    ServerAdapter,
    forget_in_scope,
    query_without,
    uri_without,
)

if TYPE_CHECKING:
    from asgiref.typing import WebSocketScope


class DaphneAdapter(ServerAdapter):
    name = "daphne"
    modules = ("daphne.ws_protocol",)

    def connection(self, obj: Any) -> Any | None:
        module = sys.modules.get("daphne.ws_protocol")
        cls = getattr(module, "WebSocketProtocol", None)
        return obj if cls is not None and isinstance(obj, cls) else None

    def closed(self, connection: Any, exc: BaseException) -> bool:
        # autobahn raises Disconnected (no OSError) from a send once the client's close
        # frame came; Daphne sends websocket.disconnect only when TCP is gone, later.
        from autobahn.exception import Disconnected

        return isinstance(exc, Disconnected) and connection.state != connection.STATE_OPEN

    def forget(self, connection: Any, scope: WebSocketScope, prefix: str) -> None:
        forget_in_scope(scope, prefix)
        _forget_in_autobahn(connection, prefix)
        channel = getattr(getattr(connection, "transport", None), "producer", None)
        requests = getattr(channel, "requests", None)
        if isinstance(requests, list):
            for request in requests:
                _forget_in_twisted(request, prefix.encode("ascii"))


def _forget_in_autobahn(protocol: Any, prefix: str) -> None:
    if isinstance(getattr(protocol, "http_request_data", None), bytes):
        protocol.http_request_data = b""  # the raw request, every header in it
    offered = getattr(protocol, "websocket_protocols", None)  # Daphne's request.protocols too
    if isinstance(offered, list) and any(
        isinstance(p, str) and p.startswith(prefix) for p in offered
    ):
        offered[:] = [p for p in offered if not (isinstance(p, str) and p.startswith(prefix))]
    headers = getattr(protocol, "http_headers", None)  # Daphne's request.headers too
    if isinstance(headers, dict):
        value = headers.get("sec-websocket-protocol")
        if isinstance(value, str) and prefix in value:
            del headers["sec-websocket-protocol"]  # the offers stay in the scope
    response = getattr(protocol, "http_response_data", None)
    if isinstance(response, str) and prefix in response:  # the token was the one selected
        protocol.http_response_data = ""
    params = getattr(protocol, "http_request_params", None)
    if isinstance(params, dict) and any(name in params for name in CREDENTIAL_ARGUMENTS):
        for name in CREDENTIAL_ARGUMENTS:
            params.pop(name, None)
        uri = getattr(protocol, "http_request_uri", None)
        if isinstance(uri, str):
            protocol.http_request_uri = uri_without(uri)
        line = getattr(protocol, "http_status_line", None)  # "GET <uri> HTTP/1.1"
        if isinstance(line, str) and line.count(" ") == 2:
            method, uri, version = line.split(" ")
            protocol.http_status_line = f"{method} {uri_without(uri)} {version}"


def _forget_in_twisted(request: Any, marker: bytes) -> None:
    headers = getattr(request, "requestHeaders", None)
    if headers is not None and hasattr(headers, "removeHeader"):
        raw = headers.getRawHeaders(b"sec-websocket-protocol") or []
        if any(isinstance(v, bytes) and marker in v for v in raw):
            headers.removeHeader(b"sec-websocket-protocol")
    args = getattr(request, "args", None)
    if not isinstance(args, dict) or not any(name in args for name in RAW_CREDENTIAL_ARGUMENTS):
        return
    for name in RAW_CREDENTIAL_ARGUMENTS:
        args.pop(name, None)
    if isinstance(getattr(request, "uri", None), bytes):
        request.uri = uri_without(request.uri.decode("latin-1")).encode("latin-1")
    if isinstance(getattr(request, "query_string", None), bytes):  # Daphne's own copy
        query = request.query_string.decode("latin-1")
        request.query_string = query_without(query).encode("latin-1")
