"""wsauth.conf: the WSAUTH dict's defaults, the mozilla-django-oidc fallbacks, the one
cache of the resolved settings and the hooks that drop what was built from them."""

from __future__ import annotations

import pytest
from django.test import override_settings

from wsauth import conf as wsauth_conf
from wsauth.conf import DEFAULT_ALGORITHMS, DEFAULTS, get_conf


@pytest.fixture(autouse=True)
def fresh():
    wsauth_conf.reset()
    yield
    wsauth_conf.reset()


def loaded(**wsauth) -> wsauth_conf.Conf:
    with override_settings(WSAUTH=wsauth):
        return get_conf()


@override_settings(OIDC_RP_SIGN_ALGO=None)
def test_defaults_when_wsauth_is_empty():
    conf = loaded()
    assert conf.algorithms == frozenset(DEFAULT_ALGORITHMS)
    assert conf.leeway == 10.0
    assert conf.typ_policy == "default"
    assert conf.subprotocol_prefix == "authorization_bearer_"
    assert conf.ticket_ttl == 30
    assert conf.revocation_cache == conf.ticket_cache == conf.rate_limit_cache == "default"
    assert conf.accept_unverified_cnf == frozenset()
    assert conf.max_sockets_per_user is None
    assert conf.server_adapters is None
    assert conf.raw["_unknown"] == []


def test_no_algorithm_is_symmetric_or_none():
    assert not any(a.startswith("HS") or a.lower() == "none" for a in DEFAULT_ALGORITHMS)


def test_unknown_keys_are_kept_for_the_system_check():
    assert loaded(LEEWAY=3, LEWAY=5, ticket_ttl=1).raw["_unknown"] == ["LEWAY", "ticket_ttl"]


@override_settings(
    OIDC_RP_CLIENT_ID="oidc-client",
    OIDC_RP_SIGN_ALGO="ES256",
    OIDC_OP_JWKS_ENDPOINT="https://idp.test/jwks",
    OIDC_CREATE_USER=False,
)
def test_mozilla_django_oidc_settings_are_fallbacks():
    conf = loaded()
    assert conf.audience == ("oidc-client",)
    assert conf.logout_audience == ("oidc-client",)
    assert conf.algorithms == frozenset({"ES256"})
    assert conf.jwks_url == "https://idp.test/jwks"
    assert conf.create_users is False


@override_settings(
    OIDC_RP_CLIENT_ID="oidc-client",
    OIDC_RP_SIGN_ALGO="HS256",
    OIDC_OP_JWKS_ENDPOINT="https://idp.test/jwks",
    OIDC_CREATE_USER=False,
)
def test_wsauth_settings_win_over_the_fallbacks():
    conf = loaded(
        AUDIENCE=["api", "", "web"],
        ALGORITHMS=["RS256"],
        JWKS_URL="https://idp.test/keys",
        CREATE_USERS=True,
        LOGOUT_AUDIENCE="logout-client",
    )
    assert conf.audience == ("api", "web")  # empty entries dropped
    assert conf.algorithms == frozenset({"RS256"})
    assert conf.jwks_url == "https://idp.test/keys"
    assert conf.create_users is True
    assert conf.logout_audience == ("logout-client",)


@override_settings(OIDC_RP_CLIENT_ID=None)
def test_logout_audience_falls_back_to_the_audience():
    assert loaded(AUDIENCE="api").logout_audience == ("api",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, frozenset()),
        ("x5t#S256", frozenset({"x5t#S256"})),
        (["a", "b"], frozenset({"a", "b"})),
    ],
)
def test_accept_unverified_cnf_forms(value, expected):
    assert loaded(ACCEPT_UNVERIFIED_CNF=value).accept_unverified_cnf == expected


def test_coercions_and_zero_meaning_off():
    conf = loaded(
        LEEWAY="5",
        MAX_SOCKETS_PER_USER=0,
        MAX_MESSAGE_SIZE=0,
        LIMITS_SYNC_INTERVAL=None,
        REDIS="",
        METRICS="yes",
        SERVER_ADAPTERS=[],
    )
    assert conf.leeway == 5.0
    assert conf.max_sockets_per_user is None
    assert conf.max_message_size is None
    assert conf.limits_sync_interval == 0.0
    assert conf.redis is None
    assert conf.metrics is None  # not a bool: decided by whether prometheus_client is there
    assert conf.server_adapters == ()  # an empty list: no adapter, unlike None (every one)


def test_role_caches_fall_back_to_the_ticket_cache():
    conf = loaded(TICKET_CACHE="tickets", RATE_LIMIT_CACHE="limits")
    assert (conf.ticket_cache, conf.revocation_cache, conf.rate_limit_cache) == (
        "tickets",
        "tickets",
        "limits",
    )


def test_resolved_once_and_dropped_when_settings_change(settings):
    first = get_conf()
    assert get_conf() is first
    settings.WSAUTH = {**settings.WSAUTH, "LEEWAY": 1}  # setting_changed: reset
    second = get_conf()
    assert second is not first and second.leeway == 1.0
    settings.OIDC_RP_CLIENT_ID = "another"  # a fallback changing resets too
    assert get_conf() is not second
    third = get_conf()
    settings.SOME_UNRELATED_SETTING = 1
    assert get_conf() is third


def test_reset_hooks_run_on_reset():
    calls = []
    hook = wsauth_conf.on_reset(lambda: calls.append(1))
    try:
        wsauth_conf.reset()
        with override_settings(
            CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        ):
            pass  # entering and leaving: two setting_changed signals
        assert calls == [1, 1, 1]
    finally:
        wsauth_conf._reset_hooks.remove(hook)


def test_every_default_is_a_conf_field_or_named_in_the_raw_dict():
    raw = loaded().raw
    assert set(DEFAULTS) <= set(raw)
    fields = set(wsauth_conf.Conf.__dataclass_fields__)
    assert {name.lower() for name in DEFAULTS} <= fields
