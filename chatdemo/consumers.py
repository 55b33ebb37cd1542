"""The demo chat: JSON messages fanned out to a room through the channel layer."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from wsauth import admission
from wsauth.admission.places import all_sockets_sync
from wsauth.consumers import AuthenticatedJsonWebsocketConsumer
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


class ChatConsumer(AuthenticatedJsonWebsocketConsumer):
    """The room's messages to everyone in it; with ``?presence=1``, also who is here
    (``{"type": "presence", "users": [...]}``) whenever someone joins or leaves. Joins
    and leaves are announced to the room's presence group; only its subscribers read the
    registry, so a room nobody watches costs one group message per join.

    Every frame is sent from a handler, in order with ``websocket.disconnect``, and the
    groups are Channels' ``groups``, left on disconnect."""

    async def connect(self) -> None:
        self.room = self.scope["url_route"]["kwargs"]["room"]
        self.group = f"chat.{self.room}"
        self.presence_group = f"chat.{self.room}.presence"
        self.presence_due = False
        wants_presence = b"presence=1" in (self.scope.get("query_string") or b"")
        self.groups = [self.group, self.presence_group] if wants_presence else [self.group]
        for group in self.groups:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        # The registry is written in batches: this socket's place first, then the news.
        await admission.sync_now()
        await self.channel_layer.group_send(self.presence_group, {"type": "chat.presence"})

    async def disconnect(self, code: int) -> None:
        if self.groups:  # (a first-message socket that never authenticated joined none)
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
            _in_background(self._read_presence())

    async def _read_presence(self) -> None:
        await asyncio.sleep(PRESENCE_DEBOUNCE)
        self.presence_due = False
        try:
            users = await presence(self.scope["path"])
            # Back through the consumer's own channel: a send from this task could
            # reach a socket that is closing (the server raises, the consumer dies).
            await self.channel_layer.send(
                self.channel_name, {"type": "chat.presence.list", "users": users}
            )
        except Exception as exc:  # presence is a courtesy: the chat goes on without it
            logger.warning("presence of %s not sent: %s", self.scope["path"], exc)

    async def chat_presence_list(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "presence", "users": event["users"]})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        message = content.get("message") if isinstance(content, dict) else None
        if not isinstance(message, str) or not message.strip():
            await self.bad_message()
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

    async def receive_invalid_json(self, text_data: str) -> None:
        await self.bad_message()  # the socket stays open

    async def bad_message(self) -> None:
        await self.send_json(
            {"type": "error", "error": "bad_message", "detail": 'send JSON {"message": "<text>"}'}
        )

    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send_json(
            {
                "type": "message",
                "user": event["user"],
                "message": event["message"],
                "room": self.room,
                "sent_at": event["sent_at"],
            }
        )
