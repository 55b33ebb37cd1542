"""wsauth.apps: what ``ready()`` wires: the servers' log filters, the user cache kept in
step with saves and deletes, deactivation closing sockets, the admin action."""

from __future__ import annotations

import logging

import pytest
from channels.routing import URLRouter
from django.contrib import admin
from django.contrib.auth import get_user_model

from chatdemo.routing import websocket_urlpatterns
from wsauth import close_codes, users
from wsauth.admin import disconnect_sockets
from wsauth.edge import SERVER_LOGGERS
from wsauth.logutil import CredentialFilter
from wsauth.middleware import WSAuthMiddlewareStack
from wsauth.testing import TestIssuer

application = WSAuthMiddlewareStack(URLRouter(websocket_urlpatterns))


def test_every_servers_logger_masks_credentials():
    for name in SERVER_LOGGERS:
        assert any(isinstance(f, CredentialFilter) for f in logging.getLogger(name).filters), name


def test_the_user_admin_offers_disconnect_sockets():
    user_admin = admin.site._registry[get_user_model()]
    assert disconnect_sockets in user_admin.actions


@pytest.mark.django_db
def test_saving_or_deleting_a_user_drops_it_from_the_cache():
    user = get_user_model().objects.create(username="cached")
    users._remember(users._by_pk, user.pk, user, 60)
    users._remember(users._by_identity, ("iss", "sub"), user, 60)
    user.first_name = "Changed"
    user.save()
    assert user.pk not in users._by_pk and ("iss", "sub") not in users._by_identity
    users._remember(users._by_pk, user.pk, user, 60)
    pk = user.pk
    user.delete()
    assert pk not in users._by_pk


@pytest.mark.django_db(transaction=True)
async def test_deactivating_a_user_closes_their_sockets_once_committed():
    issuer = TestIssuer()
    with issuer.activate():
        ws = await issuer.connect(application, "/ws/echo/", sub="deact")
        await ws.receive_from()
        user = await get_user_model().objects.aget(oidc_identities__subject="deact")
        user.first_name = "Still active"
        await user.asave()  # an active user saved: nothing happens
        await ws.send_to(text_data="x")
        assert "x" in await ws.receive_from()
        user.is_active = False
        await user.asave()
        output = await ws.receive_output(timeout=3)
        assert (output["type"], output["code"]) == ("websocket.close", close_codes.FORBIDDEN)


@pytest.mark.django_db(transaction=True)
def test_a_failed_disconnect_does_not_undo_the_deactivation(settings, caplog):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
        }
    }
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    try:
        user = get_user_model().objects.create(username="doomed")
        user.is_active = False
        user.save()
    finally:
        channel_layers.backends.clear()
    user.refresh_from_db()
    assert user.is_active is False
    assert "could not disconnect the sockets of deactivated user" in caplog.text
