"""wsauth.store.redisstore: what the Redis store does beyond the shared contract
(tests/test_store_base.py): scripts reloaded after SCRIPT FLUSH, markers read in the
same round trip, keys read from the primary, glob characters in SCAN patterns, the
server's version, and one client per event loop."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from wsauth.store.base import Place
from wsauth.store.connect import RedisSpec, from_setting, prefixer
from wsauth.store.redisstore import RedisStore, _glob_escape, _version_key


@pytest.fixture
def shared(redis_url) -> RedisStore:
    return RedisStore(from_setting(redis_url), prefixer(""))


@pytest.fixture
def raw(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


async def test_admit_with_markers_after_the_scripts_were_flushed(shared, raw):
    await shared.set("m:1", "marker", 60)
    first = await shared.admit(("{u}:c", 60), Place("{u}:s", "a", 30, None), ["m:1"])
    assert (first.count, first.taken, first.markers) == (1, True, {"m:1": "marker"})
    raw.script_flush()  # a restarted server, or a failover to one without them
    again = await shared.admit(("{u}:c", 60), Place("{u}:s", "b", 30, None), ["m:1", "m:2"])
    assert (again.count, again.places, again.markers) == (2, 2, {"m:1": "marker"})
    assert await shared.hit("{u}:c", 60) == 3
    raw.script_flush()
    assert await shared.hit("{u}:c", 60) == 4


async def test_keys_expire_with_their_windows_and_leases(shared, raw):
    await shared.admit(("{u}:c", 60), Place("{u}:s", "a", 30, 5), ())
    assert 0 < raw.ttl("{u}:c") <= 60
    assert 0 < raw.ttl("{u}:s") <= 31
    await shared.set("v", "x", 0)  # at least a second, never "no expiry"
    assert raw.ttl("v") == 1
    assert shared.add_sync("nx", 0) is True and raw.ttl("nx") == 1


async def test_places_are_scored_by_the_end_of_their_lease(shared, raw):
    before = time.time()
    await shared.admit(None, Place("{u}:s", "member", 30, None), ())
    ((member, score),) = raw.zrange("{u}:s", 0, -1, withscores=True)
    assert member == b"member"
    assert before + 30 <= score <= time.time() + 30


def test_places_sync_escapes_glob_characters(shared, raw):
    now = time.time()
    raw.zadd("{u[1]}:sockets", {"a": now + 30})
    raw.zadd("{u1}:sockets", {"b": now + 30})
    found = shared.places_sync("{u[1]", "}:sockets", now)
    assert list(found) == ["{u[1]}:sockets"]


def test_glob_escape_and_version_order():
    assert _glob_escape("a*b?c[d]e\\") == "a\\*b\\?c\\[d\\]e\\\\"
    assert min(["7.2.4", "7.10.0", "6.2.14"], key=_version_key) == "6.2.14"
    assert _version_key("7.2.4") < _version_key("7.10.0")


def test_version_sync_reads_the_server(shared, raw):
    assert shared.version_sync() == raw.info("server")["redis_version"]


def test_an_unreachable_server_raises():
    down = RedisStore(RedisSpec("url", url="redis://127.0.0.1:1/0"), prefixer(""))
    with pytest.raises(redis.ConnectionError):
        down.version_sync()
    with pytest.raises(redis.ConnectionError):
        down.add_sync("k", 1)
    with pytest.raises(redis.ConnectionError):
        asyncio.run(down.getdel("k"))


def test_one_async_client_per_event_loop_and_one_sync_client(shared):
    async def client():
        return shared.client

    async def same_loop():
        return shared.client is shared.client

    assert asyncio.run(same_loop())
    assert asyncio.run(client()) is not asyncio.run(client())
    assert shared.sync_client() is shared.sync_client()


def test_values_matching_reads_more_than_one_batch(shared, raw):
    raw.mset({f"bulk:{n}": str(n) for n in range(2500)})
    found = asyncio.run(shared.values_matching("bulk:*"))
    assert len(found) == 2500 and found["bulk:2499"] == "2499"
