"""Baseline consumers: the same echo protocol as ``wsauth.consumers.EchoConsumer``
(greeting, then one answer per text frame), without wsauth."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer


class PlainEchoConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        name = user.get_username() if user is not None and user.is_authenticated else "anonymous"
        await self.accept()
        await self.send(text_data=f"Hello {name}")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=f'I\'m not very smart, all I can do is repeat: "{text_data}"')


class SessionEchoConsumer(PlainEchoConsumer):
    """Refuses a handshake without a logged-in session user, as an auth layer must."""

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()
            return
        await super().websocket_connect(message)
