"""The key cache against a live HTTP issuer: fetch counts, rotation, outages."""

from __future__ import annotations

import asyncio
import time
import uuid

import jwt
import pytest

from tests.issuer import new_key
from wsauth import conf as wsauth_conf
from wsauth.tokens import TokenError, validate_access_token

pytestmark = pytest.mark.django_db


def random_kid_token(issuer) -> str:
    return jwt.encode(
        issuer.claims(), new_key_cached(), algorithm="RS256", headers={"kid": uuid.uuid4().hex}
    )


_attacker = []


def new_key_cached():
    if not _attacker:
        _attacker.append(new_key("RSA"))
    return _attacker[0]


async def test_cold_cache_burst_fetches_once(issuer, wsauth_settings):
    issuer.delay = 0.2  # keep the fetch in flight while the burst arrives
    tokens = [issuer.token() for _ in range(20)]
    results = await asyncio.gather(*(validate_access_token(t) for t in tokens * 25))
    assert len(results) == 500
    assert issuer.jwks_fetches == 1
    assert issuer.discovery_fetches == 1


async def test_unknown_kid_flood_costs_a_handful_of_fetches(issuer, wsauth_settings):
    await validate_access_token(issuer.token())
    assert issuer.jwks_fetches == 1
    tokens = [random_kid_token(issuer) for _ in range(200)]
    for token in tokens:
        with pytest.raises(TokenError) as info:
            await validate_access_token(token)
        assert info.value.reason == "unknown_kid"
    # One refetch for the first unknown kid, then the cool-down refuses the rest.
    assert issuer.jwks_fetches == 2


async def test_concurrent_unknown_kid_flood(issuer, wsauth_settings):
    await validate_access_token(issuer.token())
    tokens = [random_kid_token(issuer) for _ in range(100)]
    results = await asyncio.gather(
        *(validate_access_token(t) for t in tokens), return_exceptions=True
    )
    assert all(isinstance(r, TokenError) for r in results)
    assert issuer.jwks_fetches <= 2


async def test_key_rotation_is_picked_up(issuer, wsauth_settings):
    await validate_access_token(issuer.token())
    new_kid = issuer.rotate()
    verified = await validate_access_token(issuer.token(kid=new_kid))
    assert verified.kid == new_kid
    assert issuer.jwks_fetches == 2


async def test_rotated_key_waits_for_cooldown_after_a_flood(issuer, wsauth_settings):
    wsauth_settings.WSAUTH = {**wsauth_settings.WSAUTH, "JWKS_UNKNOWN_KID_COOLDOWN": 5}
    wsauth_conf.reset()
    await validate_access_token(issuer.token())
    with pytest.raises(TokenError):
        await validate_access_token(random_kid_token(issuer))
    new_kid = issuer.rotate()
    with pytest.raises(TokenError) as info:
        await validate_access_token(issuer.token(kid=new_kid))
    assert info.value.reason == "unknown_kid"
    assert issuer.jwks_fetches == 2


async def test_issuer_down_at_start_then_up(issuer, wsauth_settings):
    issuer.down = True
    token = issuer.token()
    with pytest.raises(TokenError) as info:
        await validate_access_token(token)
    assert info.value.reason == "jwks_unavailable"
    issuer.down = False
    deadline = time.monotonic() + 5
    while True:
        try:
            await validate_access_token(token)
            break
        except TokenError:
            assert time.monotonic() < deadline, "never recovered"
            await asyncio.sleep(0.2)


async def test_issuer_down_mid_run_keeps_last_good_keys(issuer, wsauth_settings):
    wsauth_settings.WSAUTH = {**wsauth_settings.WSAUTH, "JWKS_CACHE_TTL": 0}
    wsauth_conf.reset()
    await validate_access_token(issuer.token())
    issuer.down = True
    # The keys are stale (TTL 0), the refresh fails, the last good set still verifies.
    for _ in range(3):
        await validate_access_token(issuer.token())
        await asyncio.sleep(0.05)
    assert issuer.jwks_fetches == 1


async def test_keys_older_than_max_stale_are_dropped(issuer, wsauth_settings):
    wsauth_settings.WSAUTH = {**wsauth_settings.WSAUTH, "JWKS_MAX_STALE": 0.2}
    wsauth_conf.reset()
    await validate_access_token(issuer.token())
    issuer.down = True
    await asyncio.sleep(0.3)
    with pytest.raises(TokenError) as info:
        await validate_access_token(issuer.token())
    assert info.value.reason == "jwks_unavailable"


@pytest.mark.parametrize("what", ["discovery", "jwks"])
async def test_malformed_documents_refuse_cleanly(issuer, wsauth_settings, what):
    issuer.malformed = what
    with pytest.raises(TokenError) as info:
        await validate_access_token(issuer.token())
    assert info.value.reason == "jwks_unavailable"


async def test_slow_issuer_times_out(issuer, wsauth_settings):
    wsauth_settings.WSAUTH = {**wsauth_settings.WSAUTH, "JWKS_TIMEOUT": 0.3}
    wsauth_conf.reset()
    issuer.delay = 1.5
    started = time.monotonic()
    with pytest.raises(TokenError) as info:
        await validate_access_token(issuer.token())
    assert info.value.reason == "jwks_unavailable"
    assert time.monotonic() - started < 1.4  # gave up before the issuer answered


async def test_explicit_jwks_url_skips_discovery(issuer, wsauth_settings):
    wsauth_settings.WSAUTH = {
        **wsauth_settings.WSAUTH,
        "JWKS_URL": issuer.url + "/realms/test/jwks",
    }
    wsauth_conf.reset()
    await validate_access_token(issuer.token())
    assert issuer.discovery_fetches == 0
    assert issuer.jwks_fetches == 1
