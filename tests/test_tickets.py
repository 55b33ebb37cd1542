"""One-time tickets: format, single use, expiry, atomic redeem on a real Redis."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.core.cache import caches

from wsauth import conf as wsauth_conf
from wsauth import tickets


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
    """Sixteen threads, each with its own event loop and so its own connection, redeem
    the same ticket at once: GETDEL gives it to exactly one."""
    for _ in range(5):
        ticket, _ = asyncio.run(tickets.issue({"uid": 42}))
        barrier = threading.Barrier(16)
        wins: list[object] = []

        def redeem(barrier=barrier, wins=wins, ticket=ticket) -> None:
            async def one() -> object:
                barrier.wait()
                return await tickets.redeem(ticket)

            wins.append(asyncio.run(one()))

        threads = [threading.Thread(target=redeem) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 16
        assert sum(1 for w in wins if w is not None) == 1


async def test_redeems_racing_on_one_loop_stay_single_use(redis_tickets):
    issued = [(await tickets.issue({"uid": i}))[0] for i in range(4)]
    offers = [issued[0], *issued, issued[1], issued[1]]
    records = await asyncio.gather(*(tickets.redeem(t) for t in offers))
    won = [r["uid"] for r in records if r is not None]
    assert sorted(won) == [0, 1, 2, 3]  # each ticket once, whoever came first


async def test_a_ticket_record_is_json_and_keeps_non_integer_keys(redis_tickets):
    import uuid

    pk = uuid.uuid4()
    ticket, _ = await tickets.issue({"uid": pk, "claims": {"sub": "a"}})
    record = await tickets.redeem(ticket)
    assert record["uid"] == str(pk) and record["claims"] == {"sub": "a"}


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
