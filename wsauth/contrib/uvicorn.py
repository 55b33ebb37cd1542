"""uvicorn, and gunicorn's uvicorn workers: what each websocket protocol keeps.

Every protocol keeps its scope (``headers``, ``subprotocols``). On top of it, websockets'
sans-I/O protocol (uvicorn's default) keeps the parsed ``Request`` (path and headers),
the legacy one (``--ws websockets``) the request's ``path`` and ``request_headers``, and
wsproto (``--ws wsproto``) its handshake's ``Request`` event (the target). None of them is
read once the handshake is answered. Each is checked for its library's type before it
is touched.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ..edge import ServerAdapter, forget_in_scope, has_credential, uri_without

if TYPE_CHECKING:
    from asgiref.typing import WebSocketScope

_PROTOCOLS = {
    "uvicorn.protocols.websockets.websockets_impl": "WebSocketProtocol",
    "uvicorn.protocols.websockets.websockets_sansio_impl": "WebSocketsSansIOProtocol",
    "uvicorn.protocols.websockets.wsproto_impl": "WSProtocol",
}


class UvicornAdapter(ServerAdapter):
    name = "uvicorn"
    modules = tuple(_PROTOCOLS)

    def connection(self, obj: Any) -> Any | None:
        for module, name in _PROTOCOLS.items():
            cls = getattr(sys.modules.get(module), name, None)
            if cls is not None and isinstance(obj, cls):
                return obj
        return None

    def forget(self, connection: Any, scope: WebSocketScope, prefix: str) -> None:
        forget_in_scope(scope, prefix)
        own = getattr(connection, "scope", None)
        if isinstance(own, dict) and own is not scope:
            forget_in_scope(own, prefix)
        request: Any = getattr(connection, "request", None)  # websockets' sans-I/O Request
        if _is(request, "websockets.http11", "Request"):
            _forget_in_headers(request.headers, prefix)
            if isinstance(request.path, str) and has_credential(request.path, prefix):
                request.path = uri_without(request.path)
        _forget_in_headers(getattr(connection, "request_headers", None), prefix)  # legacy
        path = getattr(connection, "path", None)
        if isinstance(path, str) and has_credential(path, prefix):
            connection.path = uri_without(path)
        handshake = getattr(getattr(connection, "conn", None), "handshake", None)  # wsproto
        event: Any = getattr(handshake, "_initiating_request", None)
        if _is(event, "wsproto.events", "Request") and has_credential(event.target, prefix):
            object.__setattr__(event, "target", uri_without(event.target))  # a frozen event

    def header_budget(self, connection: Any) -> tuple[int, str] | None:
        """websockets caps one header line (8192 bytes unless its environment says
        otherwise); under either, h11 caps all headers together (16 KiB)."""
        budgets: list[tuple[int, str]] = []
        if not _is(connection, "uvicorn.protocols.websockets.wsproto_impl", "WSProtocol"):
            legacy = "uvicorn.protocols.websockets.websockets_impl"
            module = (
                "websockets.legacy.http"
                if _is(connection, legacy, "WebSocketProtocol")
                else ("websockets.http11")
            )
            line = getattr(sys.modules.get(module), "MAX_LINE_LENGTH", None)
            if isinstance(line, int):
                budgets.append(
                    (line, "Start uvicorn with WEBSOCKETS_MAX_LINE_LENGTH=16384 in its environment")
                )
        config = getattr(connection, "config", None)
        http = getattr(config, "http_protocol_class", None)
        if getattr(http, "__name__", "") == "H11Protocol":
            size = getattr(config, "h11_max_incomplete_event_size", None)
            if size is None:
                size = getattr(
                    sys.modules.get("h11._connection"), "DEFAULT_MAX_INCOMPLETE_EVENT_SIZE", None
                )
            if isinstance(size, int):
                budgets.append((size, "Start uvicorn with --h11-max-incomplete-event-size 32768"))
        return min(budgets) if budgets else None


def _is(obj: Any, module: str, name: str) -> bool:
    cls = getattr(sys.modules.get(module), name, None)
    return cls is not None and isinstance(obj, cls)


def _forget_in_headers(headers: Any, prefix: str) -> None:
    """websockets' ``Headers``: without ``Sec-WebSocket-Protocol`` when it has the token."""
    if not _is(headers, "websockets.datastructures", "Headers"):
        return
    if any(prefix in value for value in headers.get_all("Sec-WebSocket-Protocol")):
        del headers["Sec-WebSocket-Protocol"]  # the offers stay in the application's scope
