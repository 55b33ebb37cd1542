"""wsauth.store.base: the store's interface as a contract, run against both of its
implementations, local memory and a real Redis (tests/test_store_topologies.py runs it
over Sentinel and Cluster too)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.daphne import REDIS_URL
from wsauth.store.base import Place, Store
from wsauth.store.connect import from_setting, prefixer
from wsauth.store.local import LocalStore
from wsauth.store.redisstore import RedisStore

PLACES = "{u1}:sockets"
COUNTER = "{u1}:count"


@pytest.fixture(params=["local", "redis"])
def shared(request) -> Store:
    if request.param == "local":
        return LocalStore(prefixer("t"))
    request.getfixturevalue("redis_url")  # flushed before and after
    return RedisStore(from_setting(REDIS_URL), prefixer("t"))


def test_the_interface_is_abstract():
    with pytest.raises(TypeError):
        Store(prefixer(""))  # type: ignore[abstract]


def test_shared_says_whether_other_processes_see_it(shared):
    assert shared.shared is isinstance(shared, RedisStore)
    assert shared.make_key("k") == "t:k"


async def test_admit_counts_takes_places_up_to_the_limit_and_reads_markers(shared):
    await shared.set("marker:a", "revoked-at-1", 60)
    for n in range(1, 4):
        place = Place(PLACES, f"socket-{n}", 30, 2)
        result = await shared.admit((COUNTER, 60), place, ["marker:a", "marker:b"])
        assert result.count == n
        assert result.taken is (n <= 2)
        assert result.places == min(n, 2)
        assert result.markers == {"marker:a": "revoked-at-1"}


async def test_admit_without_counter_or_limit(shared):
    result = await shared.admit(None, Place(PLACES, "s", 30, None), ())
    assert (result.count, result.taken, result.places, result.markers) == (0, True, 1, {})
    nothing = await shared.admit(None, None, ())
    assert (nothing.count, nothing.taken, nothing.places) == (0, False, 0)


async def test_lapsed_places_are_dropped_before_counting(shared):
    # Two places whose lease already ended (a dead process's), then a limit of one.
    await shared.sync([], {PLACES: (["old-1", "old-2"], [])}, time.time() - 1, 30)
    assert await shared.members(PLACES, time.time()) == []
    result = await shared.admit(None, Place(PLACES, "new", 30, 1), ())
    assert result.taken and result.places == 1


async def test_hit_counts_in_one_window(shared):
    assert [await shared.hit("{a}:hits", 60) for _ in range(3)] == [1, 2, 3]
    assert await shared.hit("{b}:hits", 60) == 1


async def test_sync_adds_deltas_and_applies_place_changes(shared):
    until = time.time() + 30
    totals, held = await shared.sync(
        [("{a}:c", 5, 60), ("{b}:c", 1, 10)], {PLACES: (["s1", "s2"], [])}, until, 30
    )
    assert [t[0] for t in totals] == [5, 1]
    assert 0 < totals[0][1] <= 60 and 0 < totals[1][1] <= 10
    assert held == {PLACES: 2}
    totals, held = await shared.sync([("{a}:c", 2, 60)], {PLACES: ([], ["s1"])}, until, 30)
    assert totals[0][0] == 7
    assert held == {PLACES: 1}
    assert [m for m, _ in await shared.members(PLACES, time.time())] == ["s2"]


async def test_renew_members_and_release(shared):
    now = time.time()
    await shared.sync([], {PLACES: (["early", "late"], [])}, now + 10, 30)
    await shared.renew({PLACES: ["late"]}, now + 100, 130)
    members = await shared.members(PLACES, now)
    assert [m for m, _ in members] == ["early", "late"]  # by the end of their lease
    assert members[1][1] == pytest.approx(now + 100, abs=1)
    assert [m for m, _ in await shared.members(PLACES, now + 50)] == ["late"]
    await shared.release(PLACES, "late")
    await shared.release(PLACES, "never-held")
    assert [m for m, _ in await shared.members(PLACES, now)] == ["early"]


async def test_getdel_gives_the_value_to_exactly_one_of_simultaneous_callers(shared):
    await shared.set("ticket", "record", 30)
    results = await asyncio.gather(*(shared.getdel("ticket") for _ in range(20)))
    assert results.count("record") == 1
    assert results.count(None) == 19
    assert await shared.getdel("never-set") is None


async def test_set_get_many_and_values_matching(shared):
    await shared.set("wsauth:revoked:user:1", "a", 60)
    await shared.set("wsauth:revoked:sub:x", "b", 60)
    await shared.set("other:key", "c", 60)
    assert await shared.get_many(["wsauth:revoked:user:1", "missing"]) == {
        "wsauth:revoked:user:1": "a"
    }
    assert await shared.get_many([]) == {}
    found = await shared.values_matching("wsauth:revoked:*")
    assert found == {"wsauth:revoked:user:1": "a", "wsauth:revoked:sub:x": "b"}


def test_add_sync_is_first_use(shared):
    assert shared.add_sync("jti:1", 30) is True
    assert shared.add_sync("jti:1", 30) is False
    assert shared.add_sync("jti:2", 30) is True


async def test_places_sync_lists_every_users_live_places(shared):
    now = time.time()
    await shared.sync(
        [],
        {"{u1}:sockets": (["a"], []), "{u2}:sockets": (["b", "c"], []), "{x}:other": (["d"], [])},
        now + 30,
        30,
    )
    await shared.sync([], {"{u3}:sockets": (["lapsed"], [])}, now - 1, 30)
    everything = await asyncio.to_thread(shared.places_sync, "{u", "}:sockets", now)
    assert {k: [m for m, _ in v] for k, v in everything.items()} == {
        "{u1}:sockets": ["a"],
        "{u2}:sockets": ["b", "c"],
    }


def test_version_sync(shared):
    version = shared.version_sync()
    if isinstance(shared, LocalStore):
        assert version is None
    else:
        assert version and version[0].isdigit()
