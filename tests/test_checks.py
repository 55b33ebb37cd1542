"""System checks name the problem and the fix."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.daphne import ROOT, project_env
from wsauth import conf as wsauth_conf
from wsauth.checks import check_settings

REDIS_LAYER = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}


def ids(settings, **wsauth):
    settings.WSAUTH = {**settings.WSAUTH, **wsauth}
    wsauth_conf.reset()
    return {e.id for e in check_settings()}


def test_default_test_settings_have_no_errors(settings):
    settings.DEBUG = True
    assert ids(settings) == set()


def test_missing_issuer(settings):
    assert "wsauth.E002" in ids(settings, ISSUER=None)


def test_missing_audience(settings):
    settings.OIDC_RP_CLIENT_ID = None
    assert "wsauth.E003" in ids(settings, AUDIENCE=None)


def test_audience_fallback_and_explicit_opt_out(settings):
    settings.OIDC_RP_CLIENT_ID = "client"
    assert "wsauth.E003" not in ids(settings, AUDIENCE=None)
    settings.OIDC_RP_CLIENT_ID = None
    assert "wsauth.E003" not in ids(settings, AUDIENCE=None, VERIFY_AUDIENCE=False)


def test_none_algorithm(settings):
    assert "wsauth.E004" in ids(settings, ALGORITHMS=["RS256", "none"])


def test_hmac_algorithms(settings):
    assert "wsauth.E005" in ids(settings, ALGORITHMS=["RS256", "HS256"])


def test_hmac_from_mozilla_fallback(settings):
    settings.OIDC_RP_SIGN_ALGO = "HS256"
    settings.WSAUTH = {k: v for k, v in settings.WSAUTH.items() if k != "ALGORITHMS"}
    wsauth_conf.reset()
    assert "wsauth.E005" in {e.id for e in check_settings()}


def test_short_cooldown(settings):
    assert "wsauth.E007" in ids(settings, JWKS_UNKNOWN_KID_COOLDOWN=1)


def test_unknown_setting(settings):
    assert "wsauth.E001" in ids(settings, ISUSER="typo")


def test_bad_allowed_origin(settings):
    assert "wsauth.E010" in ids(settings, ALLOWED_ORIGINS=["example.com"])


def test_local_memory_tickets_with_redis_layer(settings):
    settings.CHANNEL_LAYERS = REDIS_LAYER
    errors = [e for e in check_settings() if e.id == "wsauth.W001"]
    assert errors and "RedisCache" in errors[0].hint


def test_in_memory_layer_without_debug(settings):
    settings.DEBUG = False
    assert "wsauth.W002" in ids(settings)


def test_unknown_ticket_cache(settings):
    assert "wsauth.E011" in ids(settings, TICKET_CACHE="nope")


@pytest.mark.parametrize(
    ("env", "expected"),
    [({"OIDC_ISSUER": "http://127.0.0.1:9/realms/x"}, 0), ({"OIDC_AUDIENCE": ""}, 1)],
)
def test_manage_py_check(env, expected, tmp_path):
    environment = project_env(DJANGO_VAR_DIR=str(tmp_path), **env)
    if expected:
        environment["OIDC_ISSUER"] = "http://127.0.0.1:9/realms/x"
        environment["OIDC_CLIENT_ID"] = ""
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--fail-level", "ERROR"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == expected, result.stderr
    if expected:
        assert "wsauth.E003" in result.stderr and "AUDIENCE" in result.stderr
