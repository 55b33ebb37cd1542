"""POST /wsauth/ticket/: session (CSRF enforced) or bearer token, JSON errors."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import AsyncClient, Client

from wsauth import tickets

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/wsauth/ticket/"


async def test_bearer_token_gets_a_ticket(issuer, wsauth_settings):
    token = issuer.token(sub="bearer-sub", exp=2_000_000_000)
    response = await AsyncClient().post(URL, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"ticket", "expires_in"}
    assert 0 < body["expires_in"] <= 30
    record = await tickets.redeem(body["ticket"])
    assert record["via"] == "bearer"
    assert record["claims"]["sub"] == "bearer-sub"
    assert record["credential_expires_at"] == 2_000_000_000
    assert response["Cache-Control"].startswith("max-age=0")


async def test_invalid_bearer_token_is_401_json(issuer, wsauth_settings):
    response = await AsyncClient().post(
        URL, headers={"Authorization": "Bearer " + issuer.token(aud="someone-else")}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert response["WWW-Authenticate"].startswith("Bearer")


async def test_other_schemes_are_401(wsauth_settings):
    response = await AsyncClient().post(URL, headers={"Authorization": "Basic YTpi"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_request"


async def test_unauthenticated_is_401_json(wsauth_settings):
    response = await AsyncClient().post(URL)
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


async def test_get_is_405(wsauth_settings):
    response = await AsyncClient().get(URL)
    assert response.status_code == 405
    assert response["Allow"] == "POST"


def _session_client() -> Client:
    user = get_user_model().objects.create_user("carol", first_name="Carol")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def test_session_without_csrf_is_refused(wsauth_settings):
    client = _session_client()
    response = client.post(URL)
    assert response.status_code == 403
    assert response.json()["error"] == "csrf_failed"


def test_session_with_csrf_gets_a_ticket(wsauth_settings):
    client = _session_client()
    client.get("/admin/login/")  # any page that sets the CSRF cookie
    csrf = client.cookies["csrftoken"].value
    response = client.post(URL, headers={"X-CSRFToken": csrf, "Origin": "http://testserver"})
    assert response.status_code == 200, response.content
    from asgiref.sync import async_to_sync

    record = async_to_sync(tickets.redeem)(response.json()["ticket"])
    assert record["via"] == "session"
    assert record["origin"] == "http://testserver"  # bound to the requesting origin
    assert record["claims"] is None


def test_origin_binding_can_be_disabled(wsauth_settings):
    wsauth_settings.WSAUTH = {**wsauth_settings.WSAUTH, "TICKET_BIND_ORIGIN": False}
    client = _session_client()
    client.get("/admin/login/")
    response = client.post(
        URL,
        headers={"X-CSRFToken": client.cookies["csrftoken"].value, "Origin": "http://testserver"},
    )
    from asgiref.sync import async_to_sync

    assert async_to_sync(tickets.redeem)(response.json()["ticket"])["origin"] is None
