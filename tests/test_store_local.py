"""wsauth.store.local: the store in this process's memory (tests/test_store_base.py runs
the shared contract on it): expiry by ttl, bounded growth, a lock for threads."""

from __future__ import annotations

import asyncio
import threading
import time

from wsauth.store.base import Place
from wsauth.store.connect import prefixer
from wsauth.store.local import LocalStore


def test_values_expire_with_their_ttl():
    local = LocalStore(prefixer(""))
    asyncio.run(local.set("gone", "v", 0))
    assert asyncio.run(local.get_many(["gone"])) == {}
    assert asyncio.run(local.getdel("gone")) is None
    assert asyncio.run(local.values_matching("*")) == {}
    assert local.add_sync("gone", 60) is True  # an expired key is free again


def test_a_counter_starts_over_when_its_window_ends():
    local = LocalStore(prefixer(""))
    asyncio.run(local.hit("c", 0))  # a window of 0 s: over at once
    assert asyncio.run(local.hit("c", 60)) == 1
    assert asyncio.run(local.hit("c", 60)) == 2


def test_expired_entries_are_swept_past_the_bound():
    local = LocalStore(prefixer(""))
    now = time.time()
    local._counters = {f"c{n}": (now - 1, 1) for n in range(100_001)}
    local._values = {f"v{n}": (now - 1, "x") for n in range(100_001)}
    asyncio.run(local.admit(("live", 60), None, ()))
    assert list(local._counters) == ["live"]
    assert local._values == {}


def test_releasing_the_last_place_forgets_the_user():
    local = LocalStore(prefixer(""))
    asyncio.run(local.admit(None, Place("{u}:s", "a", 30, None), ()))
    asyncio.run(local.release("{u}:s", "a"))
    assert local._places == {}
    asyncio.run(local.release("{nobody}:s", "a"))


def test_threads_and_loops_share_one_store():
    local = LocalStore(prefixer(""))

    def take(n: int) -> None:
        asyncio.run(local.admit(("c", 60), Place("{u}:s", f"m{n}", 30, 10), ()))

    threads = [threading.Thread(target=take, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert asyncio.run(local.hit("c", 60)) == 21
    assert len(asyncio.run(local.members("{u}:s", time.time()))) == 10  # the limit held


def test_it_is_not_shared_and_has_no_version():
    local = LocalStore(prefixer("p"))
    assert local.shared is False
    assert local.version_sync() is None
    assert local.make_key("k") == "p:k"
