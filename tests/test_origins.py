"""Origin parsing, the allowed set, the admin form and the wsauth_origins command."""

from __future__ import annotations

import asyncio
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from wsauth.admin import AllowedOriginForm
from wsauth.models import AllowedOrigin
from wsauth.origins import Origin, OriginError, OriginGate, OriginSet, parse_origin


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://Chat.Example.COM", Origin("https", "chat.example.com", 443)),
        ("https://chat.example.com:443", Origin("https", "chat.example.com", 443)),
        ("http://localhost:8000", Origin("http", "localhost", 8000)),
        ("http://127.0.0.1:8000/", Origin("http", "127.0.0.1", 8000)),
        ("http://[::1]:8000", Origin("http", "::1", 8000)),
        ("https://bücher.example", Origin("https", "xn--bcher-kva.example", 443)),
    ],
)
def test_parse_and_normalise(value, expected):
    assert parse_origin(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "null",
        "chat.example.com",
        "ftp://example.com",
        "https://example.com/path",
        "https://user@example.com",
        "https://example.com?x=1",
        "https://exa mple.com",
        "https://example.com:99999",
        "https://*.example.com",  # wildcards only where allowed
        "https://\x00example.com",
    ],
)
def test_invalid_origins(value):
    with pytest.raises(OriginError):
        parse_origin(value)


def test_wildcard_matches_subdomains_only():
    allowed = OriginSet([parse_origin("https://*.example.com", allow_wildcard=True)])
    assert allowed.allows(parse_origin("https://a.example.com"))
    assert allowed.allows(parse_origin("https://a.b.example.com"))
    assert not allowed.allows(parse_origin("https://example.com"))
    assert not allowed.allows(parse_origin("https://evilexample.com"))
    assert not allowed.allows(parse_origin("http://a.example.com"))
    assert not allowed.allows(parse_origin("https://a.example.com:8443"))


def test_str_round_trips():
    for value in ["https://*.example.com", "http://localhost:8000", "https://[::1]:8443"]:
        assert str(parse_origin(value, allow_wildcard=True)) == value


@pytest.mark.django_db
def test_admin_form_validates_and_normalises():
    form = AllowedOriginForm(data={"origin": "HTTPS://Chat.Example.com:443", "is_active": True})
    assert form.is_valid(), form.errors
    row = form.save()
    assert (row.scheme, row.host, row.port) == ("https", "chat.example.com", 443)
    assert str(row) == "https://chat.example.com"
    bad = AllowedOriginForm(data={"origin": "chat.example.com", "is_active": True})
    assert not bad.is_valid()
    assert "origin" in bad.errors


@pytest.mark.django_db
def test_command_add_list_remove():
    out = StringIO()
    call_command("wsauth_origins", "add", "https://a.example", "http://localhost:8000", stdout=out)
    out = StringIO()
    call_command("wsauth_origins", "list", stdout=out)
    assert out.getvalue().split() == ["http://localhost:8000", "https://a.example"]
    call_command("wsauth_origins", "remove", "https://a.example", stdout=StringIO())
    out = StringIO()
    call_command("wsauth_origins", "list", stdout=out)
    assert out.getvalue().split() == ["http://localhost:8000"]
    with pytest.raises(CommandError):
        call_command("wsauth_origins", "remove", "https://a.example", stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("wsauth_origins", "add", "not an origin", stdout=StringIO())


@pytest.mark.django_db(transaction=True)
async def test_gate_reloads_after_interval(settings):
    from asgiref.sync import sync_to_async

    settings.WSAUTH = {**settings.WSAUTH, "ORIGINS_REFRESH_INTERVAL": 0.3}
    gate = OriginGate()
    assert not await gate.allows("https://a.example")
    await sync_to_async(AllowedOrigin.from_string("https://a.example").save)()
    assert not await gate.allows("https://a.example")  # within the interval: cached
    await asyncio.sleep(0.35)
    assert await gate.allows("https://a.example")

    row = await AllowedOrigin.objects.aget(host="a.example")
    row.is_active = False
    await row.asave()
    await asyncio.sleep(0.35)
    assert not await gate.allows("https://a.example")


@pytest.mark.django_db(transaction=True)
async def test_gate_reads_the_table_once_per_interval(settings):
    settings.WSAUTH = {**settings.WSAUTH, "ORIGINS_REFRESH_INTERVAL": 60}
    gate = OriginGate()
    loads = []
    real_load = gate._load_sync

    def counting_load():
        loads.append(1)
        return real_load()

    gate._load_sync = counting_load  # type: ignore[method-assign]
    await asyncio.gather(*(gate.allows("https://a.example") for _ in range(50)))
    for _ in range(50):
        await gate.allows("https://a.example")
    assert len(loads) == 1


@pytest.mark.django_db(transaction=True)
async def test_settings_origins_are_always_allowed(settings):
    settings.WSAUTH = {**settings.WSAUTH, "ALLOWED_ORIGINS": ["https://*.static.example"]}
    gate = OriginGate()
    assert await gate.allows("https://cdn.static.example")
    assert not await gate.allows("https://other.example")


@pytest.mark.parametrize(
    "value", ["http://a:0", "http://[v1.x]", "http://01.2.3.4", "http://1.2.3"]
)
def test_ambiguous_hosts_and_ports_are_refused(value):
    # Found by the fuzz tests: port 0 became the default port, an IPvFuture literal a
    # host name, and a zero-padded address a domain name.
    with pytest.raises(OriginError):
        parse_origin(value)


@pytest.mark.django_db
async def test_verdict_cache_stays_bounded(settings):
    """Random Origin headers (a scanner) cannot grow the per-set verdict cache."""
    from wsauth import origins

    settings.WSAUTH = {**settings.WSAUTH, "ALLOWED_ORIGINS": ["https://ok.example"]}
    gate = OriginGate()
    for i in range(origins.VERDICT_CACHE_SIZE * 3):
        assert not await gate.allows(f"https://x{i}.example")
    assert await gate.allows("https://ok.example")
    current = await gate.current()
    assert 0 < len(current.verdicts) <= origins.VERDICT_CACHE_SIZE
    assert current.verdicts["https://ok.example"] is True
