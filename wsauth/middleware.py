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

from django.contrib.auth.models import AnonymousUser
from django.utils.module_loading import import_string

from . import close_codes, limits, revoke
from .authenticators import BaseAuthenticator, Handshake, Identity, Refused
from .conf import Conf, get_conf, on_reset
from .logutil import mask
from .origins import gate
from .revoke import Revoked
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
    ``None`` when the handshake carries no credentials at all."""
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

    __slots__ = ("chosen", "offered", "send")

    def __init__(self, send: Any, offered: list[str], chosen: str | None) -> None:
        self.send, self.offered, self.chosen = send, offered, chosen

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] != "websocket.accept":
            return await self.send(message)
        asked = message.get("subprotocol")
        if asked not in self.offered and asked != self.chosen:  # (no copy to keep)
            message = {**message, "subprotocol": self.chosen}
        await self.send(message)
        # Answered: the server's copies of the request need the credential no more.
        forget_credentials(self.send, get_conf().subprotocol_prefix)


class WSAuthMiddleware:
    """Authenticate WebSocket handshakes; other connection types pass through untouched."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            return await self.inner(scope, receive, send)
        # This frame lives as long as the socket: the handshake's many locals live in
        # _admit's frame, which is gone once the socket is open (about 170 B per socket).
        admitted = await self._admit(scope, receive, send)
        if admitted is None:  # refused, and the refusal has run its course
            return None
        scope, send, slot = admitted
        del admitted  # the tuple too would live as long as the socket
        if slot is None:
            return await self.inner(scope, receive, send)
        try:
            return await self.inner(scope, receive, send)
        finally:
            await asyncio.shield(slot.release())

    async def _admit(
        self, scope: dict[str, Any], receive: Any, send: Any
    ) -> tuple[dict[str, Any], _SelectingSend, limits.SocketSlot | None] | None:
        """Authenticate and admit the handshake: the inner application's scope and send,
        and the user's socket place to give back at the end; ``None`` when refused (the
        refusal, 403 or 4429, has been sent and the disconnect received)."""
        with contextlib.suppress(Exception):  # a broken layer: the consumer's join says so
            revoke.listen()
        checked_at = time.time()  # before the revocation markers are read
        conf = get_conf()
        address = limits.client_address(scope, conf)
        slot = None
        try:
            async with asyncio.timeout(conf.handshake_timeout):
                identity, handshake = await authenticate(scope, conf, address)
                if identity is None:
                    await limits.check_handshake(address, conf)
                else:
                    try:  # address limits, revocation, the user's socket places: one trip
                        if identity.admission is not None:  # made with the ticket's redemption
                            slot = await limits.conclude(
                                identity.admission,
                                identity.user,
                                identity.claims,
                                identity.issued_at,
                                address,
                            )
                        else:  # the markers are read now, after the token's checks
                            checked_at = time.time()
                            slot = await limits.admit(
                                identity.user, identity.claims, identity.issued_at, address, conf
                            )
                    except Revoked as exc:
                        raise Refused(exc.reason, exc.detail, credential=handshake.token) from exc
        except limits.Limited as limited:
            if limited.first:  # once per window, not once per attempt
                self._log_refusal(scope, Refused(limited.reason, limited.detail), address)
            if limited.reason == "too_many_failures":
                await limits.count_failure(address, conf)
            await _limit(receive, send, scope, conf)
            return None
        except Refused as exc:
            await self._refuse(scope, receive, send, exc, address, conf)
            return None
        except TimeoutError:
            timeout = Refused("timeout", "authentication took too long")
            await self._refuse(scope, receive, send, timeout, address, conf)
            return None
        except Exception as exc:  # a database or store fault: refuse cleanly, keep serving
            logger.error(
                "wsauth: refused handshake reason=server_error path=%s client=%s: %s: %s",
                scope.get("path"),
                address,
                type(exc).__name__,
                exc,
            )
            await _deny(receive, send)
            return None
        if identity is None:
            if not wants_first_message_auth(self.inner, scope.get("path", "")):
                missing = Refused("no_credentials", "no token subprotocol and no ticket")
                await self._refuse(scope, receive, send, missing, address, conf)
                return None
            # A route that opted in: the consumer authenticates the first frame.
            identity = Identity(
                user=AnonymousUser(), method="pending", claims=None, expires_at=None
            )

        if handshake.app_protocols:
            chosen: str | None = handshake.app_protocols[0]
        else:
            chosen = handshake.token_protocol
        if handshake.token_protocol is not None:
            strip_token(scope, conf.subprotocol_prefix, handshake.app_protocols)
        scope = dict(scope)
        scope["subprotocols"] = handshake.app_protocols  # offers as parsed (blanks dropped)
        scope["user"] = identity.user
        scope["wsauth"] = {
            "method": identity.method,
            "claims": identity.claims,
            "expires_at": identity.expires_at,
            "subprotocol": chosen,
            "checked_at": checked_at,
            **identity.extra,
        }
        if logger.isEnabledFor(logging.DEBUG):  # the arguments cost a call per handshake
            logger.debug(
                "wsauth: authenticated %s by %s path=%s client=%s",
                identity.user.get_username(),
                identity.method,
                scope.get("path"),
                address,
            )
        # The offers' list is the scope's own (no copy for the socket's life).
        return scope, _SelectingSend(send, handshake.app_protocols, chosen), slot

    async def _refuse(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        refused: Refused,
        address: str,
        conf: Conf,
    ) -> None:
        """Count the failure; a client already over a limit gets 4429 (back off), the
        others 403 with the reason in the log."""
        limited = await limits.count_failure(address, conf, refused.counted)
        if limited is not None:
            if limited.first:
                self._log_refusal(scope, Refused(limited.reason, limited.detail), address)
            return await _limit(receive, send, scope, conf)
        self._log_refusal(scope, refused, address)
        return await _deny(receive, send)

    @staticmethod
    def _log_refusal(scope: dict[str, Any], refused: Refused, address: str) -> None:
        logger.warning(
            "wsauth: refused handshake reason=%s path=%s client=%s credential=%s: %s",
            refused.reason,
            scope.get("path"),
            address,
            mask(refused.credential),
            refused.detail,
        )


def WSAuthMiddlewareStack(inner: Any) -> WSAuthMiddleware:
    """The stack to wrap a ``URLRouter`` with. Do not put ``AuthMiddlewareStack`` inside:
    Channels' ``AuthMiddleware`` would overwrite ``scope["user"]`` with the session user."""
    return WSAuthMiddleware(inner)
