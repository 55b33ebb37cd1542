"""The demo chat: JSON messages fanned out to a room through the channel layer."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from autobahn.exception import Disconnected

from wsauth.consumers import AuthenticatedWebsocketConsumer

logger = logging.getLogger("chatdemo")

MAX_MESSAGE_LENGTH = 2000


class ChatConsumer(AuthenticatedWebsocketConsumer):
    async def connect(self) -> None:
        self.room = self.scope["url_route"]["kwargs"]["room"]
        self.group = f"chat.{self.room}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            payload = json.loads(text_data or "")
            message = payload["message"]
            if not isinstance(message, str) or not message.strip():
                raise ValueError
        except (ValueError, KeyError, TypeError, RecursionError):
            await self.send_json(
                {
                    "type": "error",
                    "error": "bad_message",
                    "detail": 'send JSON {"message": "<text>"}',
                }
            )
            return
        await self.channel_layer.group_send(
            self.group,
            {
                "type": "chat.message",
                "user": self.display_name,
                "message": message[:MAX_MESSAGE_LENGTH],
                "sent_at": time.time(),
            },
        )

    async def chat_message(self, event: dict[str, Any]) -> None:
        try:
            await self.send_json(
                {
                    "type": "message",
                    "user": event["user"],
                    "message": event["message"],
                    "room": self.room,
                    "sent_at": event["sent_at"],
                }
            )
        except Disconnected:
            # The client left between the group send and this delivery.
            logger.debug("chat message for a closed socket dropped")

    async def send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content))
