"""Deactivation that sends no signal (``QuerySet.update``, as SCIM and LDAP sync jobs do
it): a refresh asks the database, a handshake waits at most USER_CACHE_TTL, and
``wsauth_disconnect --inactive`` (or ``disconnect_users``) closes the open sockets at once.
(Across real processes: tests/test_revocation_live.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import AsyncClient

from chatdemo.routing import websocket_urlpatterns
from wsauth import revoke
from wsauth.middleware import WSAuthMiddlewareStack
from wsauth.testing import TestIssuer

pytestmark = pytest.mark.django_db(transaction=True)
application = WSAuthMiddlewareStack(URLRouter(websocket_urlpatterns))


async def closed_code(ws: Any, timeout: float = 2) -> int:
    output = await ws.receive_output(timeout=timeout)
    assert output["type"] == "websocket.close", output
    return int(output["code"])


async def deactivate_in_bulk(*subjects: str) -> list[Any]:
    """``update()``: no save(), no signal, as a directory sync does it."""
    model = get_user_model()
    users = model.objects.filter(oidc_identities__subject__in=subjects)
    found = [user async for user in users]
    assert await model.objects.filter(pk__in=[u.pk for u in found]).aupdate(is_active=False)
    return found


async def test_a_refresh_asks_the_database_whether_the_user_is_still_active() -> None:
    issuer = TestIssuer()
    with issuer.activate(USER_CACHE_TTL=3600):
        ws = await issuer.connect(application, "/ws/echo/", sub="bulk-1")
        assert (await ws.receive_from()).startswith("Hello")
        await deactivate_in_bulk("bulk-1")
        await ws.send_json_to({"type": "wsauth.refresh", "token": issuer.token(sub="bulk-1")})
        assert await closed_code(ws) == 4403  # not "wsauth.refreshed"


async def test_a_handshake_is_refused_at_most_user_cache_ttl_after_a_bulk_deactivation() -> None:
    issuer = TestIssuer()
    with issuer.activate(USER_CACHE_TTL=0.5):
        ws = await issuer.connect(application, "/ws/echo/", sub="bulk-2")
        await ws.receive_from()
        await ws.disconnect()
        await deactivate_in_bulk("bulk-2")
        await asyncio.sleep(0.6)
        late = issuer.communicator(application, "/ws/echo/", sub="bulk-2")
        connected, _ = await late.connect(timeout=5)
        assert not connected


async def test_a_session_of_a_bulk_deactivated_user_gets_no_ticket() -> None:
    model = get_user_model()
    user = await sync_to_async(model.objects.create_user)("sally")
    client = AsyncClient()
    await client.aforce_login(user, backend="chatdemo.auth.DemoOIDCBackend")
    assert (await client.post("/wsauth/ticket/")).status_code == 200
    await model.objects.filter(pk=user.pk).aupdate(is_active=False)
    assert (await client.post("/wsauth/ticket/")).status_code == 401


def test_the_backend_does_not_log_in_a_bulk_deactivated_user() -> None:
    """mozilla-django-oidc's ``get_user`` returns inactive users, so a sync view took a
    deactivated user's session as logged in (the async ``aget_user`` is Django's and checks);
    wsauth's backend refuses them as Django's ``ModelBackend`` does."""
    from wsauth.backends import OIDCBackend

    model = get_user_model()
    user = model.objects.create_user("sid")
    assert OIDCBackend().get_user(user.pk) == user
    model.objects.filter(pk=user.pk).update(is_active=False)
    assert OIDCBackend().get_user(user.pk) is None


async def test_disconnect_inactive_closes_the_open_sockets_at_once() -> None:
    issuer = TestIssuer()
    with issuer.activate(USER_CACHE_TTL=3600):
        gone = [await issuer.connect(application, "/ws/echo/", sub=f"bulk-3{i}") for i in "ab"]
        kept = await issuer.connect(application, "/ws/echo/", sub="bulk-3c")
        for ws in (*gone, kept):
            await ws.receive_from()
        await deactivate_in_bulk("bulk-3a", "bulk-3b")
        out = await sync_to_async(_command)("wsauth_disconnect", "--inactive")
        assert "2 inactive users" in out
        for ws in gone:
            assert await closed_code(ws) == 4403
        await kept.send_to(text_data="still here")
        assert "still here" in await kept.receive_from()
        # Every process refuses them at once, whatever its user cache holds.
        late = issuer.communicator(application, "/ws/echo/", sub="bulk-3a")
        connected, _ = await late.connect(timeout=5)
        assert not connected
        await kept.disconnect()


async def test_disconnect_users_revokes_many_in_one_broadcast(monkeypatch) -> None:
    issuer = TestIssuer()
    sent: list[dict[str, Any]] = []
    with issuer.activate():
        sockets = [
            await issuer.connect(application, "/ws/echo/", sub=f"many-{i}") for i in range(5)
        ]
        for ws in sockets:
            await ws.receive_from()
        layer = get_channel_layer()
        real = layer.group_send

        async def group_send(group: str, message: dict[str, Any]) -> None:
            sent.append(message)
            await real(group, message)

        monkeypatch.setattr(layer, "group_send", group_send)
        users = await deactivate_in_bulk(*(f"many-{i}" for i in range(5)))
        queryset = get_user_model().objects.filter(pk__in=[u.pk for u in users])
        assert await revoke.adisconnect_users(queryset, reason="directory sync") == 5
        for ws in sockets:
            assert await closed_code(ws) == 4403
    assert len(sent) == 1 and len(sent[0]["groups"]) == 5


def _command(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_disconnect_needs_users_subjects_or_inactive() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--inactive"):
        _command("wsauth_disconnect")
