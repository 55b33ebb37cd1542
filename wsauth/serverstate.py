"""The credential out of the server's own copies of the upgrade request.

Before the application runs, ``strip_token`` takes the token out of the scope's
``headers`` and ``subprotocols``, which are Daphne's own lists. After the accept,
``forget_credentials`` takes it out of the rest of what Daphne's stack keeps for the
socket's life: autobahn's protocol keeps the raw request bytes, the parsed headers, the
offered subprotocols and the query's parsed arguments; Twisted's HTTP request (Daphne's
``WebRequest``, which did the upgrade) stays in its ``HTTPChannel``, the connection's
registered producer, with its headers, URI and arguments. Measured at 10k idle sockets:
the token in ``Sec-WebSocket-Protocol`` cost Daphne's stack 3.6 KiB per socket, more than
all of wsauth's own state. Nothing on the server side reads them once the opening
handshake is answered (autobahn keeps the raw request and response for its own test
suite, Daphne reads the request's path for its access log), so the credential does not
stay in server memory, and costs nothing for the socket's life.

Daphne's protocol is reached through the ``send`` it hands the application,
``functools.partial(server.handle_reply, protocol)``. With another server, or with a
middleware outside wsauth that wraps ``send``, nothing is found and nothing is changed;
every attribute is checked for the type Daphne, autobahn and Twisted give it before it is
touched. The application's own scope keeps its query string as it came.
"""

from __future__ import annotations

import functools
from typing import Any

from .authenticators import QueryTokenAuthenticator, TicketAuthenticator

#: Query arguments that carry a credential.
CREDENTIAL_ARGUMENTS = (TicketAuthenticator.argument, QueryTokenAuthenticator.argument)
_RAW_ARGUMENTS = tuple(name.encode() for name in CREDENTIAL_ARGUMENTS)


def strip_token(scope: dict[str, Any], prefix: str, app_protocols: list[str]) -> None:
    """Take the token out of ``subprotocols`` and the ``Sec-WebSocket-Protocol`` header of
    the server's own scope, in place: Daphne's protocol object and the frames above this
    middleware hold those lists for the socket's life, so a filtered copy would leave the
    token in memory (1-4 KB per socket) and in anything that reports the scope."""
    marker = prefix.encode("ascii")
    headers = scope.get("headers") or []
    if not isinstance(headers, list):
        headers = scope["headers"] = list(headers)
    for i, (name, value) in enumerate(headers):
        if name.lower() == b"sec-websocket-protocol":
            kept = [p.strip() for p in value.split(b",") if not p.strip().startswith(marker)]
            headers[i] = (name, b", ".join(kept))
    if isinstance(scope.get("subprotocols"), list):
        scope["subprotocols"][:] = app_protocols
    else:
        scope["subprotocols"] = app_protocols


def _protocol(send: Any) -> Any | None:
    """Daphne's protocol object behind ``send``, or ``None``."""
    if isinstance(send, functools.partial) and send.args:
        candidate = send.args[0]
        if isinstance(getattr(candidate, "websocket_protocols", None), list):
            return candidate
    return None


def _query_without(query: str) -> str:
    """A query string without its credential arguments."""
    kept = (p for p in query.split("&") if p.partition("=")[0] not in CREDENTIAL_ARGUMENTS)
    return "&".join(kept)


def _uri_without(uri: str) -> str:
    path, _, query = uri.partition("?")
    query = _query_without(query)
    return f"{path}?{query}" if query else path


def forget_credentials(send: Any, prefix: str) -> bool:
    """Take the credential out of the request the server behind ``send`` keeps; call it
    once the accept has been sent. True when the server's copies were found."""
    protocol = _protocol(send)
    if protocol is None:
        return False
    _forget_in_autobahn(protocol, prefix)
    channel = getattr(getattr(protocol, "transport", None), "producer", None)
    requests = getattr(channel, "requests", None)
    if isinstance(requests, list):
        for request in requests:
            _forget_in_twisted(request, prefix.encode("ascii"))
    return True


def _forget_in_autobahn(protocol: Any, prefix: str) -> None:
    if isinstance(getattr(protocol, "http_request_data", None), bytes):
        protocol.http_request_data = b""  # the raw request, every header in it
    offered: list[Any] = protocol.websocket_protocols  # Daphne's request.protocols too
    if any(isinstance(p, str) and p.startswith(prefix) for p in offered):
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
            protocol.http_request_uri = _uri_without(uri)
        line = getattr(protocol, "http_status_line", None)  # "GET <uri> HTTP/1.1"
        if isinstance(line, str) and line.count(" ") == 2:
            method, uri, version = line.split(" ")
            protocol.http_status_line = f"{method} {_uri_without(uri)} {version}"


def _forget_in_twisted(request: Any, marker: bytes) -> None:
    headers = getattr(request, "requestHeaders", None)
    if headers is not None and hasattr(headers, "removeHeader"):
        raw = headers.getRawHeaders(b"sec-websocket-protocol") or []
        if any(isinstance(v, bytes) and marker in v for v in raw):
            headers.removeHeader(b"sec-websocket-protocol")
    args = getattr(request, "args", None)
    if not isinstance(args, dict) or not any(name in args for name in _RAW_ARGUMENTS):
        return
    for name in _RAW_ARGUMENTS:
        args.pop(name, None)
    if isinstance(getattr(request, "uri", None), bytes):
        request.uri = _uri_without(request.uri.decode("latin-1")).encode("latin-1")
    if isinstance(getattr(request, "query_string", None), bytes):  # Daphne's own copy
        query = request.query_string.decode("latin-1")
        request.query_string = _query_without(query).encode("latin-1")
