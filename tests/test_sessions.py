"""Revocation reaches session-based clients (a stolen cookie, say): a session buys no
ticket once a revocation covers its login, a back-channel logout ends the Django sessions
it names, and a session ticket's socket joins its OpenID session's revocation group.

Browser logins run mozilla-django-oidc's real views against the live test issuer (its
token, userinfo and JWKS endpoints over HTTP); only the provider's login page is skipped:
the test takes the state and nonce from the authentication redirect, as a browser would
carry them through it."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import AsyncClient
from hypothesis import given
from hypothesis import strategies as st

from chatdemo.routing import websocket_urlpatterns
from tests.issuer import Issuer
from wsauth import conf as wsauth_conf
from wsauth import revoke, store, tickets
from wsauth.middleware import WSAuthMiddlewareStack
from wsauth.models import LoginSession
from wsauth.sessions import Login

pytestmark = pytest.mark.django_db(transaction=True)
application = WSAuthMiddlewareStack(URLRouter(websocket_urlpatterns))
CLIENT_ID = "wsauth-tests-rp"
EVENT = "http://schemas.openid.net/event/backchannel-logout"


@pytest.fixture
def op(wsauth_settings: Any, issuer: Issuer) -> Issuer:
    """The live issuer as the browser login's provider (mozilla-django-oidc settings)."""
    realm = issuer.issuer
    wsauth_settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    wsauth_settings.OIDC_RP_CLIENT_SECRET = "rp-secret"
    wsauth_settings.OIDC_OP_AUTHORIZATION_ENDPOINT = realm + "/auth"
    wsauth_settings.OIDC_OP_TOKEN_ENDPOINT = realm + "/token"
    wsauth_settings.OIDC_OP_USER_ENDPOINT = realm + "/userinfo"
    wsauth_settings.OIDC_OP_JWKS_ENDPOINT = realm + "/jwks"
    wsauth_settings.OIDC_RP_SIGN_ALGO = "RS256"
    wsauth_conf.reset()
    return issuer


async def browser_login(op: Issuer, sub: str, sid: str | None = None) -> AsyncClient:
    """An OpenID login through mozilla-django-oidc: authenticate, then the callback."""
    client = AsyncClient()
    redirect = await client.get("/oidc/authenticate/")
    assert redirect.status_code == 302, redirect
    query = parse_qs(urlsplit(redirect["Location"]).query)
    code = op.authorize(CLIENT_ID, query["nonce"][0], sub=sub, sid=sid, preferred_username=sub)
    done = await client.get("/oidc/callback/", {"code": code, "state": query["state"][0]})
    assert done.status_code == 302 and done["Location"] == "/", done
    return client


async def password_login(user: Any) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


async def ticket(client: AsyncClient) -> tuple[int, dict[str, Any]]:
    response = await client.post("/wsauth/ticket/")
    return response.status_code, response.json()


def logout_token(op: Issuer, **claims: Any) -> str:
    body = {"iss": op.issuer, "aud": CLIENT_ID, "iat": int(time.time()), "jti": uuid.uuid4().hex}
    body |= {"events": {EVENT: {}}, **claims}
    kid = op.default_kid
    return jwt.encode(body, op.keys[kid][0], "RS256", headers={"typ": "logout+jwt", "kid": kid})


async def backchannel(op: Issuer, **claims: Any) -> int:
    response = await AsyncClient().post(
        "/wsauth/backchannel-logout/", {"logout_token": logout_token(op, **claims)}
    )
    return response.status_code


async def make_user(name: str) -> Any:
    return await sync_to_async(get_user_model().objects.create_user)(name)


async def user_of(sub: str) -> Any:
    return await get_user_model().objects.aget(oidc_identities__subject=sub)


# -- revocation by login time -----------------------------------------------------------------


async def test_a_revoked_session_buys_no_new_ticket(wsauth_settings: Any) -> None:
    """disconnect_user (the admin action, a deactivation) used to leave the session able to
    buy a ticket at once: tickets were judged by their own issue time."""
    user = await make_user("stolen")
    before = await password_login(user)
    assert (await ticket(before))[0] == 200
    await revoke.adisconnect_user(user, reason="cookie stolen")
    status, body = await ticket(before)
    assert (status, body["error"]) == (401, "not_authenticated")
    assert "revoked" in body["detail"]
    assert not await (await before.asession()).aget("_auth_user_id")  # the session was ended
    after = await password_login(user)  # a login after the revocation
    assert (await ticket(after))[0] == 200


async def test_the_refusal_outlives_the_stores_marker(wsauth_settings: Any) -> None:
    """Markers live REVOCATION_TTL (a day), sessions weeks: the session's own record says
    it was revoked once the marker has expired."""
    user = await make_user("patient-thief")
    before = await password_login(user)
    await revoke.adisconnect_user(user, reason="cookie stolen")
    markers = store.get("revocation")
    for key in revoke.marker_keys(user.pk, None):
        assert await markers.getdel(markers.make_key(key)) is not None  # as if expired
    assert (await ticket(before))[0] == 401
    assert await LoginSession.objects.filter(user=user).acount() == 0  # ended


async def test_a_session_without_a_login_record_is_refused_by_any_marker(
    wsauth_settings: Any,
) -> None:
    """A session from before wsauth kept login times cannot show it logged in later."""
    user = await make_user("old-session")
    client = await password_login(user)
    session = await client.asession()
    await session.apop("wsauth_login")
    await session.asave()
    await LoginSession.objects.all().adelete()
    assert (await ticket(client))[0] == 200  # no marker: nothing to judge
    await revoke.adisconnect_user(user, reason="test")
    assert (await ticket(client))[0] == 401


async def test_the_ticket_carries_the_login_not_its_own_issue_time(op: Issuer) -> None:
    client = await browser_login(op, "tick-sub", sid="sid-tick")
    logged_in = await (await client.asession()).aget("wsauth_login")
    assert logged_in["sid"] == "sid-tick" and logged_in["sub"] == "tick-sub"
    status, body = await ticket(client)
    assert status == 200, body
    record = await tickets.redeem(body["ticket"])
    assert record["login_at"] == logged_in["at"] < record["issued_at"]
    assert record["session"] == {"iss": op.issuer, "sub": "tick-sub", "sid": "sid-tick"}


# -- back-channel logout ends Django sessions -------------------------------------------------


async def test_backchannel_logout_by_sid_ends_that_django_session(op: Issuer) -> None:
    ended = await browser_login(op, "bcl-sub", sid="sid-1")
    other = await browser_login(op, "bcl-sub", sid="sid-2")  # the same person elsewhere
    for client in (ended, other):
        assert (await ticket(client))[0] == 200
    assert await backchannel(op, sid="sid-1", sub="bcl-sub") == 200
    status, body = await ticket(ended)
    assert (status, body["error"]) == (401, "not_authenticated")
    assert (await ended.post("/demo/token/")).status_code == 401  # logged out of the site too
    assert (await other.post("/demo/token/")).status_code == 200
    assert (await ticket(other))[0] == 200


async def test_backchannel_logout_by_sub_ends_every_session_of_the_user(op: Issuer) -> None:
    oidc = await browser_login(op, "all-sub", sid="sid-a")
    password = await password_login(await user_of("all-sub"))  # the same user, by password
    assert await backchannel(op, sub="all-sub") == 200
    for client in (oidc, password):
        assert (await ticket(client))[0] == 401
    assert await LoginSession.objects.acount() == 0


async def test_signed_cookie_sessions_are_refused_by_the_marker(op: Issuer) -> None:
    """A signed-cookie session cannot be ended on the server; the sid marker still
    refuses its tickets, also to a copy of the cookie kept from before."""
    op_settings = op  # noqa: F841  (the fixture configured the provider)
    from django.conf import settings

    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    try:
        client = await browser_login(op, "cookie-sub", sid="sid-c")
        kept = client.cookies[settings.SESSION_COOKIE_NAME].value
        assert (await ticket(client))[0] == 200
        assert await backchannel(op, sid="sid-c") == 200
        thief = AsyncClient()
        thief.cookies[settings.SESSION_COOKIE_NAME] = kept
        assert (await ticket(thief))[0] == 401
    finally:
        settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"


async def test_a_session_tickets_socket_joins_its_openid_sessions_group(op: Issuer) -> None:
    client = await browser_login(op, "sock-sub", sid="sid-s")
    other = await browser_login(op, "sock-sub", sid="sid-t")
    sockets = []
    for session in (client, other):
        status, body = await ticket(session)
        assert status == 200, body
        ws = WebsocketCommunicator(application, f"/ws/echo/?ticket={body['ticket']}")
        assert (await ws.connect(timeout=5))[0]
        assert (await ws.receive_from()).startswith("Hello")
        sockets.append(ws)
    assert await backchannel(op, sid="sid-s") == 200
    closed = await sockets[0].receive_output(timeout=2)
    assert (closed["type"], closed.get("code")) == ("websocket.close", 4403)
    await sockets[1].send_to(text_data="still here")
    assert "still here" in await sockets[1].receive_from()
    await sockets[1].disconnect()


@given(st.recursive(st.none() | st.booleans() | st.floats() | st.text(), st.lists, max_leaves=8))
def test_any_login_record_reads_as_a_login(value: Any) -> None:
    record = {"at": value, "iss": value, "sub": value, "sid": value}
    for candidate in (value, record):
        login = Login.of(candidate)
        assert login.at is None or isinstance(login.at, float)
        assert login.claims() is None or set(login.claims() or {}) == {"iss", "sub", "sid"}
