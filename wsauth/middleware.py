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
from typing import Any

from channels.middleware import BaseMiddleware
from django.contrib.auth.models import AnonymousUser
from django.utils.module_loading import import_string

from . import admission, close_codes, revoke
from .authenticators import BaseAuthenticator, Handshake, Identity
from .conf import Conf, get_conf, on_reset
from .contrib.daphne_limits import guard, over_queue
from .errors import Limited, Refused, Unavailable, WSAuthError
from .logutil import mask
from .origins import gate
from .routing import wants_first_message_auth
from .serverstate import forget_credentials, strip_token

logger = logging.getLogger("wsauth")

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


async def _deny(receive: Any, send: Any) -> None:
    """Close before accept (Daphne answers HTTP 403), then wait for the disconnect."""
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.close"})
        elif message["type"] == "websocket.disconnect":
            return


async def _limit(receive: Any, send: Any, scope: dict[str, Any], conf: Conf) -> None:
    """Accept, then close with 4429: unlike an HTTP 403, a close code tells the client
    (wsauth.js) to back off and retry rather than to give up."""
    prefix = conf.subprotocol_prefix
    offered = [p for p in scope.get("subprotocols") or () if isinstance(p, str)]
    app = [p for p in offered if not p.startswith(prefix)]
    chosen = app[0] if app else (offered[0] if offered else None)  # Chromium needs one
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept", "subprotocol": chosen})
            await send({"type": "websocket.close", "code": close_codes.RATE_LIMITED})
        elif message["type"] == "websocket.disconnect":
            return


async def authenticate(
    scope: dict[str, Any], conf: Conf, address: str = "-"
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
    selected, otherwise ours. An unoffered one makes Daphne hang, none makes Chromium
    fail the handshake. (A slotted object: it lives as long as the socket.)"""

    __slots__ = ("chosen", "offered", "send", "transport")

    def __init__(self, send: Any, offered: list[str], chosen: str | None) -> None:
        self.send, self.offered, self.chosen = send, offered, chosen
        self.transport: Any = None  # the server's, watched for MAX_QUEUED_BYTES

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] != "websocket.accept":
            transport = self.transport
            if (
                transport is not None
                and (transport._tempDataLen or transport.dataBuffer)  # unsent bytes
                and over_queue(self.send, transport, message)
            ):
                return  # a client that does not read: closed (4008), or about to be
            return await self.send(message)
        asked = message.get("subprotocol")
        if asked not in self.offered and asked != self.chosen:  # (no copy to keep)
            message = {**message, "subprotocol": self.chosen}
        # The server's own limits: frames and fragments in its protocol; the bytes it
        # holds unsent for the client, here before each message.
        self.transport = guard(self.send)
        await self.send(message)
        # Answered: the server's copies of the request need the credential no more.
        forget_credentials(self.send, get_conf().subprotocol_prefix)


class WSAuthMiddleware(BaseMiddleware):
    """Authenticate WebSocket handshakes; other connection types pass through untouched.

    One handshake, straight down: the origin gate and the authenticators
    (``authenticate``), then ``admission.admit``, then the socket's record in the scope,
    then the inner application. Any refusal is one ``WSAuthError``, answered in one
    place (``_answer``): 403, or 4429 for a limit."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            return await super().__call__(scope, receive, send)
        # This frame lives as long as the socket; the handshake's locals live in _open's.
        opened = await self._open(scope, receive, send)
        if opened is None:  # refused, and the refusal has run its course
            return None
        scope, send, place = opened
        del opened
        try:
            return await super().__call__(scope, receive, send)
        finally:
            if place is not None:
                await asyncio.shield(place.release())

    async def _open(
        self, scope: dict[str, Any], receive: Any, send: Any
    ) -> tuple[dict[str, Any], _SelectingSend, admission.SocketPlace | None] | None:
        """The inner application's scope and send, and the socket's place; ``None`` when
        refused (the answer has been sent and the disconnect received)."""
        with contextlib.suppress(Exception):  # a broken layer: the consumer's join says so
            revoke.listen()
        conf = get_conf()
        attempt = admission.Attempt.of(scope, conf)
        place = None
        try:
            async with asyncio.timeout(conf.handshake_timeout):
                identity, handshake = await authenticate(scope, conf, attempt.address)
                attempt.origin = handshake.origin
                checked_at = time.time()  # before the revocation markers are read
                if identity is not None:
                    place = await admission.admit(
                        attempt,
                        identity.user,
                        identity.revocable,
                        identity.issued_at,
                        method=identity.method,
                        expires_at=identity.expires_at,
                    )
                elif wants_first_message_auth(self.inner, attempt.path):
                    await admission.admit_unverified(attempt)
                    identity = Identity(AnonymousUser(), "pending", None, None)
                else:
                    raise Refused("no_credentials", "no token subprotocol and no ticket")
        except WSAuthError as error:
            await self._answer(
                scope, receive, send, await admission.failed(attempt, error), attempt
            )
            return None
        except TimeoutError:
            timeout = Unavailable("timeout", "authentication took too long")
            await self._answer(scope, receive, send, timeout, attempt)
            return None
        except Exception as exc:  # a database or store fault: refuse cleanly, keep serving
            logger.error(
                "wsauth: refused handshake reason=server_error path=%s client=%s: %s: %s",
                attempt.path,
                attempt.address,
                type(exc).__name__,
                exc,
            )
            await _deny(receive, send)
            return None
        return (
            self._scope(scope, conf, handshake, identity, checked_at, attempt),
            _selecting(send, handshake),
            place,
        )

    @staticmethod
    def _scope(
        scope: dict[str, Any],
        conf: Conf,
        handshake: Handshake,
        identity: Identity,
        checked_at: float,
        attempt: admission.Attempt,
    ) -> dict[str, Any]:
        """The inner application's scope: the user and the socket's auth record."""
        if handshake.token_protocol is not None:
            strip_token(scope, conf.subprotocol_prefix, handshake.app_protocols)
        scope = dict(scope)
        scope["subprotocols"] = handshake.app_protocols  # offers as parsed (blanks dropped)
        scope["user"] = identity.user
        scope["wsauth"] = {
            "method": identity.method,
            "claims": identity.claims,
            "expires_at": identity.expires_at,
            "subprotocol": _chosen(handshake),
            "checked_at": checked_at,
            "client": attempt.address,
            "origin": handshake.origin,
            **identity.extra,
        }
        if logger.isEnabledFor(logging.DEBUG):  # the arguments cost a call per handshake
            logger.debug(
                "wsauth: authenticated %s by %s path=%s client=%s",
                identity.user.get_username(),
                identity.method,
                attempt.path,
                attempt.address,
            )
        return scope

    @staticmethod
    async def _answer(
        scope: dict[str, Any], receive: Any, send: Any, error: WSAuthError, attempt: Any
    ) -> None:
        """The one place a refusal is answered: 4429 for a limit (back off, logged once per
        window), else 403 with the reason in the log."""
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


def _chosen(handshake: Handshake) -> str | None:
    """The subprotocol to select: the first application protocol offered, else the token
    (Chromium fails a handshake whose answer selects none of its offers)."""
    return handshake.app_protocols[0] if handshake.app_protocols else handshake.token_protocol


def _selecting(send: Any, handshake: Handshake) -> _SelectingSend:
    # The offers' list is the scope's own (no copy for the socket's life).
    return _SelectingSend(send, handshake.app_protocols, _chosen(handshake))


def WSAuthMiddlewareStack(inner: Any) -> WSAuthMiddleware:
    """The stack to wrap a ``URLRouter`` with. Do not put ``AuthMiddlewareStack`` inside:
    Channels' ``AuthMiddleware`` would overwrite ``scope["user"]`` with the session user."""
    return WSAuthMiddleware(inner)
