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


# -- the counters, in process: the same rules on Django's local memory and on Redis ---------


@pytest.fixture(params=["locmem", "redis"])
def limit_store(request, settings, redis_url):
    """RATE_LIMIT_CACHE on local memory (this process only) or on Redis (shared)."""
    backend = {
        "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "redis": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url},
    }[request.param]
    settings.CACHES = {
        **settings.CACHES,
        "limits": backend,
        "revocations": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    settings.WSAUTH = {
        **settings.WSAUTH,
        "RATE_LIMIT_CACHE": "limits",
        "HANDSHAKE_RATE": "4/minute",
        "FAILED_AUTH_RATE": "2/minute",
        "MAX_SOCKETS_PER_USER": 2,
    }
    wsauth_conf.reset()
    yield request.param
    wsauth_conf.reset()


async def _user(name: str):
    from django.contrib.auth import get_user_model

    return await get_user_model().objects.acreate(username=name)


@pytest.mark.django_db
async def test_failures_then_handshakes_are_limited_per_address(limit_store):
    from wsauth import limits

    conf = wsauth_conf.get_conf()
    assert await limits.record_failure("10.0.0.1", conf) is None
    assert await limits.record_failure("10.0.0.1", conf) is None
    third = await limits.record_failure("10.0.0.1", conf)
    assert third is not None and third.reason == "too_many_failures" and third.first
    with pytest.raises(limits.Limited) as info:
        await limits.check_handshake("10.0.0.1", conf)
    assert info.value.reason == "too_many_failures" and not info.value.first
    await limits.check_handshake("10.0.0.2", conf)  # another address is untouched
    for _ in range(4):
        await limits.check_handshake("10.0.0.3", conf)
    with pytest.raises(limits.Limited) as info:
        await limits.check_handshake("10.0.0.3", conf)  # the fifth of "4/minute"
    assert info.value.reason == "too_many_handshakes" and info.value.first


@pytest.mark.django_db
async def test_socket_places_per_user(limit_store):
    from wsauth import limits

    conf = wsauth_conf.get_conf()
    user = await _user(f"places-{limit_store}")
    first = await limits.admit(user, None, None, "10.0.1.1", conf)
    second = await limits.admit(user, None, None, "10.0.1.2", conf)
    assert first is not None and second is not None
    with pytest.raises(limits.Limited) as info:
        await limits.admit(user, None, None, "10.0.1.3", conf)
    assert info.value.reason == "too_many_sockets"
    await first.release()
    assert await limits.admit(user, None, None, "10.0.1.4", conf) is not None


@pytest.mark.django_db
async def test_places_given_back_together(limit_store, script_calls):
    """Places of sockets closing together go back in one command; one given back before
    an admission on this process rides in that admission's command, ahead of the count."""
    import asyncio

    from wsauth import limits, stores

    if limit_store != "redis":
        pytest.skip("local places are given back at once")
    conf = wsauth_conf.get_conf()
    user = await _user("batched-places")
    cache, client = stores.async_redis(conf.rate_limit_cache)
    key = cache.make_key(f"wsauth:sockets:{user.pk}")
    first = await limits.admit(user, None, None, "10.0.3.1", conf)
    second = await limits.admit(user, None, None, "10.0.3.2", conf)
    assert await client.zcard(key) == 2
    commands = script_calls(client)
    await asyncio.gather(first.release(), second.release())
    assert len(commands) == 1 and await client.zcard(key) == 0

    third = await limits.admit(user, None, None, "10.0.3.3", conf)
    fourth = await limits.admit(user, None, None, "10.0.3.4", conf)
    commands.clear()
    closing = asyncio.create_task(third.release())
    await asyncio.sleep(0)  # queued, not sent: RELEASE_DELAY has not passed
    assert commands == []
    fifth = await limits.admit(user, None, None, "10.0.3.5", conf)  # not too_many_sockets
    await closing
    assert fifth is not None and len(commands) == 1 and await client.zcard(key) == 2
    await asyncio.gather(fourth.release(), fifth.release())
    assert await client.zcard(key) == 0


@pytest.mark.django_db
async def test_concurrent_admissions_share_a_command(limit_store, script_calls):
    """Admissions that arrive while a call is in flight go together in the next one and
    are judged one after the other inside it: of five at once for a user with two
    places, two are admitted (the three refused give their places back afterwards)."""
    import asyncio

    from wsauth import limits, stores

    if limit_store != "redis":
        pytest.skip("local counters take no command")
    conf = wsauth_conf.get_conf()
    user = await _user("together")
    cache, client = stores.async_redis(conf.rate_limit_cache)
    commands = script_calls(client)
    outcomes = await asyncio.gather(
        *(limits.admit(user, None, None, f"10.0.4.{i}", conf) for i in range(5)),
        return_exceptions=True,
    )
    # The first goes at once; the four that arrive while it is in flight go together.
    requests = [args[2 + args[1]] for args in commands[:2]]  # ARGV[1]: requests in the call
    assert requests == [1, 4] and [args[1] for args in commands[:2]] == [3, 12]
    admitted = [o for o in outcomes if isinstance(o, limits.SocketSlot)]
    refused = [o for o in outcomes if isinstance(o, limits.Limited)]
    assert len(admitted) == 2 and len(refused) == 3
    assert {o.reason for o in refused} == {"too_many_sockets"}
    # Each request's address counter is its own: none of them is over HANDSHAKE_RATE.
    assert await client.get(cache.make_key(limits._window_key("hs", "10.0.4.3", 60))) == b"1"
    await asyncio.gather(*(slot.release() for slot in admitted))
    assert await client.zcard(cache.make_key(f"wsauth:sockets:{user.pk}")) == 0


@pytest.mark.django_db
@pytest.mark.parametrize("revocations", ["limits", "revocations"])
async def test_admission_reads_revocation_markers_in_either_store(
    limit_store, revocations, settings
):
    """Markers ride in the limits' command when both caches are one Redis, and are read
    apart otherwise: a revoked credential is refused either way."""
    import time

    from wsauth import limits, revoke, stores

    settings.WSAUTH = {**settings.WSAUTH, "REVOCATION_CACHE": revocations}
    wsauth_conf.reset()
    conf = wsauth_conf.get_conf()
    user = await _user(f"marked-{limit_store}-{revocations}")
    claims = {"iss": conf.issuer, "sub": "s", "iat": time.time() - 60}
    assert await limits.admit(user, claims, None, "10.0.2.1", conf) is not None
    await stores.run(revoke._mark, "user", user.pk)
    with pytest.raises(revoke.Revoked):
        await limits.admit(user, claims, None, "10.0.2.1", conf)


# -- a ticket handshake: redemption and admission in one request ------------------------------


@pytest.fixture
def one_redis(settings, redis_url):
    """Tickets, limits and revocation markers in one Redis (the default layout: all in
    TICKET_CACHE), with room for two sockets per user."""
    settings.CACHES = {
        **settings.CACHES,
        "shared": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url},
    }
    settings.WSAUTH = {
        **settings.WSAUTH,
        "TICKET_CACHE": "shared",
        "RATE_LIMIT_CACHE": None,
        "REVOCATION_CACHE": None,
        "MAX_SOCKETS_PER_USER": 2,
    }
    wsauth_conf.reset()
    yield
    wsauth_conf.reset()


async def _ticket_handshake(ticket: str):
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.testing import WebsocketCommunicator

    from wsauth.middleware import WSAuthMiddlewareStack

    class Accepting(AsyncWebsocketConsumer):
        async def connect(self):
            await self.accept()

    comm = WebsocketCommunicator(
        WSAuthMiddlewareStack(Accepting.as_asgi()), f"/ws/x/?ticket={ticket}"
    )
    connected, _ = await comm.connect(timeout=5)
    return comm, connected


async def _places(user) -> int:
    from wsauth import limits, stores

    cache, client = stores.async_redis("shared")
    return await client.zcard(cache.make_key(limits._place_key(user.pk)))


@pytest.mark.django_db(transaction=True)
async def test_a_ticket_handshake_is_one_store_request(one_redis, script_calls):
    from wsauth import stores, tickets

    user = await _user("one-request")
    ticket, _ = await tickets.issue({"uid": user.pk})
    _, client = stores.async_redis("shared")
    calls = script_calls(client)
    plain = []
    real_getdel = client.getdel
    client.getdel = lambda *a: plain.append(a) or real_getdel(*a)
    comm, connected = await _ticket_handshake(ticket)
    assert connected
    # One script call redeemed the ticket, counted the address and took the place.
    assert len(calls) == 1 and plain == []
    assert await _places(user) == 1
    await comm.disconnect()
    assert await _places(user) == 0  # given back at close
    _, again = await _ticket_handshake(ticket)
    assert not again  # and the ticket was used up


@pytest.mark.django_db(transaction=True)
async def test_a_ticket_handshake_refused_after_redemption_gives_its_place_back(one_redis):
    from asgiref.sync import sync_to_async

    from wsauth import revoke, stores, tickets

    user = await _user("refused-after")
    # An inactive user: refused after the request that took the place.
    ticket, _ = await tickets.issue({"uid": user.pk})
    user.is_active = False
    await user.asave()
    _, connected = await _ticket_handshake(ticket)
    assert not connected and await _places(user) == 0
    # A revoked one: the marker the ticket named was read in the same request.
    user.is_active = True
    await user.asave()
    ticket, _ = await tickets.issue({"uid": user.pk})
    await sync_to_async(revoke._mark)("user", user.pk)
    await stores.run(revoke.forget_user, user.pk)
    _, connected = await _ticket_handshake(ticket)
    assert not connected and await _places(user) == 0
    # Sockets by ticket and by any other credential share the user's places.
    await stores.cache("shared").adelete(revoke._key("user", user.pk))
    first, ok_first = await _ticket_handshake((await tickets.issue({"uid": user.pk}))[0])
    second, ok_second = await _ticket_handshake((await tickets.issue({"uid": user.pk}))[0])
    assert ok_first and ok_second and await _places(user) == 2
    third, _ = await _ticket_handshake((await tickets.issue({"uid": user.pk}))[0])
    assert (await third.receive_output(timeout=5))["code"] == 4429  # accepted, then closed
    assert await _places(user) == 2
    await first.disconnect()
    await second.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_ticket_that_names_no_keys_still_takes_a_place(one_redis):
    """A ticket issued without the keys line (by an earlier version, during a rolling
    deploy): the place is taken in a second request."""
    from wsauth import stores, tickets

    user = await _user("unnamed")
    ticket, record = tickets._new({"uid": user.pk}, 30)
    cache, client = stores.async_redis("shared")
    key = tickets.redis_key(cache, ticket)
    await client.set(key, stores.dumps(cache, record), ex=30)
    comm, connected = await _ticket_handshake(ticket)
    assert connected and await _places(user) == 1
    await comm.disconnect()
    assert await _places(user) == 0


@pytest.mark.django_db(transaction=True)
async def test_a_ticket_offered_by_five_handshakes_at_once_opens_one(one_redis):
    """Replay through the handshake's own request: five handshakes with one ticket, most of
    them in one script call, open one socket and take one place."""
    import asyncio

    from wsauth import tickets

    user = await _user("five-at-once")
    ticket, _ = await tickets.issue({"uid": user.pk})
    results = await asyncio.gather(*(_ticket_handshake(ticket) for _ in range(5)))
    opened = [comm for comm, connected in results if connected]
    assert len(opened) == 1 and await _places(user) == 1
    await opened[0].disconnect()
