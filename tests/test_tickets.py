"""One-time tickets: format, single use, expiry, atomic redeem on a real Redis."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.core.cache import caches

from wsauth import conf as wsauth_conf
from wsauth import stores, tickets


@pytest.fixture
def redis_tickets(settings, redis_url):
    settings.CACHES = {
        **settings.CACHES,
        "tickets": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
        },
    }
    settings.WSAUTH = {**settings.WSAUTH, "TICKET_CACHE": "tickets"}
    wsauth_conf.reset()
    yield caches["tickets"]
    wsauth_conf.reset()


async def test_ticket_is_256_bit_opaque_and_single_use(redis_tickets):
    ticket, ttl = await tickets.issue({"uid": 7})
    assert ttl == 30
    assert tickets.is_well_formed(ticket) and len(ticket) == 43
    assert (await tickets.redeem(ticket))["uid"] == 7
    assert await tickets.redeem(ticket) is None


async def test_store_never_holds_the_ticket_itself(redis_tickets, redis_url):
    import redis

    ticket, _ = await tickets.issue({"uid": 1})
    keys = redis.Redis.from_url(redis_url).keys("*")
    assert keys and not any(ticket.encode() in k for k in keys)


async def test_unknown_and_malformed_tickets(redis_tickets):
    assert await tickets.redeem("A" * 43) is None
    for bad in ["", "short", "A" * 44, "A" * 42 + "!", None, 5]:
        assert await tickets.redeem(bad) is None


async def test_ticket_expires_after_its_lifetime(redis_tickets):
    ticket, _ = await tickets.issue({"uid": 1}, ttl=1)
    await asyncio.sleep(1.3)
    assert await tickets.redeem(ticket) is None


def test_simultaneous_redeem_exactly_one_wins(redis_tickets):
    # The get-then-delete path of caches other than Redis, raced on a cache every thread
    # shares (Redis, written through Django's cache API as that path's issue() does).
    cache = stores.cache("tickets")
    for _ in range(5):
        ticket, record = tickets._new({"uid": 42}, 30)
        cache.set(tickets.store_key(ticket), record, 30)
        barrier = threading.Barrier(16)
        wins: list[object] = []

        def redeem(barrier=barrier, wins=wins, ticket=ticket) -> None:
            barrier.wait()
            wins.append(tickets._redeem_sync(ticket))

        threads = [threading.Thread(target=redeem) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(1 for w in wins if w is not None) == 1


async def test_redeems_on_the_event_loop_share_a_call_and_stay_single_use(
    redis_tickets, script_calls
):
    """Redemptions that arrive while one is in flight go together in one script call
    (stores.Batch); a ticket offered several times in that call goes to exactly one."""
    from wsauth import stores

    issued = [(await tickets.issue({"uid": i}))[0] for i in range(4)]
    _, client = stores.async_redis("tickets")
    calls = script_calls(client)
    offers = [issued[0], *issued, issued[1], issued[1]]  # the first alone, then 6 together
    records = await asyncio.gather(*(tickets.redeem(t) for t in offers))
    assert len(calls) == 1 and calls[0][1] == 6  # the first was a plain GETDEL
    assert records[0]["uid"] == 0 and records[1] is None  # issued[0] twice: once
    assert [r["uid"] for r in records[2:5]] == [1, 2, 3]
    assert records[5:] == [None, None]  # issued[1] again, in the same call


async def test_store_down_raises_store_error(settings):
    settings.CACHES = {
        **settings.CACHES,
        "dead": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        },
    }
    settings.WSAUTH = {**settings.WSAUTH, "TICKET_CACHE": "dead"}
    wsauth_conf.reset()
    with pytest.raises(tickets.TicketStoreError):
        await tickets.issue({"uid": 1})
    with pytest.raises(tickets.TicketStoreError):
        await tickets.redeem("A" * 43)
    wsauth_conf.reset()
