"""AuthenticatedJsonWebsocketConsumer has Channels' AsyncJsonWebsocketConsumer semantics
(receive_json, send_json(content, close=False), overridable encode_json/decode_json),
answers the frames Channels lets crash the consumer, and sends nothing after its own
close; the demo's ChatConsumer is built on it. In process, through the real middleware
(wsauth.testing); the closing-socket race against a live Daphne is in
tests/test_chat_live.py."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from django.urls import path

from chatdemo.routing import websocket_urlpatterns
from wsauth.consumers import (
    INVALID_PAYLOAD,
    UNSUPPORTED_DATA,
    AuthenticatedJsonWebsocketConsumer,
    AuthenticatedWebsocketConsumer,
)
from wsauth.middleware import WSAuthMiddlewareStack
from wsauth.testing import TestIssuer

pytestmark = pytest.mark.django_db(transaction=True)

disconnected: list[int] = []


class Doubler(AuthenticatedJsonWebsocketConsumer):
    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if content.get("bye"):
            await self.send_json({"bye": True}, close=True)
        elif "close_with" in content:
            await self.close(code=content["close_with"])
            await self.send_json({"sent": "after close"})  # must not reach the client
        else:
            await self.send_json({"twice": content["n"] * 2})

    async def disconnect(self, code: int) -> None:
        disconnected.append(code)


class Decimals(AuthenticatedJsonWebsocketConsumer):
    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        return json.loads(text_data, parse_float=Decimal)

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        return json.dumps(content, default=lambda d: f"decimal:{d}")

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json({"x": content["x"]})


application = WSAuthMiddlewareStack(
    URLRouter(
        [
            path("t/double/", Doubler.as_asgi()),
            path("t/decimals/", Decimals.as_asgi()),
            *websocket_urlpatterns,
        ]
    )
)


@pytest.fixture
def issuer():
    issuer = TestIssuer()
    disconnected.clear()
    with issuer.activate():
        yield issuer


def test_it_is_channels_json_consumer_behind_wsauth():
    mro = AuthenticatedJsonWebsocketConsumer.__mro__
    assert mro.index(AuthenticatedWebsocketConsumer) < mro.index(AsyncJsonWebsocketConsumer)
    # Channels' own methods, not copies (send_json only guards Channels' own).
    for name in ("receive_json", "encode_json", "decode_json"):
        assert name not in AuthenticatedJsonWebsocketConsumer.__dict__


async def test_receive_json_and_send_json(issuer):
    ws = await issuer.connect(application, "/t/double/")
    await ws.send_json_to({"n": 21})
    assert await ws.receive_json_from() == {"twice": 42}
    await ws.disconnect()
    assert disconnected == [1000]


async def test_control_frames_never_reach_receive_json(issuer):
    ws = await issuer.connect(application, "/t/double/")
    # Doubler would fail on content["n"]: the base class answers it instead.
    await ws.send_json_to({"type": "wsauth.nonsense"})
    error = await ws.receive_json_from()
    assert (error["type"], error["error"]) == ("wsauth.error", "unknown_type")
    await ws.send_json_to({"n": 1})
    assert await ws.receive_json_from() == {"twice": 2}
    await ws.disconnect()


async def test_send_json_with_close_sends_then_closes(issuer):
    ws = await issuer.connect(application, "/t/double/")
    await ws.send_json_to({"bye": 1})
    assert await ws.receive_json_from() == {"bye": True}
    assert (await ws.receive_output())["type"] == "websocket.close"
    await ws.disconnect()
    assert disconnected == [1000]  # disconnect() still runs


async def test_nothing_is_sent_after_the_consumers_own_close(issuer):
    ws = await issuer.connect(application, "/t/double/")
    await ws.send_json_to({"close_with": 4000})
    assert await ws.receive_output() == {"type": "websocket.close", "code": 4000}
    assert await ws.receive_nothing()
    await ws.disconnect(code=4000)
    assert disconnected == [4000]


async def test_encode_json_and_decode_json_can_be_overridden(issuer):
    ws = await issuer.connect(application, "/t/decimals/")
    await ws.send_to(text_data='{"x": 1.10}')
    assert await ws.receive_json_from() == {"x": "decimal:1.10"}
    await ws.disconnect()


@pytest.mark.parametrize(
    "frame",
    ["not json", "", "{", '{"n": 1', "[" * 100_000],  # the last: RecursionError
    ids=["text", "empty", "brace", "truncated", "deep"],
)
async def test_a_text_frame_that_is_not_json_closes_with_4007(issuer, frame):
    ws = await issuer.connect(application, "/t/double/")
    await ws.send_input({"type": "websocket.receive", "text": frame})  # (send_to refuses "")
    assert await ws.receive_output() == {"type": "websocket.close", "code": INVALID_PAYLOAD}
    await ws.disconnect(code=INVALID_PAYLOAD)
    assert disconnected == [INVALID_PAYLOAD]  # the consumer lived on to its disconnect()


async def test_a_binary_frame_closes_with_4003(issuer):
    ws = await issuer.connect(application, "/t/double/")
    await ws.send_to(bytes_data=b'{"n": 1}')
    assert await ws.receive_output() == {"type": "websocket.close", "code": UNSUPPORTED_DATA}
    await ws.disconnect(code=UNSUPPORTED_DATA)
    assert disconnected == [UNSUPPORTED_DATA]


BAD_MESSAGE = {"type": "error", "error": "bad_message", "detail": 'send JSON {"message": "<text>"}'}


async def test_chat_answers_bad_frames_with_an_error_frame_and_stays_open(issuer):
    ws = await issuer.connect(application, "/ws/chat/json/", sub="ann", name="Ann")
    for frame in ("not json", "[1]", '{"message": 5}', '{"message": "  "}', "{}", "null"):
        await ws.send_to(text_data=frame)
        assert await ws.receive_json_from() == BAD_MESSAGE, frame
    await ws.send_json_to({"message": "still here"})
    event = await ws.receive_json_from()
    assert (event["type"], event["user"], event["message"]) == ("message", "Ann", "still here")
    await ws.disconnect()


async def test_chat_leaves_its_groups_on_disconnect(issuer):
    layer = get_channel_layer()
    ws = await issuer.connect(application, "/ws/chat/groups/?presence=1", sub="ann")
    await ws.send_json_to({"message": "hi"})
    assert (await ws.receive_json_from())["message"] == "hi"
    assert len(layer.groups["chat.groups"]) == 1
    assert len(layer.groups["chat.groups.presence"]) == 1
    await ws.disconnect()
    assert not layer.groups.get("chat.groups")
    assert not layer.groups.get("chat.groups.presence")


async def test_chat_presence_is_sent_from_the_consumer(issuer):
    ann = await issuer.connect(application, "/ws/chat/here/?presence=1", sub="ann", name="Ann")
    frames = [await ann.receive_json_from(timeout=5)]
    assert frames[-1]["type"] == "presence"
    ben = await issuer.connect(application, "/ws/chat/here/?presence=1", sub="ben", name="Ben")
    while frames[-1].get("users") != ["Ann", "Ben"]:
        frames.append(await ann.receive_json_from(timeout=5))
    assert all(f["type"] == "presence" for f in frames)
    await ben.disconnect()
    await ann.disconnect()
