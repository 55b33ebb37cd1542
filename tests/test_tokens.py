"""Access-token validation against a live HTTP issuer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tests.issuer import AUDIENCE, new_key, public_jwk
from wsauth import conf as wsauth_conf
from wsauth.tokens import TokenError, shared_claims, validate_access_token

pytestmark = pytest.mark.django_db


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict, claims: dict, signature: bytes = b"") -> str:
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)]
    )


async def refused(token: str, reason: str) -> TokenError:
    with pytest.raises(TokenError) as info:
        await validate_access_token(token)
    assert info.value.reason == reason, info.value.detail
    return info.value


async def test_valid_rs256_token(issuer, wsauth_settings):
    token = issuer.token(sub="alice-sub")
    verified = await validate_access_token(token)
    assert verified.subject == "alice-sub"
    assert verified.issuer == issuer.issuer
    assert verified.claims["aud"] == AUDIENCE


@pytest.mark.parametrize("kind", ["EC", "OKP"])
async def test_valid_ec_and_eddsa_tokens(issuer, wsauth_settings, kind):
    kid = issuer.add_key(kind)
    verified = await validate_access_token(issuer.token(kid=kid))
    assert verified.kid == kid


async def test_garbage(issuer, wsauth_settings):
    for garbage in ["", "x", "a.b", "a.b.c.d", "!!!.###.$$$", "eyJ.eyJ.sig"]:
        with pytest.raises(TokenError):
            await validate_access_token(garbage)


async def test_tampered_signature(issuer, wsauth_settings):
    token = issuer.token()
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "mallory"
    forged = f"{head}.{b64(json.dumps(claims).encode())}.{sig}"
    await refused(forged, "bad_signature")


async def test_expired(issuer, wsauth_settings):
    await refused(issuer.token(exp=int(time.time()) - 60), "expired")


async def test_expiry_leeway(issuer, wsauth_settings):
    # Expired 3 s ago: inside the default 10 s leeway.
    await validate_access_token(issuer.token(exp=int(time.time()) - 3))


async def test_nbf_in_future(issuer, wsauth_settings):
    await refused(issuer.token(nbf=int(time.time()) + 120), "not_yet_valid")


async def test_iat_in_future(issuer, wsauth_settings):
    await refused(issuer.token(iat=int(time.time()) + 120), "not_yet_valid")


async def test_wrong_issuer(issuer, wsauth_settings):
    await refused(issuer.token(iss="https://evil.example/realms/test"), "wrong_issuer")


async def test_issuer_must_match_exactly(issuer, wsauth_settings):
    await refused(issuer.token(iss=issuer.issuer + "/"), "wrong_issuer")


async def test_wrong_audience(issuer, wsauth_settings):
    await refused(issuer.token(aud="another-client"), "wrong_audience")
    await refused(issuer.token(aud=["x", "y"]), "wrong_audience")


async def test_audience_in_list(issuer, wsauth_settings):
    await validate_access_token(issuer.token(aud=["x", AUDIENCE]))


async def test_missing_audience_refused(issuer, wsauth_settings):
    await refused(issuer.token(aud=None), "wrong_audience")


async def test_audience_check_can_be_disabled(issuer, wsauth_settings):
    wsauth_settings.WSAUTH = {**wsauth_settings.WSAUTH, "VERIFY_AUDIENCE": False}
    wsauth_conf.reset()
    await validate_access_token(issuer.token(aud=None))


@pytest.mark.parametrize("claim", ["exp", "iss", "sub"])
async def test_required_claims(issuer, wsauth_settings, claim):
    await refused(issuer.token(**{claim: None}), "missing_claim")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none_in_any_case(issuer, wsauth_settings, alg):
    claims = issuer.claims()
    await refused(forge({"alg": alg, "kid": issuer.default_kid}, claims), "bad_algorithm")
    await refused(forge({"alg": alg, "typ": "JWT"}, claims, b"sig"), "bad_algorithm")


async def test_alg_none_refused_even_if_listed(issuer, wsauth_settings):
    wsauth_settings.WSAUTH = {**wsauth_settings.WSAUTH, "ALGORITHMS": ["RS256", "none"]}
    wsauth_conf.reset()
    await refused(forge({"alg": "none"}, issuer.claims()), "bad_algorithm")


def _hs256(header: dict, claims: dict, secret: bytes) -> str:
    signing_input = (
        b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    ).encode()
    return (
        signing_input.decode() + "." + b64(hmac.new(secret, signing_input, hashlib.sha256).digest())
    )


async def test_hs256_signed_with_public_key(issuer, wsauth_settings):
    private, _ = issuer.keys[issuer.default_kid]
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk_secret = json.dumps(public_jwk(private, issuer.default_kid)).encode()
    for secret in (pem, jwk_secret):
        token = _hs256({"alg": "HS256", "kid": issuer.default_kid}, issuer.claims(), secret)
        await refused(token, "bad_algorithm")


async def test_hs256_refused_even_if_listed(issuer, wsauth_settings):
    # A misconfigured allow-list (manage.py check errors on it) still never turns an RSA
    # public key into an HMAC secret: the key type must match the algorithm.
    wsauth_settings.WSAUTH = {**wsauth_settings.WSAUTH, "ALGORITHMS": ["RS256", "HS256"]}
    wsauth_conf.reset()
    private, _ = issuer.keys[issuer.default_kid]
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = _hs256({"alg": "HS256", "kid": issuer.default_kid}, issuer.claims(), pem)
    await refused(token, "key_alg_mismatch")


async def test_alg_must_fit_key_type(issuer, wsauth_settings):
    # An ES256 header with the RSA key's kid: refused without trying to verify.
    attacker = new_key("EC")
    token = jwt.encode(
        issuer.claims(), attacker, algorithm="ES256", headers={"kid": issuer.default_kid}
    )
    await refused(token, "key_alg_mismatch")


async def test_unknown_kid(issuer, wsauth_settings):
    await validate_access_token(issuer.token())  # warm the cache
    attacker = new_key("RSA")
    token = jwt.encode(issuer.claims(), attacker, algorithm="RS256", headers={"kid": "nope"})
    await refused(token, "unknown_kid")


@pytest.mark.parametrize("header", ["jku", "x5u", "jwk"])
async def test_header_key_sources_are_ignored(issuer, wsauth_settings, header):
    attacker = new_key("RSA")
    value = {
        "jku": "http://127.0.0.1:9/attacker/jwks",
        "x5u": "http://127.0.0.1:9/attacker/cert.pem",
        "jwk": public_jwk(attacker, issuer.default_kid),
    }[header]
    token = jwt.encode(
        issuer.claims(),
        attacker,
        algorithm="RS256",
        headers={"kid": issuer.default_kid, header: value},
    )
    await refused(token, "bad_signature")


async def test_other_key_with_the_real_kid(issuer, wsauth_settings):
    attacker = new_key("RSA")
    token = jwt.encode(
        issuer.claims(), attacker, algorithm="RS256", headers={"kid": issuer.default_kid}
    )
    await refused(token, "bad_signature")


async def test_oversized_token(issuer, wsauth_settings):
    token = issuer.token(padding="x" * 13_000)
    await refused(token, "too_large")


async def test_size_limit_is_configurable(issuer, wsauth_settings):
    token = issuer.token(padding="x" * 13_000)
    wsauth_settings.WSAUTH = {**wsauth_settings.WSAUTH, "MAX_TOKEN_SIZE": 20_000}
    wsauth_conf.reset()
    await validate_access_token(token)


@pytest.mark.parametrize("typ", ["logout+jwt", "dpop+jwt", "id_token+jwt", 7])
async def test_other_token_types_refused(issuer, wsauth_settings, typ):
    await refused(issuer.token(headers={"typ": typ}), "bad_type")


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "JWT", None])
async def test_default_typ_policy_accepts(issuer, wsauth_settings, typ):
    await validate_access_token(issuer.token(headers={"typ": typ}))


async def test_strict_typ_policy(issuer, wsauth_settings):
    wsauth_settings.WSAUTH = {**wsauth_settings.WSAUTH, "TYP_POLICY": "strict"}
    wsauth_conf.reset()
    await validate_access_token(issuer.token(headers={"typ": "at+jwt"}))
    await refused(issuer.token(headers={"typ": "JWT"}), "bad_type")
    await refused(issuer.token(headers={"typ": None}), "bad_type")


async def test_crit_header_refused(issuer, wsauth_settings):
    await refused(issuer.token(headers={"crit": ["exp"]}), "malformed")


async def test_dpop_bound_refused_by_default(issuer, wsauth_settings):
    await refused(
        issuer.token(cnf={"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}), "dpop_bound"
    )


async def test_dpop_bound_accepted_with_setting(issuer, wsauth_settings):
    wsauth_settings.WSAUTH = {**wsauth_settings.WSAUTH, "ACCEPT_DPOP_BOUND_AS_BEARER": True}
    wsauth_conf.reset()
    verified = await validate_access_token(issuer.token(cnf={"jkt": "abc"}))
    assert verified.dpop_jkt == "abc"


async def test_verified_cache_never_outlives_exp(issuer, wsauth_settings):
    token = issuer.token(exp=int(time.time()) + 1)
    await validate_access_token(token)
    await validate_access_token(token)  # from the cache
    # Past exp + leeway the cached verification must not be served.
    wsauth_settings.WSAUTH = {**wsauth_settings.WSAUTH, "LEEWAY": 0}
    wsauth_conf.reset()
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            await validate_access_token(token)
        except TokenError as exc:
            assert exc.reason == "expired"
            return
        time.sleep(0.1)
    pytest.fail("an expired token stayed valid")


def test_shared_ticket_claims_are_not_kept_past_exp(settings):
    """Tickets' claims share one dict by content, like verified tokens only until exp."""
    conf = wsauth_conf.get_conf()
    live = {"iss": "https://idp.test", "sub": "s", "jti": "j", "exp": time.time() + 60}
    spent = {**live, "jti": "k", "exp": time.time() - 1}
    assert shared_claims(dict(live), conf) is shared_claims(dict(live), conf)
    assert shared_claims(dict(spent), conf) is not shared_claims(dict(spent), conf)


async def test_token_without_kid_uses_the_only_key(issuer, wsauth_settings):
    await validate_access_token(issuer.token(include_kid=False))
    issuer.add_key()
    issuer.jwks_fetches = 0
    wsauth_conf.reset()  # fresh key cache that sees two keys
    await refused(issuer.token(include_kid=False), "unknown_kid")


async def test_verified_claims_share_repeated_strings(issuer, wsauth_settings):
    """A socket keeps its claims for its whole life: keys and the issuer/audience strings
    are shared between tokens rather than held once per socket."""
    first = await validate_access_token(issuer.token(sub="a", scope="openid chat"))
    second = await validate_access_token(issuer.token(sub="b", scope="openid chat"))
    token = issuer.token(sub="c", scope="openid chat")
    assert (await validate_access_token(token)).claims == jwt.decode(
        token, options={"verify_signature": False}
    )
    keys = {k: k for k in first.claims}
    assert all(keys[k] is k for k in second.claims if k in keys)
    for name in ("iss", "aud", "scope"):
        assert first.claims[name] is second.claims[name], name
    assert first.claims["sub"] == "a" and second.claims["sub"] == "b"


def test_discarding_from_the_verified_cache_while_it_is_filled():
    """A revocation from sync code walks the cache on async_to_sync's thread while the
    server's loop adds to it; an insertion during the walk (here, by the predicate) must
    not end the revocation with "dictionary changed size during iteration"."""
    from wsauth.tokens import _BoundedCache

    cache: _BoundedCache[str, int] = _BoundedCache(100, expires=lambda value: float("inf"))
    for n in range(10):
        cache.put(f"k{n}", n)

    def odd_and_inserting(value: int) -> bool:
        cache.put(f"new{value}", 100 + value)
        return value % 2 == 1

    cache.discard_where(odd_and_inserting)
    kept = [cache.get(f"k{n}", 0.0) for n in range(10)]
    assert kept == [0, None, 2, None, 4, None, 6, None, 8, None]
    assert cache.get("new3", 0.0) == 103
