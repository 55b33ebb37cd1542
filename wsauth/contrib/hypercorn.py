"""hypercorn: its websocket stream keeps the scope, whose ``headers`` and ``subprotocols``
are its handshake's own lists; nothing else of the request once it is answered."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ..edge import ServerAdapter, forget_in_scope

if TYPE_CHECKING:
    from asgiref.typing import WebSocketScope


class HypercornAdapter(ServerAdapter):
    name = "hypercorn"
    modules = ("hypercorn.protocol.ws_stream",)

    def connection(self, obj: Any) -> Any | None:
        cls = getattr(sys.modules.get("hypercorn.protocol.ws_stream"), "WSStream", None)
        return obj if cls is not None and isinstance(obj, cls) else None

    def forget(self, connection: Any, scope: WebSocketScope, prefix: str) -> None:
        forget_in_scope(scope, prefix)
        own = getattr(connection, "scope", None)
        if isinstance(own, dict) and own is not scope:
            forget_in_scope(own, prefix)
        handshake = getattr(connection, "handshake", None)
        forget_in_scope({"headers": getattr(handshake, "headers", None)}, prefix)
        forget_in_scope({"subprotocols": getattr(handshake, "subprotocols", None)}, prefix)

    def header_budget(self, connection: Any) -> tuple[int, str] | None:
        size = getattr(getattr(connection, "config", None), "h11_max_incomplete_size", None)
        if not isinstance(size, int):
            return None
        return size, "Raise h11_max_incomplete_size in hypercorn's configuration file"
