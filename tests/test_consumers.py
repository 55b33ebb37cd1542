"""wsauth.consumers: the authenticated base consumer through the real middleware, in
process: control frames, refreshes, first-message authentication, the per-socket frame
limits, the credential's deadlines, and refusing to run without the middleware."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from chatdemo.routing import websocket_urlpatterns
from wsauth import close_codes
from wsauth.consumers import EchoConsumer
from wsauth.middleware import WSAuthMiddlewareStack
from wsauth.testing import TestIssuer

pytestmark = pytest.mark.django_db(transaction=True)
application = WSAuthMiddlewareStack(URLRouter(websocket_urlpatterns))
ECHO = "I'm not very smart, all I can do is repeat: "


@pytest.fixture
def issuer():
    issuer = TestIssuer()
    with issuer.activate():
        yield issuer


async def hello(issuer: TestIssuer, **kwargs: Any) -> WebsocketCommunicator:
    ws = await issuer.connect(application, "/ws/echo/", **kwargs)
    assert (await ws.receive_from()).startswith("Hello")
    return ws


async def closed_with(ws: WebsocketCommunicator, timeout: float = 5) -> int:
    """The close code, skipping any frames sent before it."""
    while True:
        output = await ws.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return int(output["code"])


async def control(ws: WebsocketCommunicator, **frame: Any) -> None:
    await ws.send_to(text_data=json.dumps(frame))


async def test_unknown_and_misplaced_control_frames_get_an_error_and_the_socket_stays(issuer):
    ws = await hello(issuer)
    await control(ws, type="wsauth.nonsense")
    error = await ws.receive_json_from()
    assert (error["type"], error["error"]) == ("wsauth.error", "unknown_type")
    await control(ws, type="wsauth.auth", token=issuer.token())
    assert (await ws.receive_json_from())["error"] == "already_authenticated"
    await ws.send_to(text_data="still open")
    assert await ws.receive_from() == ECHO + '"still open"'
    await ws.disconnect()


@pytest.mark.parametrize(
    "text", ['{"type": "wsauth.refresh"', '{"type": 5}', '{"type": "wsauth-x"}', "[1]"]
)
async def test_frames_that_only_look_like_control_frames_reach_the_application(issuer, text):
    ws = await hello(issuer)
    await ws.send_to(text_data=text)
    assert await ws.receive_from() == f'{ECHO}"{text}"'
    await ws.disconnect()


async def test_a_refresh_extends_the_socket_and_says_so(issuer):
    ws = await hello(issuer, sub="ann", lifetime=120)
    fresh = issuer.token(sub="ann", lifetime=600)
    await control(ws, type="wsauth.refresh", token=fresh)
    answer = await ws.receive_json_from()
    assert answer["type"] == "wsauth.refreshed"
    assert answer["expires_at"] >= int(time.time()) + 500
    await ws.disconnect()


async def test_a_refresh_for_another_subject_is_forbidden(issuer):
    ws = await hello(issuer, sub="ann")
    await control(ws, type="wsauth.refresh", token=issuer.token(sub="mallory"))
    assert await closed_with(ws) == close_codes.FORBIDDEN


@pytest.mark.parametrize("token", ["not-a-token", None, 5])
async def test_a_bad_refresh_token_is_invalid(issuer, token):
    ws = await hello(issuer, sub="ann")
    await control(ws, type="wsauth.refresh", token=token)
    assert await closed_with(ws) == close_codes.CREDENTIAL_INVALID


async def test_refreshes_beyond_the_burst_are_rate_limited():
    issuer = TestIssuer()
    with issuer.activate(REFRESH_BURST=2, REFRESH_INTERVAL=3600):
        ws = await hello(issuer, sub="ann")
        for _ in range(2):
            await control(ws, type="wsauth.refresh", token=issuer.token(sub="ann"))
            assert (await ws.receive_json_from())["type"] == "wsauth.refreshed"
        await control(ws, type="wsauth.refresh", token=issuer.token(sub="ann"))
        assert await closed_with(ws) == close_codes.RATE_LIMITED


async def test_a_frame_over_max_message_size_closes_4009():
    issuer = TestIssuer()
    with issuer.activate(MAX_MESSAGE_SIZE=64):
        ws = await hello(issuer)
        await ws.send_to(text_data="é" * 32)  # 32 characters, 64 bytes: at the limit
        assert (await ws.receive_from()).startswith(ECHO)
        await ws.send_to(text_data="é" * 33)  # 66 bytes in UTF-8, though 33 characters
        assert await closed_with(ws) == close_codes.MESSAGE_TOO_BIG
    with issuer.activate(MAX_MESSAGE_SIZE=64):
        ws = await hello(issuer)
        await ws.send_to(bytes_data=b"\x00" * 65)
        assert await closed_with(ws) == close_codes.MESSAGE_TOO_BIG


async def test_frames_beyond_message_rate_close_4429():
    issuer = TestIssuer()
    with issuer.activate(MESSAGE_RATE="3/hour"):
        ws = await hello(issuer)
        for n in range(3):
            await ws.send_to(text_data=f"m{n}")
            assert (await ws.receive_from()).endswith(f'"m{n}"')
        await ws.send_to(text_data="one too many")
        assert await closed_with(ws) == close_codes.RATE_LIMITED


async def test_a_short_lived_credential_is_warned_about_then_closed_4001(issuer):
    ws = await hello(issuer, lifetime=2)  # less than EXPIRING_LEAD left: warned at once
    warning = await ws.receive_json_from(timeout=3)
    assert warning["type"] == "wsauth.expiring"
    assert await closed_with(ws) == close_codes.CREDENTIAL_EXPIRED


async def test_a_refresh_after_the_warning_moves_the_deadline(issuer):
    ws = await hello(issuer, sub="ann", lifetime=2)
    assert (await ws.receive_json_from(timeout=3))["type"] == "wsauth.expiring"
    await control(ws, type="wsauth.refresh", token=issuer.token(sub="ann", lifetime=600))
    assert (await ws.receive_json_from())["type"] == "wsauth.refreshed"
    await ws.send_to(text_data="after the old exp")
    # Past the first token's exp, the socket still answers.
    assert (await ws.receive_from(timeout=5)).endswith('"after the old exp"')
    await ws.disconnect()


# -- first-message authentication ------------------------------------------------------------


def inband() -> WebsocketCommunicator:
    return WebsocketCommunicator(application, "/ws/echo/inband/", subprotocols=["chat"])


async def test_first_message_auth_then_the_application(issuer):
    ws = inband()
    connected, _ = await ws.connect()
    assert connected
    await control(ws, type="wsauth.auth", token=issuer.token(sub="ann", name="Ann"))
    assert await ws.receive_from() == "Hello Ann"
    await ws.send_to(text_data="hi")
    assert await ws.receive_from() == ECHO + '"hi"'
    await ws.disconnect()


@pytest.mark.parametrize(
    "first",
    [
        "plain text",
        json.dumps({"type": "wsauth.refresh", "token": "x"}),
        json.dumps({"type": "wsauth.auth", "token": "not-a-token"}),
        json.dumps({"type": "wsauth.auth"}),
    ],
)
async def test_anything_but_a_good_auth_frame_first_is_invalid(issuer, first):
    ws = inband()
    assert (await ws.connect())[0]
    await ws.send_to(text_data=first)
    assert await closed_with(ws) == close_codes.CREDENTIAL_INVALID


async def test_no_auth_frame_in_time_closes_4408():
    issuer = TestIssuer()
    with issuer.activate(AUTH_TIMEOUT=0.2):
        ws = inband()
        assert (await ws.connect())[0]
        assert await closed_with(ws) == close_codes.AUTH_TIMEOUT


async def test_first_message_auth_takes_a_socket_place():
    issuer = TestIssuer()
    with issuer.activate(MAX_SOCKETS_PER_USER=1, LIMITS_SYNC_INTERVAL=0):
        first = await hello(issuer, sub="ann")
        ws = inband()
        assert (await ws.connect())[0]
        await control(ws, type="wsauth.auth", token=issuer.token(sub="ann"))
        assert await closed_with(ws) == close_codes.RATE_LIMITED
        await first.disconnect()


async def test_first_message_auth_of_a_disabled_user_is_forbidden():
    from django.contrib.auth import get_user_model

    issuer = TestIssuer()
    with issuer.activate(USER_CACHE_TTL=0):  # the deactivation is seen at once
        ws = await hello(issuer, sub="gone")
        await ws.disconnect()
        users = get_user_model().objects.filter(oidc_identities__subject="gone")
        assert await users.aupdate(is_active=False) == 1
        ws = inband()
        assert (await ws.connect())[0]
        await control(ws, type="wsauth.auth", token=issuer.token(sub="gone"))
        assert await closed_with(ws) == close_codes.FORBIDDEN


# -- without the middleware ------------------------------------------------------------------


async def test_served_without_the_middleware_it_refuses_to_run(caplog):
    ws = WebsocketCommunicator(EchoConsumer.as_asgi(), "/ws/echo/")
    connected, _ = await ws.connect()
    assert not connected
    assert "got an unauthenticated handshake" in caplog.text


async def test_a_channel_layer_that_is_down_refuses_the_socket(issuer, caplog):
    layers = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
        }
    }
    with override_settings(CHANNEL_LAYERS=layers):
        from channels.layers import channel_layers

        channel_layers.backends.clear()
        try:
            ws = issuer.communicator(application, "/ws/echo/")
            connected, _ = await ws.connect(timeout=10)
            assert not connected
        finally:
            channel_layers.backends.clear()
    assert "channel layer unavailable" in caplog.text
