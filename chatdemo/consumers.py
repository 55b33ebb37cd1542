"""The demo chat: JSON messages fanned out to a room through the channel layer."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from asgiref.sync import sync_to_async
from autobahn.exception import Disconnected
from django.contrib.auth import get_user_model

from wsauth import admission
from wsauth.admission.places import all_sockets_sync
from wsauth.consumers import AuthenticatedWebsocketConsumer
from wsauth.users import display_name

logger = logging.getLogger("chatdemo")

MAX_MESSAGE_LENGTH = 2000
#: A leaving socket says so this long after it left: its place in wsauth's registry
#: (and those of sockets leaving with it) is given back by then.
LEAVE_SETTLE = 0.3
#: A subscriber reads the registry once per this many seconds of changes at most.
PRESENCE_DEBOUNCE = 0.2

_background: set[asyncio.Task[None]] = set()


def _in_background(coroutine: Any) -> None:
    task = asyncio.get_running_loop().create_task(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)


def _names(pks: set[Any]) -> list[str]:
    users = get_user_model()._default_manager.in_bulk(pks)
    return sorted({display_name(user, None) for user in users.values()})


async def presence(path: str) -> list[str]:
    """Who is in the room now, on every process: the users of the sockets in wsauth's
    socket registry whose path is the room's (a killed process's lapse within
    SOCKET_LEASE)."""
    sockets = await asyncio.to_thread(all_sockets_sync)
    pks = {s.get("user") for s in sockets if s.get("path") == path}
    return await sync_to_async(_names)(pks - {None})


class ChatConsumer(AuthenticatedWebsocketConsumer):
    """The room's messages to everyone in it; with ``?presence=1``, also who is here
    (``{"type": "presence", "users": [...]}``) whenever someone joins or leaves. Joins
    and leaves are announced to the room's presence group; only its subscribers read the
    registry, so a room nobody watches costs one group message per join."""

    async def connect(self) -> None:
        self.room = self.scope["url_route"]["kwargs"]["room"]
        self.group = f"chat.{self.room}"
        self.presence_group = f"chat.{self.room}.presence"
        self.presence_due = False
        self.wants_presence = b"presence=1" in (self.scope.get("query_string") or b"")
        await self.channel_layer.group_add(self.group, self.channel_name)
        if self.wants_presence:
            await self.channel_layer.group_add(self.presence_group, self.channel_name)
        await self.accept()
        # The registry is written in batches: this socket's place first, then the news.
        await admission.sync_now()
        await self.channel_layer.group_send(self.presence_group, {"type": "chat.presence"})

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)
            if self.wants_presence:
                await self.channel_layer.group_discard(self.presence_group, self.channel_name)
            _in_background(self._left(self.channel_layer, self.presence_group))

    @staticmethod
    async def _left(layer: Any, group: str) -> None:
        await asyncio.sleep(LEAVE_SETTLE)
        await admission.sync_now()  # the place given back, in the registry
        await layer.group_send(group, {"type": "chat.presence"})

    async def chat_presence(self, event: dict[str, Any]) -> None:
        """Someone joined or left: read the registry (once for a burst of changes)."""
        if not self.presence_due:
            self.presence_due = True
            _in_background(self._send_presence())

    async def _send_presence(self) -> None:
        await asyncio.sleep(PRESENCE_DEBOUNCE)
        self.presence_due = False
        try:
            users = await presence(self.scope["path"])
            await self.send_json({"type": "presence", "users": users})
        except Disconnected:
            logger.debug("presence for a closed socket dropped")
        except Exception as exc:  # presence is a courtesy: the chat goes on without it
            logger.warning("presence of %s not sent: %s", self.scope["path"], exc)

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
