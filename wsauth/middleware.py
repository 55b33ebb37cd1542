"""The handshake: origin gate, credentials, verification, identity, scope.

A refusal at any step ends the handshake there: the inner application never runs and
Daphne answers ``403`` (a close before accept). The reason goes to the ``wsauth`` logger,
one line, with the credential masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Generator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from channels.middleware import BaseMiddleware
from django.contrib.auth.models import AnonymousUser
from django.utils.module_loading import import_string

from . import admission, close_codes, edge, metrics, revoke, signals
from .admission.places import socket_id
from .authenticators import BaseAuthenticator, Handshake, Identity
from .conf import Conf, get_conf, on_reset
from .contrib.daphne_limits import guard, over_queue
from .errors import Limited, Refused, Unavailable, WSAuthError
from .logutil import mask
from .origins import gate
from .routing import wants_first_message_auth

if TYPE_CHECKING:
    from asgiref.typing import (
        ASGI3Application,
        ASGIReceiveCallable,
        ASGIReceiveEvent,
        ASGISendCallable,
        Scope,
        WebSocketScope,
    )

    from .asgi import WSAuthScope

logger = logging.getLogger("wsauth")

T = TypeVar("T")

_authenticators: list[BaseAuthenticator] | None = None


def get_authenticators(conf: Conf) -> list[BaseAuthenticator]:
    global _authenticators
    if _authenticators is None:
        _authenticators = [import_string(path)() for path in conf.authenticators]
    return _authenticators


@on_reset
def _drop_authenticators() -> None:
    global _authenticators
    _authenticators = None


async def _deny(receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """Close before accept (Daphne answers HTTP 403), then wait for the disconnect."""
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            # (asgiref's events are total; ASGI makes the close's code and reason optional)
            await send({"type": "websocket.close"})  # type: ignore[arg-type,misc]
        elif message["type"] == "websocket.disconnect":
            return


async def _limit(
    receive: ASGIReceiveCallable, send: ASGISendCallable, scope: WebSocketScope, conf: Conf
) -> None:
    """Accept, then close with 4429: unlike an HTTP 403, a close code tells the client
    (wsauth.js) to back off and retry rather than to give up."""
    prefix = conf.subprotocol_prefix
    offered = [p for p in scope.get("subprotocols") or () if isinstance(p, str)]
    app = [p for p in offered if not p.startswith(prefix)]
    chosen = app[0] if app else (offered[0] if offered else None)  # Chromium needs one
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            # (asgiref's events are total; ASGI makes these headers and reason optional)
            await send({"type": "websocket.accept", "subprotocol": chosen})  # type: ignore[arg-type]
            await send({"type": "websocket.close", "code": close_codes.RATE_LIMITED})  # type: ignore[arg-type]
        elif message["type"] == "websocket.disconnect":
            return


async def authenticate(
    scope: Mapping[str, Any], conf: Conf, address: str = "-"
) -> tuple[Identity | None, Handshake]:
    """Run the origin gate and the authenticators, or raise ``Refused``. The identity is
    ``None`` when the handshake carries no credentials at all. (The client's ``address``
    is for authenticators that want it: ``handshake.address``.)"""
    handshake = Handshake.parse(scope, conf)
    handshake.address = address
    if handshake.origin is None:
        if conf.require_origin:
            raise Refused("origin_required", "no Origin header and REQUIRE_ORIGIN is on")
    elif not await gate.allows(handshake.origin):
        raise Refused("origin_not_allowed", f"origin {handshake.origin!r} is not allowed")
    if (
        handshake.token_protocol
        and not handshake.app_protocols
        and not conf.allow_token_only_subprotocol
    ):
        raise Refused(
            "token_only_subprotocol",
            "offer an application subprotocol next to the token "
            "(ALLOW_TOKEN_ONLY_SUBPROTOCOL is off)",
            credential=handshake.token,
        )
    for authenticator in get_authenticators(conf):
        identity = await authenticator.authenticate(handshake, conf)
        if identity is not None:
            return identity, handshake
    return None, handshake


class _SelectingSend:
    """The ``send`` the application gets: only an offered application protocol may be
    selected, otherwise ours. An unoffered one makes a server hang (Daphne) or fail
    (wsproto, hypercorn), none makes Chromium fail the handshake. Once the accept is
    sent, the server's adapter (``edge``) forgets the credential the server keeps. It
    also notes when the socket was accepted and the code the application closed it with
    (metrics, ``socket_closed``), and, on Daphne, holds the transport whose unsent bytes
    ``MAX_QUEUED_BYTES`` bounds. (A slotted object: it lives as long as the socket.)"""

    __slots__ = (
        "accepted_at",
        "chosen",
        "close_code",
        "method",
        "offered",
        "send",
        "server_scope",
        "transport",
    )

    def __init__(
        self,
        send: ASGISendCallable,
        offered: list[str],
        chosen: str | None,
        method: str,
        server_scope: WebSocketScope | None,
    ) -> None:
        self.send, self.offered, self.chosen = send, offered, chosen
        self.method = method
        self.server_scope = server_scope  # the server's own, until the accept is answered
        self.accepted_at: float | None = None
        self.close_code: int | None = None
        self.transport: Any = None  # the server's, watched for MAX_QUEUED_BYTES

    async def __call__(self, message: Any) -> None:  # (ASGISendEvent; kind would not narrow it)
        kind = message["type"]
        if kind != "websocket.accept":
            transport = self.transport
            if (
                transport is not None
                and (transport._tempDataLen or transport.dataBuffer)  # unsent bytes
                and over_queue(self.send, transport, message)
            ):
                return  # a client that does not read: closed (4008), or about to be
            if kind == "websocket.close" and self.close_code is None:
                self.close_code = message.get("code") or 1000
            try:
                return await self.send(message)
            except Exception as exc:
                # The client closed first: its websocket.disconnect is on its way, and
                # raising would end the consumer before disconnect() leaves its groups.
                if edge.closed_under(self.send, exc):
                    return None
                raise
        asked = message.get("subprotocol")
        if asked not in self.offered and asked != self.chosen:  # (no copy to keep)
            message = {**message, "subprotocol": self.chosen}
        # The server's own limits: frames and fragments in its protocol; the bytes it
        # holds unsent for the client, here before each message.
        self.transport = guard(self.send)
        await self.send(message)
        if self.accepted_at is None:
            self.accepted_at = time.time()
            metrics.socket_opened(self.method)
        scope, self.server_scope = self.server_scope, None
        if scope is not None:
            edge.forget(scope, self.send, get_conf())


class _Receiving:
    """The ``receive`` the application gets: notes the client's close code. (Slotted:
    it lives as long as the socket.)"""

    __slots__ = ("code", "receive")

    def __init__(self, receive: ASGIReceiveCallable) -> None:
        self.receive = receive
        self.code: int | None = None

    async def __call__(self) -> ASGIReceiveEvent:
        message = await self.receive()
        if message["type"] == "websocket.disconnect":
            self.code = message.get("code")
        return message


class WSAuthMiddleware(BaseMiddleware):  # type: ignore[misc]  # (channels is untyped)
    """Authenticate WebSocket handshakes; other connection types pass through untouched.

    One handshake, straight down: the origin gate and the authenticators
    (``authenticate``), then ``admission.admit``, then the socket's record in the scope,
    then the inner application. Any refusal is one ``WSAuthError``, answered in one
    place (``_answer``): 403, or 4429 for a limit."""

    inner: ASGI3Application  # (set by channels' BaseMiddleware)

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "websocket":
            await super().__call__(scope, receive, send)
            return
        # This frame lives as long as the socket; the handshake's locals live in _open's.
        opened = await self._open(scope, receive, send)
        if opened is None:  # refused, and the refusal has run its course
            return
        scope, selecting, place = opened
        del opened
        receiving = _Receiving(receive)
        try:
            # The scope is wsauth's own copy already: not BaseMiddleware's second copy
            # (a dict and a frame held for the socket's life).
            await self.inner(scope, receiving, selecting)
        finally:
            # Shielded only where something is awaited: a task per closing socket otherwise.
            if place is not None and not place.release_locally():
                await asyncio.shield(place.release())
            if selecting.accepted_at is not None:
                code, duration = self._closed(selecting, receiving)
                if signals.socket_closed.receivers:
                    await asyncio.shield(self._closed_signal(scope, code, duration))

    @staticmethod
    def _closed(selecting: _SelectingSend, receiving: _Receiving) -> tuple[int | None, float]:
        code = selecting.close_code if selecting.close_code is not None else receiving.code
        duration = max(0.0, time.time() - (selecting.accepted_at or 0.0))
        metrics.socket_closed(selecting.method, code, duration)
        return code, duration

    async def _closed_signal(
        self, scope: Mapping[str, Any], code: int | None, duration: float
    ) -> None:
        info = scope.get("wsauth") or {}
        await signals.send(
            signals.socket_closed,
            type(self),
            # (a first-message socket's user is known only to the consumer's record)
            user=info.get("user") or scope.get("user"),
            method=metrics.method_label(info.get("method")),
            socket_id=info.get("socket_id"),
            path=scope.get("path"),
            origin=info.get("origin"),
            address=info.get("client"),
            code=code,
            duration=duration,
        )

    async def _open(
        self, scope: WebSocketScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> tuple[WSAuthScope, _SelectingSend, admission.SocketPlace | None] | None:
        """The inner application's scope and send, and the socket's place; ``None`` when
        refused (the answer has been sent and the disconnect received)."""
        with contextlib.suppress(Exception):  # a broken layer: the consumer's join says so
            revoke.listen()
        conf = get_conf()
        attempt = admission.Attempt.of(scope, conf)
        try:
            identity, handshake, checked_at, place = await _bounded(
                self._admitted(scope, conf, attempt), conf.handshake_timeout
            )
        except WSAuthError as error:
            error = await admission.failed(attempt, error)
            await self._answer(scope, receive, send, error, attempt, attempt.method)
            return None
        except TimeoutError:
            timeout = Unavailable("timeout", "authentication took too long")
            await self._answer(scope, receive, send, timeout, attempt, attempt.method)
            return None
        except Exception as exc:  # a database or store fault: refuse cleanly, keep serving
            logger.error(
                "wsauth: refused handshake reason=server_error path=%s client=%s: %s: %s",
                attempt.path,
                attempt.address,
                type(exc).__name__,
                exc,
            )
            method = attempt.method or _method_of(scope, conf)
            metrics.handshake("error", "server_error", method)
            await _refused_signal(type(self), "server_error", str(exc), method, False, attempt)
            await _deny(receive, send)
            return None
        inner = self._scope(scope, conf, handshake, identity, checked_at, attempt, place)
        if identity.method != "pending":  # a first-message socket is counted at its frame
            metrics.handshake("accepted", "ok", identity.method)
            if signals.handshake_accepted.receivers:
                await _accepted_signal(type(self), inner, attempt)
        return inner, _selecting(send, handshake, identity.method, scope), place

    async def _admitted(
        self, scope: Mapping[str, Any], conf: Conf, attempt: admission.Attempt
    ) -> tuple[Identity, Handshake, float, admission.SocketPlace | None]:
        """The origin gate, the authenticators and admission: the identity, the parsed
        handshake, when the markers were checked, and the socket's place."""
        identity, handshake = await authenticate(scope, conf, attempt.address)
        attempt.origin = handshake.origin
        checked_at = time.time()  # before the revocation markers are read
        place = None
        if identity is not None:
            attempt.method = identity.method
            place = await admission.admit(
                attempt,
                identity.user,
                identity.revocable,
                identity.issued_at,
                method=identity.method,
                expires_at=identity.expires_at,
            )
        elif wants_first_message_auth(self.inner, attempt.path):
            attempt.method = "message"
            await admission.admit_unverified(attempt)
            identity = Identity(AnonymousUser(), "pending", None, None)
        else:
            raise Refused("no_credentials", "no token subprotocol and no ticket")
        return identity, handshake, checked_at, place

    @staticmethod
    def _scope(
        scope: WebSocketScope,
        conf: Conf,
        handshake: Handshake,
        identity: Identity,
        checked_at: float,
        attempt: admission.Attempt,
        place: admission.SocketPlace | None = None,
    ) -> WSAuthScope:
        """The inner application's scope, wsauth's own copy (the server's is left as it
        came: wsproto and hypercorn check the selected subprotocol against their lists):
        the offers and ``Sec-WebSocket-Protocol`` without the token, the user and the
        socket's auth record."""
        inner: WSAuthScope = {
            **scope,
            "subprotocols": handshake.app_protocols,  # offers as parsed (blanks dropped)
            "user": identity.user,
            "wsauth": {
                "method": identity.method,
                "claims": identity.claims,
                "expires_at": identity.expires_at,
                "subprotocol": _chosen(handshake),
                "checked_at": checked_at,
                "client": attempt.address,
                "origin": handshake.origin,
                "socket_id": socket_id(place.member) if place is not None else None,
                **identity.extra,
            },
        }
        if handshake.token_protocol is not None:
            inner["headers"] = edge.headers_without_token(
                scope.get("headers") or (), conf.subprotocol_prefix
            )
        if logger.isEnabledFor(logging.DEBUG):  # the arguments cost a call per handshake
            logger.debug(
                "wsauth: authenticated %s by %s path=%s client=%s",
                identity.user.get_username(),
                identity.method,
                attempt.path,
                attempt.address,
            )
        return inner

    @classmethod
    async def _answer(
        cls,
        scope: WebSocketScope,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
        error: WSAuthError,
        attempt: admission.Attempt,
        method: str | None = None,
    ) -> None:
        """The one place a refusal is answered: 4429 for a limit (back off, logged once per
        window), else 403 with the reason in the log; counted, and signalled."""
        method = method or _method_of(scope, get_conf())
        if attempt.origin is None:  # refused before the handshake's parse was kept
            attempt.origin = _origin_of(scope)
        limited = isinstance(error, Limited)
        metrics.handshake(_outcome(error), error.reason, method)
        if limited:
            metrics.limit_hit(error.reason)
        await _refused_signal(cls, error.reason, error.detail, method, limited, attempt)
        if not isinstance(error, Limited) or error.first:
            logger.warning(
                "wsauth: refused handshake reason=%s path=%s client=%s credential=%s: %s",
                error.reason,
                attempt.path,
                attempt.address,
                mask(error.credential),
                error.detail,
            )
        if isinstance(error, Limited):
            await _limit(receive, send, scope, get_conf())
        else:
            await _deny(receive, send)


async def _bounded(coro: Coroutine[Any, Any, T], seconds: float | None) -> T:
    """``await coro`` within ``seconds``. The timer is armed only once ``coro`` waits for
    something: a handshake whose token, user and origin are cached runs to its end
    without suspending, and no timeout can interrupt code that does not suspend, so
    the limit is the same at the price of no timer per handshake."""
    try:
        waiting_on = coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    async with asyncio.timeout(seconds):
        return cast(T, await _Resumed(coro, waiting_on))


class _Resumed:
    """Awaits a coroutine that has already suspended once on ``waiting_on``, as
    ``await`` would have gone on: what the task sends or throws goes to the coroutine."""

    __slots__ = ("coro", "waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self.coro, self.waiting_on = coro, waiting_on

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, waiting_on = self.coro, self.waiting_on
        while True:
            try:
                value = yield waiting_on
            except BaseException as exc:  # a cancellation (the timeout's), a close
                try:
                    waiting_on = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    waiting_on = coro.send(value)
                except StopIteration as done:
                    return done.value


def _outcome(error: WSAuthError) -> str:
    if isinstance(error, Limited):
        return "limited"
    return "unavailable" if isinstance(error, Unavailable) else "refused"


def _method_of(scope: Mapping[str, Any], conf: Conf) -> str:
    """The credential method a refused handshake offered (the refusal path only)."""
    try:
        handshake = Handshake.parse(scope, conf)
    except WSAuthError:
        return "none"
    if handshake.token_protocol is not None:
        return "subprotocol"
    if "ticket" in handshake.query:
        return "ticket"
    return "query" if "access_token" in handshake.query else "none"


def _origin_of(scope: Mapping[str, Any]) -> str | None:
    origins = [v for k, v in scope.get("headers") or () if k.lower() == b"origin"]
    return origins[0].decode("latin-1") if len(origins) == 1 else None


async def _refused_signal(
    sender: Any, reason: str, detail: str, method: str, limited: bool, attempt: admission.Attempt
) -> None:
    if signals.handshake_refused.receivers:
        await signals.send(
            signals.handshake_refused,
            sender,
            reason=reason,
            detail=detail,
            method=method,
            limited=limited,
            path=attempt.path,
            origin=attempt.origin,
            address=attempt.address,
        )


async def _accepted_signal(sender: Any, scope: WSAuthScope, attempt: admission.Attempt) -> None:
    info = scope["wsauth"]
    await signals.send(
        signals.handshake_accepted,
        sender,
        user=scope["user"],
        method=info["method"],
        socket_id=info.get("socket_id"),
        path=attempt.path,
        origin=attempt.origin,
        address=attempt.address,
        claims=info.get("claims"),
        expires_at=info.get("expires_at"),
    )


def _chosen(handshake: Handshake) -> str | None:
    """The subprotocol to select: the first application protocol offered, else the token
    (Chromium fails a handshake whose answer selects none of its offers)."""
    return handshake.app_protocols[0] if handshake.app_protocols else handshake.token_protocol


def _selecting(
    send: ASGISendCallable, handshake: Handshake, method: str, server_scope: WebSocketScope
) -> _SelectingSend:
    # The offers' list is the inner scope's own (no copy for the socket's life).
    return _SelectingSend(
        send,
        handshake.app_protocols,
        _chosen(handshake),
        metrics.method_label(method),
        server_scope,
    )


def WSAuthMiddlewareStack(inner: ASGI3Application) -> WSAuthMiddleware:
    """The stack to wrap a ``URLRouter`` with. Do not put ``AuthMiddlewareStack`` inside:
    Channels' ``AuthMiddleware`` would overwrite ``scope["user"]`` with the session user."""
    return WSAuthMiddleware(inner)
