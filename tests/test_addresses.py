"""The client address by one rule, rates, and the limit settings' checks."""

from __future__ import annotations

import logging

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from wsauth import conf as wsauth_conf
from wsauth.admission import parse_rate
from wsauth.admission.addresses import bucket, client_address


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


def address(settings, peer: str, forwarded: str | None = None, **wsauth) -> str:
    settings.WSAUTH = {**settings.WSAUTH, **wsauth}
    wsauth_conf.reset()
    return client_address(scope(peer, forwarded), wsauth_conf.get_conf())


def test_forwarded_for_is_ignored_without_trusted_proxies(settings):
    assert address(settings, "10.0.0.5", "198.51.100.1", TRUSTED_PROXIES=[]) == "10.0.0.5"


def test_the_rightmost_untrusted_hop_is_the_client(settings):
    trusted = {"TRUSTED_PROXIES": ["10.0.0.0/8", "::1"]}
    # client, then two proxies of ours
    assert address(settings, "10.0.0.5", "198.51.100.1, 10.1.1.1", **trusted) == "198.51.100.1"
    # nginx's $proxy_add_x_forwarded_for keeps what the client wrote on the left
    for forged in ("1.2.3.4", "5.6.7.8", "192.0.2.200"):
        got = address(settings, "10.0.0.5", f"{forged}, 198.51.100.1", **trusted)
        assert got == "198.51.100.1"
    # garbage on the client side: the last believed hop (the proxy's peer) stands
    assert address(settings, "10.0.0.5", "not-an-ip", **trusted) == "10.0.0.5"
    # a peer outside the trusted set is the client, whatever it forwards
    assert address(settings, "203.0.113.9", "198.51.100.1", **trusted) == "203.0.113.9"
    # every hop trusted: the leftmost
    assert address(settings, "10.0.0.5", "10.9.9.9, 10.1.1.1", **trusted) == "10.9.9.9"


def test_ipv4_mapped_addresses_are_ipv4(settings):
    """``daphne -b ::`` reports IPv4 peers as ``::ffff:a.b.c.d``."""
    trusted = {"TRUSTED_PROXIES": ["127.0.0.1"]}
    assert address(settings, "::ffff:127.0.0.1", "198.51.100.4", **trusted) == "198.51.100.4"
    assert address(settings, "::ffff:203.0.113.1") == "203.0.113.1"
    assert address(settings, "10.0.0.5", "::ffff:198.51.100.9", **trusted) == "10.0.0.5"
    assert address(settings, "127.0.0.1", "::ffff:198.51.100.9", **trusted) == "198.51.100.9"


def test_ipv6_clients_are_counted_per_64(settings):
    settings.WSAUTH = {**settings.WSAUTH}
    wsauth_conf.reset()
    conf = wsauth_conf.get_conf()
    assert bucket("2001:db8:1:2:aaaa::1", conf) == bucket("2001:db8:1:2:ffff::9", conf)
    assert bucket("2001:db8:1:2::1", conf) == "2001:db8:1:2::/64"
    assert bucket("2001:db8:1:3::1", conf) != bucket("2001:db8:1:2::1", conf)
    assert bucket("198.51.100.1", conf) == "198.51.100.1"
    settings.WSAUTH = {**settings.WSAUTH, "IPV6_PREFIX": 128}
    wsauth_conf.reset()
    conf = wsauth_conf.get_conf()
    assert bucket("2001:db8:1:2::1", conf) != bucket("2001:db8:1:2::2", conf)
    wsauth_conf.reset()


def test_forwarded_for_from_an_untrusted_peer_is_warned_about_once(settings, caplog):
    wsauth_conf.reset()
    conf = wsauth_conf.get_conf()
    with caplog.at_level(logging.WARNING, "wsauth"):
        for i in range(5):
            client_address(scope("10.0.0.5", f"198.51.100.{i}, 10.0.0.5"), conf)
    assert caplog.text.count("not in WSAUTH['TRUSTED_PROXIES']") == 1


def test_a_server_that_took_the_address_from_forwarded_for_is_named(settings, caplog):
    """``daphne --proxy-headers`` puts the leftmost hop, the client's own, in the scope."""
    with caplog.at_level(logging.WARNING, "wsauth"):
        address(settings, "1.2.3.4", "1.2.3.4, 198.51.100.1", TRUSTED_PROXIES=["10.0.0.0/8"])
    assert "--proxy-headers" in caplog.text


@pytest.mark.parametrize(
    ("override", "check_id"),
    [
        ({"HANDSHAKE_RATE": "lots"}, "wsauth.E012"),
        ({"USER_HANDSHAKE_RATE": "lots"}, "wsauth.E012"),
        ({"MESSAGE_RATE": "5/fortnight"}, "wsauth.E012"),
        ({"TRUSTED_PROXIES": ["proxy.example.com"]}, "wsauth.E013"),
        ({"RATE_LIMIT_CACHE": "nope"}, "wsauth.E014"),
        ({"SOCKET_LEASE": 86460}, "wsauth.E017"),
        ({"IPV6_PREFIX": 16}, "wsauth.E018"),
    ],
)
def test_bad_limit_settings_fail_check(settings, override, check_id):
    settings.WSAUTH = {**settings.WSAUTH, "ISSUER": "https://id.example.test", **override}
    with pytest.raises(SystemCheckError, match=check_id):
        call_command("check")
    wsauth_conf.reset()
