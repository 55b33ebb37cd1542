"""wsauth.admission.policies: rates parsed from settings (every accepted form, every
refused one with the expected form), counters with a hash tag per subject, and the
verdicts: over the count is Limited, and only the first past it is logged."""

from __future__ import annotations

import importlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsauth import conf as wsauth_conf
from wsauth.conf import get_conf
from wsauth.errors import Limited

# The module, not wsauth.admission's function of the same name.
p = importlib.import_module("wsauth.admission.policies")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("60/minute", (60, 60.0)),
        ("10/s", (10, 1.0)),
        ("5/ Hour ", (5, 3600.0)),
        ("100/30", (100, 30.0)),
        ("3/0.5", (3, 0.5)),
        ((7, 2), (7, 2.0)),
        ([7, "2"], (7, 2.0)),
        (None, None),
        ("", None),
        (0, None),
    ],
)
def test_rate_forms(value, expected):
    assert p.parse_rate(value) == expected


@pytest.mark.parametrize(
    "value", ["60", "x/minute", "10/fortnight", "0/minute", "5/0", "-1/s", 5, (1, 2, 3), "1/-2"]
)
def test_bad_rates_say_the_form(value):
    with pytest.raises(ValueError):
        p.Rate.parse(value)


def test_a_rate_without_a_slash_names_the_form():
    with pytest.raises(ValueError, match="COUNT/second"):
        p.Rate.parse("sixty")


@given(count=st.integers(1, 10**6), seconds=st.floats(0.001, 10**6))
def test_window_is_whole_seconds_at_least_one(count, seconds):
    rate = p.Rate(count, seconds)
    assert rate.window >= 1 and abs(rate.window - seconds) <= max(0.5, 1 - seconds)


def test_user_tag_is_a_hash_tag_that_hides_the_pk():
    tag = p.user_tag(42)
    assert tag.startswith("{u") and tag.endswith("}") and "42" not in tag
    assert p.user_tag(42) == tag and p.user_tag("42") == tag and p.user_tag(43) != tag


def test_counters_have_one_slot_per_subject_and_stay_bounded():
    policy = p.FailedAuthRate(p.Rate(3, 60))
    key, window = policy.counter("203.0.113.7")
    assert key == "wsauth:rl:too_many_failures:{203.0.113.7}:60" and window == 60
    assert policy.counter("203.0.113.7") is policy.counter("203.0.113.7")
    for n in range(10_002):
        policy.counter(f"10.0.{n // 256}.{n % 256}")
    assert len(policy._counters) <= 10_001


def test_user_handshake_counter_uses_the_users_tag():
    policy = p.UserHandshakeRate(p.Rate(5, 60))
    tag = p.user_tag(1)
    assert policy.counter(tag)[0] == f"wsauth:{tag}:hs:60"


def test_rate_verdicts():
    policy = p.HandshakeRate(p.Rate(2, 60))
    assert policy.verdict(1, "a") is None and policy.verdict(2, "a") is None
    first = policy.verdict(3, "a")
    assert isinstance(first, Limited) and first.first
    assert first.reason == "too_many_handshakes"
    assert "HANDSHAKE_RATE" in first.detail and "more than 2" in first.detail
    assert policy.verdict(4, "a").first is False


def test_sockets_per_user_verdicts():
    assert p.SocketsPerUser(None).verdict(False, 99, 1) is None
    limit = p.SocketsPerUser(2)
    assert limit.verdict(True, 2, 1) is None
    refused = limit.verdict(False, 2, 1)
    assert refused.reason == "too_many_sockets" and refused.first
    assert "MAX_SOCKETS_PER_USER = 2" in refused.detail
    assert limit.verdict(False, 3, 1).first is False


def test_policies_from_settings_once_per_configuration(settings):
    settings.WSAUTH = {
        **settings.WSAUTH,
        "FAILED_AUTH_RATE": "30/minute",
        "HANDSHAKE_RATE": None,
        "USER_HANDSHAKE_RATE": (5, 10),
        "MAX_SOCKETS_PER_USER": 3,
        "MESSAGE_RATE": "100/second",
    }
    wsauth_conf.reset()
    found = p.policies(get_conf())
    assert found is p.policies(get_conf())
    assert found.failures.rate == p.Rate(30, 60.0)
    assert found.handshakes is None
    assert found.user_handshakes.rate == p.Rate(5, 10.0)
    assert found.sockets.limit == 3
    assert found.message == p.Rate(100, 1.0)
    settings.WSAUTH = {**settings.WSAUTH, "FAILED_AUTH_RATE": None}
    assert p.policies(get_conf()).failures is None
