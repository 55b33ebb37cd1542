"""wsauth.admission.places: a user's sockets as places on leases. The member describes
the socket (valid JSON, unique), the heartbeat renews this loop's places, a released
place is given back (or lapses when the store is down), and the registry is read back
per user and for everyone, in local memory and in a real Redis with a key prefix."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid

import pytest

from wsauth import conf as wsauth_conf
from wsauth import store
from wsauth.admission import places


@pytest.fixture
def conf(settings):
    settings.WSAUTH = {**settings.WSAUTH, "LIMITS_SYNC_INTERVAL": 0, "SOCKET_LEASE": 30}
    wsauth_conf.reset()
    yield settings
    wsauth_conf.reset()


@pytest.fixture
def on_redis(conf, redis_url):
    conf.WSAUTH = {**conf.WSAUTH, "REDIS": {"URL": redis_url, "KEY_PREFIX": "pfx"}}
    wsauth_conf.reset()
    return conf


def test_process_id_is_host_and_pid():
    assert places.process_id() == f"{socket.gethostname()}:{os.getpid()}"
    assert places.process_id() is places.process_id()


@pytest.mark.parametrize("pk", [7, "name", uuid.UUID(int=5), None])
def test_describe_is_json_and_unique(pk):
    first = places.describe(pk, "ticket", None, '/ws/chat/"quoted"/', 1.5)
    second = places.describe(pk, "ticket", None, "/ws/", None)
    info = json.loads(first)
    assert info["user"] == (pk if isinstance(pk, int | str) or pk is None else str(pk))
    assert (info["method"], info["origin"], info["path"], info["expires_at"]) == (
        "ticket",
        None,
        '/ws/chat/"quoted"/',
        1.5,
    )
    assert info["process"] == places.process_id()
    assert abs(info["since"] - time.time()) < 60
    assert json.loads(second)["socket"] == info["socket"] + 1
    assert places.socket_id(first) == f"{info['process']}/{info['socket']}"


def test_places_key_has_the_users_hash_tag():
    assert places.places_key(5).startswith("wsauth:{u") and places.places_key(5).endswith(
        "}:sockets"
    )


async def take(user_pk, method="subprotocol"):
    limits = store.get("limits")
    member = places.describe(user_pk, method, "https://a.test", "/ws/", None)
    key = limits.make_key(places.places_key(user_pk))
    await limits.admit(None, store.Place(key, member, 30, None), ())
    place = places.SocketPlace(key, member)
    places.keep(place)
    return place


async def test_sockets_of_and_release(conf):
    first = await take(1, "ticket")
    second = await take(1)
    await take(2)
    mine = await places.sockets_of(1)
    assert [s["method"] for s in mine] == ["ticket", "subprotocol"]  # oldest first
    assert mine[0]["id"] == places.socket_id(first.member)
    assert mine[0]["lease_ends"] > time.time()
    await first.release()
    assert [s["id"] for s in await places.sockets_of(1)] == [places.socket_id(second.member)]
    await second.release()
    assert await places.sockets_of(1) == []


async def test_the_heartbeat_renews_this_loops_places(conf):
    place = await take(3)
    limits = store.get("limits")
    before = (await limits.members(place.key, time.time()))[0][1]
    await places._keeper.get().renew(300)  # what the heartbeat does, with a longer lease
    after = (await limits.members(place.key, time.time()))[0][1]
    assert after > before + 200
    keeper = places._keeper.get()
    assert keeper.task is not None and not keeper.task.done()
    await place.release()
    assert place.key not in keeper.held


async def test_release_with_the_store_down_leaves_the_place_to_lapse(conf, caplog):
    place = await take(4)
    conf.WSAUTH = {**conf.WSAUTH, "REDIS": "redis://127.0.0.1:1/0"}
    wsauth_conf.reset()
    await place.release()
    assert "cannot give a socket place back (it lapses)" in caplog.text
    await places.renew_now()  # nothing held any more: no request


async def test_renewal_failures_are_logged_once_a_minute(conf, caplog):
    place = await take(5)
    conf.WSAUTH = {**conf.WSAUTH, "REDIS": "redis://127.0.0.1:1/0"}
    wsauth_conf.reset()
    await places.renew_now()
    await places.renew_now()
    assert caplog.text.count("cannot renew socket places") == 1
    places._keeper.get().forget(place)


async def test_with_a_sync_interval_the_release_goes_with_the_next_sync(conf):
    place = await take(6)
    conf.WSAUTH = {**conf.WSAUTH, "LIMITS_SYNC_INTERVAL": 3600}
    wsauth_conf.reset()
    from wsauth.admission import sync

    batch = sync.get()
    batch.places[place.key] = sync._Places(held={place.member: True})
    await place.release()
    assert batch.places[place.key].gone == {place.member}
    batch.task.cancel()


def test_described_skips_what_is_not_a_member():
    rows = [("not json", 1.0), ("[1, 2]", 2.0), ('{"process": "h:1", "socket": 3}', 3.0)]
    assert [r["id"] for r in places._described(rows)] == ["h:1/3"]


async def test_all_sockets_on_redis_with_a_key_prefix(on_redis):
    await take(10)
    await take(11)
    every = await asyncio.to_thread(places.all_sockets_sync)
    assert sorted(s["user"] for s in every) == [10, 11]
    limits = store.get("limits")
    assert limits.make_key(places.places_key(10)).startswith("pfx:")
    for pk in (10, 11):
        for socket_info in await places.sockets_of(pk):
            member = next(
                m
                for m, _ in await limits.members(limits.make_key(places.places_key(pk)), 0)
                if places.socket_id(m) == socket_info["id"]
            )
            await places.SocketPlace(limits.make_key(places.places_key(pk)), member).release()
    assert await asyncio.to_thread(places.all_sockets_sync) == []
