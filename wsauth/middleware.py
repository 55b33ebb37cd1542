"""The handshake: origin gate, credentials, verification, identity, scope.

A refusal at any step ends the handshake there: the inner application never runs and
Daphne answers ``403`` (a close before accept). The reason goes to the ``wsauth`` logger,
one line, with the credential masked.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.utils.module_loading import import_string

from .authenticators import BaseAuthenticator, Handshake, Identity, Refused
from .conf import Conf, get_conf, on_reset
from .logutil import mask
from .origins import gate
from .routing import wants_first_message_auth

logger = logging.getLogger("wsauth")

#: Daphne gives an application 5 s to answer a handshake; stay inside it.
HANDSHAKE_TIMEOUT = 4.0

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


def _client(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


async def authenticate(scope: dict[str, Any], conf: Conf) -> tuple[Identity | None, Handshake]:
    """Run the origin gate and the authenticators, or raise ``Refused``. The identity is
    ``None`` when the handshake carries no credentials at all."""
    handshake = Handshake.parse(scope, conf)
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


class WSAuthMiddleware:
    """Authenticate WebSocket handshakes; other connection types pass through untouched."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            return await self.inner(scope, receive, send)
        conf = get_conf()
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                identity, handshake = await authenticate(scope, conf)
        except Refused as refused:
            self._log_refusal(scope, refused)
            return await _deny(receive, send)
        except TimeoutError:
            self._log_refusal(scope, Refused("timeout", "authentication took too long"))
            return await _deny(receive, send)
        if identity is None:
            if not wants_first_message_auth(self.inner, scope.get("path", "")):
                self._log_refusal(
                    scope, Refused("no_credentials", "no token subprotocol and no ticket")
                )
                return await _deny(receive, send)
            # A route that opted in: the consumer authenticates the first frame.
            identity = Identity(
                user=AnonymousUser(), method="pending", claims=None, expires_at=None
            )

        if handshake.app_protocols:
            chosen: str | None = handshake.app_protocols[0]
        else:
            chosen = handshake.token_protocol
        scope = dict(scope)
        scope["subprotocols"] = handshake.app_protocols  # the token never reaches the app
        scope["user"] = identity.user
        scope["wsauth"] = {
            "method": identity.method,
            "claims": identity.claims,
            "expires_at": identity.expires_at,
            "subprotocol": chosen,
            **identity.extra,
        }
        logger.debug(
            "wsauth: authenticated %s by %s path=%s client=%s",
            identity.user.get_username(),
            identity.method,
            scope.get("path"),
            _client(scope),
        )
        offered = frozenset(handshake.app_protocols)

        async def send_selecting_subprotocol(message: dict[str, Any]) -> None:
            # Only an offered application protocol may be selected; otherwise ours. An
            # unoffered one makes Daphne hang, none makes Chromium fail the handshake.
            if message["type"] == "websocket.accept" and message.get("subprotocol") not in offered:
                message = {**message, "subprotocol": chosen}
            await send(message)

        return await self.inner(scope, receive, send_selecting_subprotocol)

    @staticmethod
    def _log_refusal(scope: dict[str, Any], refused: Refused) -> None:
        logger.warning(
            "wsauth: refused handshake reason=%s path=%s client=%s credential=%s: %s",
            refused.reason,
            scope.get("path"),
            _client(scope),
            mask(refused.credential),
            refused.detail,
        )


def WSAuthMiddlewareStack(inner: Any) -> WSAuthMiddleware:
    """The stack to wrap a ``URLRouter`` with. Do not put ``AuthMiddlewareStack`` inside:
    Channels' ``AuthMiddleware`` would overwrite ``scope["user"]`` with the session user."""
    return WSAuthMiddleware(inner)
