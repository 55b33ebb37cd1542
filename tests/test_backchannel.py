"""wsauth.backchannel: logout tokens (OpenID Connect Back-Channel Logout 1.0, section 2.6)
checked rule by rule against a live HTTP issuer, and ``logout`` closing the sockets it
names through the real middleware, then spending the token."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from chatdemo.routing import websocket_urlpatterns
from wsauth import backchannel
from wsauth import conf as wsauth_conf
from wsauth.middleware import WSAuthMiddlewareStack
from wsauth.tokens import TokenError, validate_access_token

pytestmark = pytest.mark.django_db(transaction=True)
CLIENT_ID = "wsauth-logout-client"
application = WSAuthMiddlewareStack(URLRouter(websocket_urlpatterns))


@pytest.fixture
def logout_conf(wsauth_settings):
    wsauth_settings.WSAUTH = {**wsauth_settings.WSAUTH, "LOGOUT_AUDIENCE": CLIENT_ID}
    wsauth_conf.reset()
    return wsauth_settings


def logout_token(issuer: Any, typ: Any = "logout+jwt", **overrides: Any) -> str:
    claims = {
        "iss": issuer.issuer,
        "aud": CLIENT_ID,
        "iat": int(time.time()),
        "exp": int(time.time()) + 120,
        "jti": uuid.uuid4().hex,
        "sub": "sub-1",
        "sid": "sid-1",
        "events": {backchannel.EVENT: {}},
        **overrides,
    }
    claims = {k: v for k, v in claims.items() if v is not None}
    kid = issuer.default_kid
    headers = {"kid": kid, **({"typ": typ} if typ is not None else {})}
    return jwt.encode(claims, issuer.keys[kid][0], "RS256", headers=headers)


async def refused(token: str, reason: str) -> None:
    with pytest.raises(TokenError) as info:
        await backchannel.validate_logout_token(token)
    assert info.value.reason == reason, info.value.detail


@pytest.mark.parametrize("typ", ["logout+jwt", "JWT", None, "application/logout+jwt"])
async def test_a_valid_logout_token(issuer, logout_conf, typ):
    claims = await backchannel.validate_logout_token(logout_token(issuer, typ=typ))
    assert claims["sid"] == "sid-1"


@pytest.mark.parametrize("typ", ["at+jwt", "dpop+jwt", 1])
async def test_an_access_tokens_typ_is_refused(issuer, logout_conf, typ):
    await refused(logout_token(issuer, typ=typ), "bad_type")


async def test_an_access_token_is_not_a_logout_token(issuer, logout_conf):
    await refused(issuer.token(aud=CLIENT_ID, headers={"typ": "JWT"}), "invalid_claims")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "https://other.test"}, "wrong_issuer"),
        ({"aud": "another-client"}, "wrong_audience"),
        ({"aud": [CLIENT_ID, 7]}, "wrong_audience"),
        ({"iat": None}, "missing_claim"),
        ({"iat": "now"}, "missing_claim"),
        ({"iat": int(time.time()) + 600}, "stale"),
        ({"iat": int(time.time()) - 3600}, "stale"),
        ({"exp": int(time.time()) - 60}, "expired"),
        ({"exp": "later"}, "expired"),
        ({"events": None}, "invalid_claims"),
        ({"events": {backchannel.EVENT: "yes"}}, "invalid_claims"),
        ({"events": {"http://other/event": {}}}, "invalid_claims"),
        ({"sid": None, "sub": None}, "missing_claim"),
        ({"sid": "", "sub": ""}, "missing_claim"),
        ({"nonce": "n-1"}, "invalid_claims"),
        ({"jti": None}, "missing_claim"),
        ({"jti": ""}, "missing_claim"),
    ],
)
async def test_each_rule_is_checked(issuer, logout_conf, overrides, reason):
    await refused(logout_token(issuer, **overrides), reason)


async def test_a_logout_token_signed_by_another_key_is_refused(issuer, logout_conf):
    stranger = issuer.add_key(publish=False)
    token = jwt.encode(
        {"iss": issuer.issuer, "aud": CLIENT_ID, "iat": int(time.time()), "jti": "j", "sid": "s"},
        issuer.keys[stranger][0],
        "RS256",
        headers={"kid": issuer.default_kid},
    )
    await refused(token, "bad_signature")


async def test_the_replay_store_down_refuses_cleanly(issuer, logout_conf):
    logout_conf.CACHES = {
        **logout_conf.CACHES,
        "down": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        },
    }
    logout_conf.WSAUTH = {**logout_conf.WSAUTH, "REVOCATION_CACHE": "down"}
    wsauth_conf.reset()
    await refused(logout_token(issuer), "store_unavailable")


async def open_socket(issuer: Any, **claims: Any) -> WebsocketCommunicator:
    token = issuer.token(**claims)
    ws = WebsocketCommunicator(
        application, "/ws/echo/", subprotocols=["chat", "authorization_bearer_" + token]
    )
    connected, code = await ws.connect(timeout=5)
    assert connected, code
    assert (await ws.receive_from()).startswith("Hello")
    return ws


async def closed_with(ws: WebsocketCommunicator) -> int:
    while True:
        output = await ws.receive_output(timeout=3)
        if output["type"] == "websocket.close":
            return int(output["code"])


async def test_logout_by_sid_closes_that_sessions_sockets_and_spends_the_token(issuer, logout_conf):
    in_session = await open_socket(issuer, sub="sub-1", sid="sid-1")
    other_session = await open_socket(issuer, sub="sub-1", sid="sid-2")
    token = logout_token(issuer)
    claims = await backchannel.validate_logout_token(token)
    await backchannel.logout(claims)
    assert await closed_with(in_session) == 4403
    await other_session.send_to(text_data="still here")
    assert "still here" in await other_session.receive_from()
    await other_session.disconnect()
    await refused(token, "replayed")
    # The logged-out session's access tokens are refused from now on; others are not.
    refused_ws = WebsocketCommunicator(
        application,
        "/ws/echo/",
        subprotocols=["chat", "authorization_bearer_" + issuer.token(sub="sub-1", sid="sid-1")],
    )
    assert (await refused_ws.connect(timeout=5))[0] is False
    assert (await validate_access_token(issuer.token(sub="sub-1", sid="sid-2"))).subject == "sub-1"


async def test_logout_without_sid_closes_every_socket_of_the_subject(issuer, logout_conf):
    first = await open_socket(issuer, sub="sub-9", sid="a")
    second = await open_socket(issuer, sub="sub-9", sid="b")
    bystander = await open_socket(issuer, sub="sub-10", sid="a")
    claims = await backchannel.validate_logout_token(logout_token(issuer, sid=None, sub="sub-9"))
    await backchannel.logout(claims)
    assert await closed_with(first) == 4403
    assert await closed_with(second) == 4403
    await bystander.send_to(text_data="fine")
    assert "fine" in await bystander.receive_from()
    await bystander.disconnect()
