"""The authenticated base consumer and the echo consumer."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from . import close_codes
from .users import display_name

logger = logging.getLogger("wsauth")


class AuthenticatedWebsocketConsumer(AsyncWebsocketConsumer):
    """Accepts with the subprotocol chosen at the handshake and closes the socket with
    4001 when the credential expires: one timer per socket, nothing per message."""

    _expiry_handle: asyncio.TimerHandle | None = None

    @property
    def wsauth(self) -> dict[str, Any]:
        return self.scope.get("wsauth") or {}

    @property
    def display_name(self) -> str:
        return display_name(self.scope["user"], self.wsauth.get("claims"))

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        user = self.scope.get("user")
        if not self.wsauth or user is None or not user.is_authenticated:
            # Served without WSAuthMiddleware: refuse rather than run unauthenticated.
            logger.error("wsauth: %s is not behind WSAuthMiddleware", type(self).__name__)
            await self.close()
            return
        await super().websocket_connect(message)

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        await super().accept(subprotocol or self.wsauth.get("subprotocol"), headers)
        self._schedule_expiry()

    def _schedule_expiry(self) -> None:
        expires_at = self.wsauth.get("expires_at")
        if expires_at is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, float(expires_at) - time.time())
        self._expiry_handle = loop.call_later(delay, lambda: loop.create_task(self._expire()))

    async def _expire(self) -> None:
        logger.info("wsauth: credential expired, closing socket of %s", self.display_name)
        await self.close(code=close_codes.CREDENTIAL_EXPIRED)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        if self._expiry_handle is not None:
            self._expiry_handle.cancel()
            self._expiry_handle = None
        await super().websocket_disconnect(message)


class EchoConsumer(AuthenticatedWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data=f"Hello {self.display_name}")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None:
            await self.send(text_data=f'I\'m not very smart, all I can do is repeat: "{text_data}"')
