"""wsauth.dpop: RFC 9449 proofs, each rule refused on its own, with real keys and the
replay cache in the configured store (local memory, or Redis for the shared case)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import jwt
import pytest
import redis

from tests.issuer import new_key, public_jwk
from wsauth import conf as wsauth_conf
from wsauth import dpop

HTU = "https://chat.example.test/wsauth/ticket/"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Holder:
    """A DPoP key holder, written from RFC 9449 section 4.2."""

    def __init__(self, kind: str = "EC") -> None:
        self.key = new_key(kind)
        self.alg = {"EC": "ES256", "RSA": "PS256", "OKP": "EdDSA"}[kind]
        self.jwk = public_jwk(self.key, None)
        self.jkt = dpop.thumbprint(self.jwk)
        self.token = "access-token-" + uuid.uuid4().hex

    def proof(self, headers: dict[str, Any] | None = None, **claims: Any) -> str:
        body = {
            "jti": uuid.uuid4().hex,
            "htm": "POST",
            "htu": HTU,
            "iat": int(time.time()),
            "ath": dpop.access_token_hash(self.token),
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        header = {"typ": "dpop+jwt", "jwk": self.jwk, **(headers or {})}
        header = {k: v for k, v in header.items() if v is not None}
        return jwt.encode(body, self.key, self.alg, headers=header)

    async def present(self, proof: str, **overrides: Any) -> str:
        request = {"method": "POST", "url": HTU, "access_token": self.token, "jkt": self.jkt}
        return await dpop.verify_proof(
            proof, conf=wsauth_conf.get_conf(), **{**request, **overrides}
        )


@pytest.fixture(autouse=True)
def fresh_conf(settings):
    wsauth_conf.reset()
    yield settings
    wsauth_conf.reset()


async def refused(holder: Holder, proof: str, match: str, error: str = "invalid_dpop_proof", **kw):
    with pytest.raises(dpop.ProofError, match=match) as info:
        await holder.present(proof, **kw)
    assert info.value.error == error
    return info.value


def test_thumbprint_is_rfc_7638s_example():
    """RFC 7638 section 3.1: the example RSA key and its thumbprint."""
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1"
        "L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-6"
        "5YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdk"
        "t-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert dpop.thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize(
    "jwk",
    [{"kty": "oct", "k": "c2VjcmV0"}, {"kty": "EC", "crv": "P-256", "x": "a"}, {}, {"kty": 1}],
)
def test_thumbprint_refuses_what_is_not_a_public_key(jwk):
    with pytest.raises(dpop.ProofError, match="supported public key"):
        dpop.thumbprint(jwk)


def test_access_token_hash_is_sha256_base64url():
    # RFC 9449 section 4.2: ath = base64url(SHA-256(ASCII(access token))).
    import hashlib

    assert dpop.access_token_hash("abc") == b64(hashlib.sha256(b"abc").digest())


@pytest.mark.parametrize("kind", ["EC", "RSA", "OKP"])
async def test_a_good_proof_returns_the_keys_thumbprint(kind):
    holder = Holder(kind)
    assert await holder.present(holder.proof()) == holder.jkt


async def test_malformed_proof():
    holder = Holder()
    await refused(holder, "not.a.proof!", "malformed proof")


@pytest.mark.parametrize("typ", [None, "jwt", "at+jwt", "DPOP+JWT"])
async def test_typ_must_be_dpop_jwt(typ):
    holder = Holder()
    await refused(holder, holder.proof(headers={"typ": typ}), "'typ' must be 'dpop\\+jwt'")


async def test_symmetric_or_none_algorithms_are_refused():
    holder = Holder()
    claims = {"htm": "POST", "htu": HTU, "iat": int(time.time()), "jti": uuid.uuid4().hex}
    header = {"typ": "dpop+jwt", "jwk": holder.jwk}
    hs = jwt.encode(claims, "secret-secret-secret-secret-32b!", "HS256", headers=header)
    await refused(holder, hs, "algorithm 'HS256' is not allowed")
    none = ".".join(
        [b64(json.dumps({**header, "alg": "none"}).encode()), b64(json.dumps(claims).encode()), ""]
    )
    await refused(holder, none, "algorithm 'none' is not allowed")


async def test_a_private_jwk_is_refused():
    holder = Holder()
    private = jwt.algorithms.ECAlgorithm.to_jwk(holder.key, as_dict=True)
    await refused(holder, holder.proof(headers={"jwk": private}), "must be a public key")


async def test_a_missing_jwk_is_refused():
    holder = Holder()
    await refused(holder, holder.proof(headers={"jwk": None}), "must be a public key")


async def test_signature_by_another_key_is_refused():
    holder, other = Holder(), Holder()
    # The header names the holder's key; the proof is signed by another one.
    forged = jwt.encode(
        {"htm": "POST", "htu": HTU, "iat": int(time.time()), "jti": uuid.uuid4().hex},
        other.key,
        "ES256",
        headers={"typ": "dpop+jwt", "jwk": holder.jwk},
    )
    await refused(holder, forged, "does not verify")


async def test_a_jwk_that_does_not_fit_the_algorithm_is_refused():
    holder = Holder()
    rsa_jwk = public_jwk(new_key("RSA"), None)
    await refused(holder, holder.proof(headers={"jwk": rsa_jwk}), "does not verify")


async def test_the_proofs_key_must_be_the_tokens():
    holder = Holder()
    await refused(holder, holder.proof(), "cnf.jkt", jkt=Holder().jkt)


@pytest.mark.parametrize(("claim", "value"), [("htm", "GET"), ("htm", None), ("htu", HTU + "x")])
async def test_method_and_url_must_match(claim, value):
    holder = Holder()
    await refused(holder, holder.proof(**{claim: value}), f"'{claim}' must be")


@pytest.mark.parametrize("iat", ["now", None, True, 1e400])
async def test_iat_must_be_a_number(iat):
    holder = Holder()
    proof = holder.proof(iat=str(int(time.time())) if iat == "now" else iat)  # None: absent
    await refused(holder, proof, "no numeric 'iat'")


@pytest.mark.parametrize("offset", [-200, 200])
async def test_iat_outside_the_window_is_refused(offset):
    holder = Holder()
    await refused(
        holder, holder.proof(iat=int(time.time()) + offset), "outside the accepted window"
    )


async def test_iat_at_the_edge_of_the_window_is_accepted():
    holder = Holder()
    conf = wsauth_conf.get_conf()
    edge = conf.dpop_proof_max_age + conf.leeway - 5
    assert await holder.present(holder.proof(iat=int(time.time()) - edge)) == holder.jkt


async def test_ath_must_hash_the_presented_token():
    holder = Holder()
    await refused(holder, holder.proof(), "'ath'", access_token="another-token")
    await refused(holder, holder.proof(ath=None), "'ath'")


@pytest.mark.parametrize("jti", [None, "short", "x" * 257, 12345678])
async def test_jti_must_be_usable(jti):
    holder = Holder()
    await refused(holder, holder.proof(jti=jti), "usable 'jti'")


async def test_a_replayed_proof_is_refused_and_a_new_jti_accepted():
    holder = Holder()
    proof = holder.proof()
    await holder.present(proof)
    await refused(holder, proof, "replay")
    await holder.present(holder.proof())


async def test_the_same_jti_under_another_key_is_not_a_replay():
    """The replay key is the thumbprint and the jti: one client cannot spend another's."""
    first, second = Holder(), Holder()
    await first.present(first.proof(jti="shared-jti-0001"))
    await second.present(second.proof(jti="shared-jti-0001"))


async def test_nonce_required(settings, monkeypatch):
    settings.WSAUTH = {**settings.WSAUTH, "DPOP_REQUIRE_NONCE": True}
    wsauth_conf.reset()
    conf = wsauth_conf.get_conf()
    # The middle of a nonce window, held still: the test must not straddle two windows.
    now = (time.time() // conf.dpop_proof_max_age + 0.5) * conf.dpop_proof_max_age

    class Frozen:
        @staticmethod
        def time() -> float:
            return now

    monkeypatch.setattr(dpop, "time", Frozen)
    holder = Holder()

    def proof(nonce: Any) -> str:
        return holder.proof(iat=int(now), nonce=nonce)

    for bad in (None, "made-up", 5):
        await refused(holder, proof(bad), "server nonce", error="use_dpop_nonce")
    assert await holder.present(proof(dpop.current_nonce(conf))) == holder.jkt
    # The previous window's nonce is still good; one from two windows back is not.
    window = int(now // conf.dpop_proof_max_age)
    assert await holder.present(proof(dpop._nonce_for(window - 1))) == holder.jkt
    await refused(
        holder, proof(dpop._nonce_for(window - 2)), "server nonce", error="use_dpop_nonce"
    )


def test_nonces_depend_on_the_secret_key(settings):
    conf = wsauth_conf.get_conf()
    before = dpop.current_nonce(conf)
    settings.SECRET_KEY = "another-secret-key-for-this-test-only"
    assert dpop.current_nonce(conf) != before


async def test_replay_cache_down_is_temporarily_unavailable(settings):
    settings.CACHES = {
        **settings.CACHES,
        "down": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        },
    }
    settings.WSAUTH = {**settings.WSAUTH, "REVOCATION_CACHE": "down"}
    wsauth_conf.reset()
    holder = Holder()
    await refused(
        holder, holder.proof(), "cannot check proof replay", error="temporarily_unavailable"
    )


async def test_replay_is_refused_across_processes_through_redis(settings, redis_url):
    """Two stores built from the same settings (as two processes would) share the jti."""
    settings.CACHES = {
        **settings.CACHES,
        "shared": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url},
    }
    settings.WSAUTH = {**settings.WSAUTH, "REVOCATION_CACHE": "shared"}
    wsauth_conf.reset()
    holder = Holder()
    proof = holder.proof()
    await holder.present(proof)
    wsauth_conf.reset()  # drops this process's store objects: a fresh connection
    await refused(holder, proof, "replay")
    client = redis.Redis.from_url(redis_url)
    try:
        (key,) = client.scan_iter(match="*dpop-jti*")
        assert holder.jkt.encode() not in key  # only a digest of thumbprint and jti
    finally:
        client.close()
