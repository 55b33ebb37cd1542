"""wsauth.urls: the names and paths a project includes under ``wsauth/``."""

from __future__ import annotations

from django.urls import resolve, reverse

from wsauth import views


def test_names_and_paths():
    # The demo project includes wsauth.urls at /wsauth/ (INTERFACE: POST /wsauth/ticket/).
    assert reverse("wsauth:ticket") == "/wsauth/ticket/"
    assert reverse("wsauth:backchannel-logout") == "/wsauth/backchannel-logout/"
    assert resolve("/wsauth/ticket/").func is views.ticket
    assert resolve("/wsauth/backchannel-logout/").func is views.backchannel_logout


def test_the_endpoints_refuse_get(client):
    assert client.get("/wsauth/ticket/").status_code == 405
    assert client.get("/wsauth/backchannel-logout/").status_code == 405
