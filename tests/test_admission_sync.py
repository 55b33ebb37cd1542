"""wsauth.admission.sync: limits counted in memory and synced in batches. Two ``Sync``
objects on one real Redis stand for two processes: each sees the other's counts and
places after a flush, a place released during a sync is removed by the next, and a
failed sync loses nothing."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from wsauth import conf as wsauth_conf
from wsauth.admission.sync import Sync, get
from wsauth.conf import get_conf

KEY = "wsauth:rl:t:{203.0.113.9}:60"
PLACES = "wsauth:{uabc}:sockets"


@pytest.fixture
def on_redis(settings, redis_url):
    # A long interval: the background sync sleeps; the tests flush by hand.
    settings.WSAUTH = {**settings.WSAUTH, "REDIS": redis_url, "LIMITS_SYNC_INTERVAL": 3600}
    wsauth_conf.reset()
    yield
    wsauth_conf.reset()


@contextlib.asynccontextmanager
async def processes(n: int):
    made = [Sync() for _ in range(n)]
    try:
        yield made
    finally:
        for sync in made:  # nothing left to sync: each background task ends by itself
            sync.counts.clear()
            sync.places.clear()
            if sync.task is not None and get_conf().limits_sync_interval < 1:
                await sync.task
            elif sync.task is not None:  # asleep for the long interval
                sync.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sync.task


async def test_counts_of_two_processes_add_up_after_a_flush(on_redis):
    async with processes(2) as (a, b):
        assert [a.hit(KEY, 60) for _ in range(3)] == [1, 2, 3]
        assert b.hit(KEY, 60) == 1  # b has not heard of a's hits yet
        await a.flush()
        await b.flush()
        assert b.hit(KEY, 60) == 5  # a's 3, b's 1, this one
        await a.flush()  # b's last hit is not sent yet: a knows of 4
        assert a.hit(KEY, 60) == 5
        await b.flush()
        await a.flush()
        assert a.hit(KEY, 60) == 7


async def test_places_are_limited_across_processes(on_redis):
    async with processes(2) as (a, b):
        assert a.take(PLACES, "a1", 3) == (True, 1)
        assert a.take(PLACES, "a2", 3) == (True, 2)
        await a.flush()
        # b learns of a user's other places when it syncs its own for that user: until
        # then it may overshoot (by what one process admits in one interval).
        assert b.take(PLACES, "b1", 3) == (True, 1)
        await b.flush()
        assert b.take(PLACES, "b2", 3) == (False, 3)
        a.release(PLACES, "a1")
        await a.flush()
        await b.flush()
        assert b.take(PLACES, "b2", 3) == (True, 3)


async def test_a_place_released_during_a_sync_is_removed_by_the_next(on_redis):
    async with processes(2) as (a, b):
        a.take(PLACES, "a1", None)
        flushing = asyncio.ensure_future(a.flush())
        await asyncio.sleep(0)  # the flush has read what to send, not the answer yet
        a.release(PLACES, "a1")
        await flushing
        assert "a1" in a.places[PLACES].gone
        await a.flush()
        await b.flush()
        assert b.places == {} or b.take(PLACES, "b1", 1) == (True, 1)


async def test_a_failed_sync_keeps_the_counts_for_the_next(settings, caplog):
    settings.WSAUTH = {
        **settings.WSAUTH,
        "REDIS": "redis://127.0.0.1:1/0",
        "LIMITS_SYNC_INTERVAL": 3600,
    }
    wsauth_conf.reset()
    async with processes(1) as (a,):
        a.hit(KEY, 60)
        a.hit(KEY, 60)
        await a.flush()
        await a.flush()
        assert caplog.text.count("cannot sync limits with the store") == 1  # once a minute
        count = a.counts[KEY]
        assert (count.delta, count.sending) == (2, 0)
        assert a.hit(KEY, 60) == 3
    wsauth_conf.reset()


async def test_release_of_an_unknown_user_and_a_place_never_sent(on_redis):
    async with processes(1) as (a,):
        a.release("wsauth:{unobody}:sockets", "x")
        a.take(PLACES, "m", None)
        a.release(PLACES, "m")  # never sent: nothing to remove from the store
        assert a.places[PLACES].gone == set()


async def test_one_sync_per_event_loop(on_redis):
    first = get()
    assert get() is first
    first.hit(KEY, 60)
    assert first.task is not None  # the background sync was started
    first.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first.task


async def test_the_background_sync_runs_every_interval(settings, redis_url):
    settings.WSAUTH = {**settings.WSAUTH, "REDIS": redis_url, "LIMITS_SYNC_INTERVAL": 0.01}
    wsauth_conf.reset()
    async with processes(2) as (a, b):
        a.hit(KEY, 60)
        a.hit(KEY, 60)
        while a.counts[KEY].known < 2:  # synced by a's own task, not by the test
            await asyncio.sleep(0.01)
        b.hit(KEY, 60)
        while b.counts[KEY].known < 3:
            await asyncio.sleep(0.01)
    wsauth_conf.reset()
