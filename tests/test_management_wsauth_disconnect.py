"""wsauth.management.commands.wsauth_disconnect: ``manage.py wsauth_disconnect`` closes
the named users' or subjects' open sockets (4403) and refuses their current tokens."""

from __future__ import annotations

from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from chatdemo.routing import websocket_urlpatterns
from wsauth import close_codes
from wsauth.middleware import WSAuthMiddlewareStack
from wsauth.testing import TestIssuer

pytestmark = pytest.mark.django_db(transaction=True)
application = WSAuthMiddlewareStack(URLRouter(websocket_urlpatterns))


@pytest.fixture
def issuer():
    issuer = TestIssuer()
    with issuer.activate():
        yield issuer


async def opened(issuer, sub):
    ws = await issuer.connect(application, "/ws/echo/", sub=sub)
    assert (await ws.receive_from()).startswith("Hello")
    return ws


async def closed_with(ws) -> int:
    output = await ws.receive_output(timeout=3)
    assert output["type"] == "websocket.close", output
    return int(output["code"])


async def run_command(*args: str) -> str:
    out = StringIO()
    await sync_to_async(call_command)("wsauth_disconnect", *args, stdout=out)
    return out.getvalue()


async def test_by_username(issuer):
    ann = await opened(issuer, "ann-sub")
    ben = await opened(issuer, "ben-sub")
    user = await get_user_model().objects.aget(oidc_identities__subject="ann-sub")
    out = await run_command(user.get_username(), "--reason", "test")
    assert f"disconnected user {user.get_username()}" in out
    assert await closed_with(ann) == close_codes.FORBIDDEN
    await ben.send_to(text_data="here")
    assert "here" in await ben.receive_from()
    await ben.disconnect()
    refused = issuer.communicator(application, "/ws/echo/", sub="ann-sub")
    # A token issued in the same second as the revocation is refused too (not after it).
    assert (await refused.connect())[0] is False


async def test_by_subject(issuer):
    ws = await opened(issuer, "cat-sub")
    out = await run_command("--subject", "cat-sub", "--issuer", issuer.issuer)
    assert "disconnected subject cat-sub" in out
    assert await closed_with(ws) == close_codes.FORBIDDEN


async def test_subject_defaults_to_the_configured_issuer(issuer):
    ws = await opened(issuer, "dan-sub")
    await run_command("--subject", "dan-sub")
    assert await closed_with(ws) == close_codes.FORBIDDEN


async def test_nothing_named_is_an_error():
    with pytest.raises(CommandError, match="at least one USERNAME"):
        await run_command()


async def test_an_unknown_user_is_an_error_and_nobody_is_disconnected(issuer):
    ws = await opened(issuer, "eve-sub")
    user = await get_user_model().objects.aget(oidc_identities__subject="eve-sub")
    with pytest.raises(CommandError, match="no user 'nobody'"):
        await run_command(user.get_username(), "nobody")
    await ws.send_to(text_data="still here")  # the command checked every name first
    assert "still here" in await ws.receive_from()
    await ws.disconnect()
