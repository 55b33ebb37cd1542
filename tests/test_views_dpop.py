"""wsauth.views beyond tests/test_views.py: the ticket endpoint with ``Authorization:
DPoP`` and a proof (RFC 9449), its server nonce, DPoP-bound tokens sent as Bearer, and
the endpoints' answers when the shared store is down; against a live HTTP issuer."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
from django.test import AsyncClient

from tests.issuer import new_key, public_jwk
from wsauth import conf as wsauth_conf
from wsauth import dpop, tickets

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/wsauth/ticket/"
HTU = "http://testserver/wsauth/ticket/"


class Client:
    """A DPoP key holder, from RFC 9449 section 4.2."""

    def __init__(self) -> None:
        self.key = new_key("EC")
        self.jwk = public_jwk(self.key, None)
        self.jkt = dpop.thumbprint(self.jwk)

    def proof(self, token: str, **claims) -> str:
        body = {
            "jti": uuid.uuid4().hex,
            "htm": "POST",
            "htu": HTU,
            "iat": int(time.time()),
            "ath": dpop.access_token_hash(token),
            **claims,
        }
        return jwt.encode(body, self.key, "ES256", headers={"typ": "dpop+jwt", "jwk": self.jwk})


async def post(headers) -> any:
    return await AsyncClient().post(URL, headers=headers)


async def test_a_dpop_bound_token_with_its_proof_gets_a_ticket_carrying_the_thumbprint(
    issuer, wsauth_settings
):
    client = Client()
    token = issuer.token(cnf={"jkt": client.jkt})
    response = await post({"Authorization": f"DPoP {token}", "DPoP": client.proof(token)})
    assert response.status_code == 200, response.content
    assert "DPoP-Nonce" not in response
    record = await tickets.redeem(response.json()["ticket"])
    assert record["dpop_jkt"] == client.jkt and record["via"] == "dpop"


async def test_a_bad_proof_is_401_with_the_dpop_challenge(issuer, wsauth_settings):
    client = Client()
    token = issuer.token(cnf={"jkt": client.jkt})
    for proofs in (None, client.proof(token) + ", " + client.proof(token), Client().proof(token)):
        headers = {"Authorization": f"DPoP {token}", **({"DPoP": proofs} if proofs else {})}
        response = await post(headers)
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith('DPoP error="invalid_dpop_proof"')
        assert response.json()["error"] == "invalid_dpop_proof"


async def test_the_server_nonce(issuer, wsauth_settings):
    wsauth_settings.WSAUTH = {**wsauth_settings.WSAUTH, "DPOP_REQUIRE_NONCE": True}
    wsauth_conf.reset()
    client = Client()
    token = issuer.token(cnf={"jkt": client.jkt})
    first = await post({"Authorization": f"DPoP {token}", "DPoP": client.proof(token)})
    assert first.status_code == 401
    assert first.json()["error"] == "use_dpop_nonce"
    nonce = first["DPoP-Nonce"]
    second = await post(
        {"Authorization": f"DPoP {token}", "DPoP": client.proof(token, nonce=nonce)}
    )
    assert second.status_code == 200, second.content
    assert second["DPoP-Nonce"]  # the next nonce, for the client's next request


async def test_dpop_bound_as_bearer_and_unbound_as_dpop_are_refused(issuer, wsauth_settings):
    client = Client()
    bound = issuer.token(cnf={"jkt": client.jkt})
    response = await post({"Authorization": f"Bearer {bound}"})
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    plain = issuer.token()
    response = await post({"Authorization": f"DPoP {plain}", "DPoP": client.proof(plain)})
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith('DPoP error="invalid_token"')


def down(settings, role: str) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "down": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        },
    }
    settings.WSAUTH = {**settings.WSAUTH, role: "down"}
    wsauth_conf.reset()


async def test_the_ticket_store_down_is_503(issuer, wsauth_settings):
    down(wsauth_settings, "TICKET_CACHE")
    wsauth_settings.WSAUTH = {**wsauth_settings.WSAUTH, "REVOCATION_CACHE": "default"}
    wsauth_conf.reset()
    response = await post({"Authorization": f"Bearer {issuer.token()}"})
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"


async def test_the_revocation_store_down_is_503_not_401(issuer, wsauth_settings):
    down(wsauth_settings, "REVOCATION_CACHE")
    response = await post({"Authorization": f"Bearer {issuer.token()}"})
    assert response.status_code == 503


async def test_a_revoked_users_token_gets_no_ticket(issuer, wsauth_settings):
    from wsauth import revoke

    token = issuer.token(sub="revoked-sub", iat=int(time.time()) - 5)
    assert (await post({"Authorization": f"Bearer {token}"})).status_code == 200
    await revoke.adisconnect_subject("revoked-sub", issuer.issuer)
    response = await post({"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


async def test_backchannel_logout_answers(issuer, wsauth_settings):
    client = AsyncClient()
    assert (await client.post("/wsauth/backchannel-logout/", {})).status_code == 400
    assert (
        await client.post("/wsauth/backchannel-logout/", {"logout_token": "x.y.z"})
    ).status_code == 400
    wsauth_settings.WSAUTH = {**wsauth_settings.WSAUTH, "LOGOUT_AUDIENCE": "wsauth-tests"}
    down(wsauth_settings, "REVOCATION_CACHE")
    logout = jwt.encode(
        {
            "iss": issuer.issuer,
            "aud": "wsauth-tests",
            "iat": int(time.time()),
            "jti": uuid.uuid4().hex,
            "sid": "s",
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        },
        issuer.keys[issuer.default_kid][0],
        "RS256",
        headers={"kid": issuer.default_kid, "typ": "logout+jwt"},
    )
    response = await client.post("/wsauth/backchannel-logout/", {"logout_token": logout})
    assert response.status_code == 503
