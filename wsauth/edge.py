"""The edge between wsauth, which speaks ASGI only, and the server that runs it.

The handshake path never changes what the server owns: the inner application gets
wsauth's own copy of the scope (``headers_without_token``). But every server keeps the
upgrade request for the socket's life (its scope, and its own parsed copies), token and
ticket included. Once the accept has been answered, nothing reads those again, so the
server's adapter (``wsauth.contrib.<server>``) takes the credential out of them:
``forget``, called by the middleware right after it sent the accept.

The adapter finds its server's connection object from the ``send`` the server handed the
application, through whatever wraps it (a ``functools.partial``, a bound method, a
closure such as Sentry's or OpenTelemetry's ``send`` wrappers, an object holding it), or,
behind a wrapper that hides it, from ``ServerEdge`` placed outermost. When no adapter
applies, one warning per process says so, and nothing of the server's is touched.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import sys
import types
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from django.utils.module_loading import import_string

from .conf import Conf, get_conf, on_reset

if TYPE_CHECKING:
    from asgiref.typing import (
        ASGI3Application,
        ASGIReceiveCallable,
        ASGISendCallable,
        Scope,
        WebSocketScope,
    )

logger = logging.getLogger("wsauth")

#: Query arguments that carry a credential (the ticket's and the query token's).
CREDENTIAL_ARGUMENTS = ("ticket", "access_token")
RAW_CREDENTIAL_ARGUMENTS = tuple(a.encode() for a in CREDENTIAL_ARGUMENTS)

#: The built-in adapters, tried in this order when WSAUTH["SERVER_ADAPTERS"] is None.
DEFAULT_ADAPTERS = (
    "wsauth.contrib.daphne.DaphneAdapter",
    "wsauth.contrib.uvicorn.UvicornAdapter",
    "wsauth.contrib.hypercorn.HypercornAdapter",
)

#: The loggers of the servers in the README's table, whose records wsauth masks
#: (``logutil.CredentialFilter``): uvicorn logs each handshake's query string.
SERVER_LOGGERS = (
    "uvicorn.error",
    "uvicorn.access",
    "hypercorn.error",
    "hypercorn.access",
    "gunicorn.error",
    "gunicorn.access",
    "daphne.server",
    "daphne.ws_protocol",
    "daphne.http_protocol",
)

#: How far from ``send`` the search for the server's connection goes, and how many
#: objects it looks at: a few wrappers deep, never the whole heap.
_MAX_DEPTH = 6
_MAX_OBJECTS = 64


class ServerAdapter:
    """Forgets what one server keeps of a socket's upgrade request.

    ``modules``: the adapter is active once one of them is imported (the server runs in
    this process); ``connection(obj)``: ``obj`` if it is the server's connection object
    for a socket, else None; ``forget(connection, scope, prefix)``: take the credential
    out of the server's copies, after the accept was answered."""

    name: ClassVar[str] = "server"
    modules: ClassVar[tuple[str, ...]] = ()

    def active(self) -> bool:
        return any(module in sys.modules for module in self.modules)

    def connection(self, obj: Any) -> Any | None:
        raise NotImplementedError

    def forget(self, connection: Any, scope: WebSocketScope, prefix: str) -> None:
        raise NotImplementedError

    def closed(self, connection: Any, exc: BaseException) -> bool:
        """Whether ``exc``, raised by a send, says the client's side is already closed (the
        server has not told the application yet). ASGI asks servers for an ``OSError``
        there (``closed_under`` takes those); this is for servers that raise another."""
        return False

    def header_budget(self, connection: Any) -> tuple[int, str] | None:
        """The largest ``Sec-WebSocket-Protocol`` header the server takes, and the knob
        that raises it; None when it is fixed or unknown."""
        return None


# -- copies without the credential -------------------------------------------------------------


def headers_without_token(
    headers: Iterable[tuple[bytes, bytes]], prefix: str
) -> list[tuple[bytes, bytes]]:
    """A copy of ASGI ``headers`` whose ``Sec-WebSocket-Protocol`` has no token offer."""
    marker = prefix.encode("ascii")
    out: list[tuple[bytes, bytes]] = []
    for header in headers:
        name, value = header
        if name.lower() == b"sec-websocket-protocol" and marker in value:
            header = (name, _offers_without(value, marker))
        # Every other header is the server's own pair, shared: not a new tuple for each
        # one, held for the socket's life (no one changes them in place).
        out.append(header)
    return out


def _offers_without(value: bytes, marker: bytes) -> bytes:
    return b", ".join(p.strip() for p in value.split(b",") if not p.strip().startswith(marker))


def query_without(query: str) -> str:
    """A query string without its credential arguments."""
    kept = (p for p in query.split("&") if p.partition("=")[0] not in CREDENTIAL_ARGUMENTS)
    return "&".join(kept)


def uri_without(uri: str) -> str:
    path, _, query = uri.partition("?")
    query = query_without(query)
    return f"{path}?{query}" if query else path


def has_credential(text: str | bytes, prefix: str) -> bool:
    """Whether ``text`` (a header, a URI, a raw request) may carry a credential."""
    if isinstance(text, bytes):
        return prefix.encode("ascii") in text or any(
            a + b"=" in text for a in RAW_CREDENTIAL_ARGUMENTS
        )
    return prefix in text or any(a + "=" in text for a in CREDENTIAL_ARGUMENTS)


def forget_in_scope(scope: Mapping[str, Any], prefix: str) -> None:
    """Take the token out of the server's own scope lists, in place (the server's
    connection and the frames above wsauth hold them for the socket's life). The query
    string stays: it is the application's, and a server may log it later."""
    marker = prefix.encode("ascii")
    headers = scope.get("headers")
    if isinstance(headers, list):
        for i, header in enumerate(headers):
            name, value = header[0], header[1]
            if name.lower() == b"sec-websocket-protocol" and marker in value:
                headers[i] = (name, _offers_without(value, marker))
    drop_offers(scope.get("subprotocols"), prefix)


def drop_offers(offered: Any, prefix: str) -> None:
    """Take the token offer out of a server's list of offered subprotocols, in place."""
    if isinstance(offered, list) and any(
        isinstance(p, str) and p.startswith(prefix) for p in offered
    ):
        offered[:] = [p for p in offered if not (isinstance(p, str) and p.startswith(prefix))]


# -- finding the server's connection -------------------------------------------------------------

#: The ``send`` the server gave, recorded by ``ServerEdge`` for the task that serves a socket.
server_send: contextvars.ContextVar[ASGISendCallable] = contextvars.ContextVar("wsauth_server_send")


class ServerEdge:
    """Wrap the outermost application with it when a middleware outside wsauth hides the
    server's ``send`` (wsauth logs which): it records the server's own ``send``.

    ``application = ServerEdge(SentryAsgiMiddleware(ProtocolTypeRouter({...})))``"""

    def __init__(self, app: ASGI3Application) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope.get("type") != "websocket":
            return await self.app(scope, receive, send)
        token = server_send.set(send)
        try:
            return await self.app(scope, receive, send)
        finally:
            server_send.reset(token)


def _referents(obj: Any) -> list[Any]:
    """What a ``send`` (or what wraps it) refers to that may be, or lead to, the server's
    connection: a partial's function and arguments, a bound method's object, a function's
    closure and ``__wrapped__``, an object's attributes."""
    if isinstance(obj, functools.partial):
        return [obj.func, *obj.args, *obj.keywords.values()]
    if isinstance(obj, types.MethodType):
        return [obj.__self__]
    if isinstance(obj, types.FunctionType):
        cells = [c.cell_contents for c in obj.__closure__ or () if _filled(c)]
        wrapped = obj.__dict__.get("__wrapped__")
        return cells if wrapped is None else [wrapped, *cells]
    if isinstance(obj, type | types.ModuleType | str | bytes | int | float | tuple | list | dict):
        return []
    out = list(getattr(obj, "__dict__", {}).values())
    for name in getattr(type(obj), "__slots__", ()):
        value = getattr(obj, name, None)
        if value is not None:
            out.append(value)
    return out


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def find(send: Any, adapters: list[ServerAdapter]) -> tuple[ServerAdapter, Any] | None:
    """The adapter that owns the connection behind ``send``, and the connection."""
    seen: set[int] = set()
    level = [send]
    for _ in range(_MAX_DEPTH):
        following: list[Any] = []
        for obj in level:
            if id(obj) in seen or len(seen) >= _MAX_OBJECTS:
                continue
            seen.add(id(obj))
            for adapter in adapters:
                connection = adapter.connection(obj)
                if connection is not None:
                    return adapter, connection
            following.extend(_referents(obj))
        if not following:
            break
        level = following
    return None


# -- the adapters in force --------------------------------------------------------------------

_adapters: list[ServerAdapter] | None = None
_warned: set[str] = set()
_budget_checked: set[str] = set()


def adapters(conf: Conf) -> list[ServerAdapter]:
    """The configured adapters (``SERVER_ADAPTERS``; None: the built-in ones)."""
    global _adapters
    if _adapters is None:
        paths = DEFAULT_ADAPTERS if conf.server_adapters is None else conf.server_adapters
        _adapters = [import_string(path)() for path in paths]
    return _adapters


@on_reset
def _drop_adapters() -> None:
    global _adapters
    _adapters = None
    _warned.clear()
    _budget_checked.clear()


def _warn_once(key: str, message: str, *args: Any) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


def _describe(send: Any) -> str:
    func = getattr(send, "__func__", send)
    return (
        f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', type(send).__name__)}"
    )


def forget(scope: WebSocketScope, send: ASGISendCallable, conf: Conf) -> bool:
    """After the accept was answered: let the server's adapter take the credential out of
    what the server keeps. True when an adapter did; False (and one warning per process)
    when none applies."""
    prefix = conf.subprotocol_prefix
    offered = scope.get("subprotocols") or ()
    query = scope.get("query_string") or b""
    if not any(isinstance(p, str) and p.startswith(prefix) for p in offered) and not (
        query and has_credential(query, prefix)
    ):
        return True  # nothing to forget (first-message authentication)
    active = [a for a in adapters(conf) if a.active()]
    found = find(server_send.get(send), active) if active else None
    if found is None:
        if active:
            _warn_once(
                "hidden",
                "wsauth: the %s adapter cannot reach the server's connection through the "
                "send it got (%s, wrapped outside wsauth): the server keeps the upgrade "
                "request's credential for each socket's life. Wrap the outermost "
                "application with wsauth.edge.ServerEdge.",
                "/".join(a.name for a in active),
                _describe(send),
            )
        else:
            _warn_once(
                "none",
                "wsauth: no server adapter applies to this server (send is %s): it may "
                "keep the upgrade request's credential for each socket's life; see the "
                "README's \"Servers\" table, or set WSAUTH['SERVER_ADAPTERS'].",
                _describe(send),
            )
        return False
    adapter, connection = found
    try:
        adapter.forget(connection, scope, prefix)
        if adapter.name not in _budget_checked:
            _budget_checked.add(adapter.name)
            _check_budget(adapter, connection, conf)
    except Exception as exc:  # a server version the adapter does not know: keep the socket
        _warn_once(
            f"failed:{adapter.name}",
            "wsauth: the %s adapter failed (%s: %s): the server may keep the upgrade "
            "request's credential for each socket's life.",
            adapter.name,
            type(exc).__name__,
            exc,
        )
        return False
    return True


def closed_under(send: Any, exc: BaseException) -> bool:
    """Whether the send that raised ``exc`` was into a connection the client has closed:
    the message is then dropped, as nothing can deliver it, and the application learns
    of the close from ``websocket.disconnect``. Looked up only when a send has failed."""
    if isinstance(exc, OSError):  # ASGI's "server-specific subclass of OSError"
        return True
    active = [a for a in adapters(get_conf()) if a.active()]
    found = find(server_send.get(send), active) if active else None
    if found is None:
        return False
    adapter, connection = found
    try:
        return adapter.closed(connection, exc)
    except Exception:  # a server version the adapter does not know: let exc through
        return False


#: Room a token offer needs beyond the token: the header's name, the prefix, an
#: application protocol, and the rest of a browser's request where the limit is on all
#: headers together.
_HEADER_OVERHEAD = 1024


def _check_budget(adapter: ServerAdapter, connection: Any, conf: Conf) -> None:
    budget = adapter.header_budget(connection)
    if budget is None:
        return
    limit, knob = budget
    if limit < conf.max_token_size + _HEADER_OVERHEAD:
        logger.warning(
            "wsauth: this %s takes request headers of at most %d bytes: tokens of more "
            "than about %d bytes get HTTP 431, while MAX_TOKEN_SIZE is %d. %s, or set "
            "WSAUTH['MAX_TOKEN_SIZE'] lower (or use tickets for large tokens).",
            adapter.name,
            limit,
            max(0, limit - _HEADER_OVERHEAD),
            conf.max_token_size,
            knob,
        )
