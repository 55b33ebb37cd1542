"""Limits in-process: rates, client addresses behind proxies, settings checks."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from wsauth import conf as wsauth_conf
from wsauth.limits import client_address, parse_rate


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("60/minute", (60, 60.0)),
        ("10/s", (10, 1.0)),
        ("100/30", (100, 30.0)),
        ("5/hour", (5, 3600.0)),
        ((3, 2), (3, 2.0)),
        (None, None),
    ],
)
def test_parse_rate(value, expected):
    assert parse_rate(value) == expected


@pytest.mark.parametrize("value", ["fast", "0/minute", "5/fortnight", "-1/s", "5/0"])
def test_bad_rates_raise_with_the_form(value):
    with pytest.raises(ValueError):
        parse_rate(value)


def scope(peer: str, forwarded: str | None = None) -> dict:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return {"client": (peer, 5555), "headers": headers}


def test_client_address_ignores_forwarded_for_without_trusted_proxies(settings):
    settings.WSAUTH = {**settings.WSAUTH, "TRUSTED_PROXIES": []}
    assert client_address(scope("10.0.0.5", "198.51.100.1")) == "10.0.0.5"


def test_client_address_from_trusted_proxy_chain(settings):
    settings.WSAUTH = {**settings.WSAUTH, "TRUSTED_PROXIES": ["10.0.0.0/8", "::1"]}
    # client, then two proxies of ours: the rightmost untrusted hop is the client
    assert client_address(scope("10.0.0.5", "198.51.100.1, 10.1.1.1")) == "198.51.100.1"
    # a forged leftmost entry does not help the client
    assert client_address(scope("10.0.0.5", "1.2.3.4, 198.51.100.1")) == "198.51.100.1"
    # garbage from the client side: counted against the peer
    assert client_address(scope("10.0.0.5", "not-an-ip")) == "10.0.0.5"
    # a peer outside the trusted set is the client, whatever it forwards
    assert client_address(scope("203.0.113.9", "198.51.100.1")) == "203.0.113.9"
    wsauth_conf.reset()


@pytest.mark.parametrize(
    ("override", "check_id"),
    [
        ({"HANDSHAKE_RATE": "lots"}, "wsauth.E012"),
        ({"MESSAGE_RATE": "5/fortnight"}, "wsauth.E012"),
        ({"TRUSTED_PROXIES": ["proxy.example.com"]}, "wsauth.E013"),
        ({"RATE_LIMIT_CACHE": "nope"}, "wsauth.E014"),
    ],
)
def test_bad_limit_settings_fail_check(settings, override, check_id):
    settings.WSAUTH = {**settings.WSAUTH, "ISSUER": "https://id.example.test", **override}
    with pytest.raises(SystemCheckError, match=check_id):
        call_command("check")
    wsauth_conf.reset()
