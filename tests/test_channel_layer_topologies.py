"""What channels-redis and redis-py do on real Sentinel, Cluster and Valkey deployments:
the evidence behind the README's topology table. Real processes, no mocks."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.crc import key_slot
from redis.exceptions import ClusterCrossSlotError, MovedError, RedisClusterException

from . import topology
from .topology import Cluster, RedisServer, SentinelSet

# The fixtures, bound by assignment (an import would make ruff see each test's parameter
# as a redefinition, F811).
redis_cluster = topology.redis_cluster
redis_sentinel = topology.redis_sentinel
valkey = topology.valkey

#: Longest a client may take to follow a failover.
RECOVERY_BUDGET = 30.0


def prefix() -> str:
    """A key prefix of the test's own (module-scoped servers are shared)."""
    return f"t{uuid.uuid4().hex[:8]}"


async def round_trip(layer: Any, group: str = "room") -> dict[str, Any]:
    """group_add, group_send, receive on a fresh channel: the message received."""
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    await layer.group_send(group, {"type": "chat.message", "text": "hi"})
    message: dict[str, Any] = await asyncio.wait_for(layer.receive(channel), 3)
    return message


async def until_ok(
    attempt: Callable[[], Awaitable[object]], budget: float = RECOVERY_BUDGET
) -> tuple[float, list[str]]:
    """Retry ``attempt`` until it succeeds: (seconds it took, the errors seen)."""
    start = time.monotonic()
    errors: list[str] = []
    while True:
        try:
            await asyncio.wait_for(attempt(), 5)
            return time.monotonic() - start, errors
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}"[:120])
            if time.monotonic() - start > budget:
                pytest.fail(f"no recovery within {budget} s; errors: {errors[:3]}...{errors[-3:]}")
            await asyncio.sleep(0.1)


# --- Sentinel -----------------------------------------------------------------------------


def sentinel_layer(deployment: SentinelSet) -> RedisChannelLayer:
    # socket_timeout above the layer's 5 s blocking read (channels_redis#422).
    host = {
        "sentinels": deployment.sentinels,
        "master_name": deployment.service_name,
        "socket_timeout": 10,
    }
    return RedisChannelLayer(hosts=[host], prefix=prefix())


async def switch(deployment: SentinelSet, how: str) -> float:
    """Run ``failover`` or ``kill_primary`` (in a thread: the loop keeps serving):
    the seconds it took."""
    start = time.monotonic()
    old = deployment.primary.address
    assert await asyncio.to_thread(getattr(deployment, how)) != old
    return time.monotonic() - start


SWITCHES = pytest.mark.parametrize("how", ["failover", "kill_primary"])


@SWITCHES
async def test_channel_layer_on_sentinel_follows_primary(
    redis_sentinel: SentinelSet, how: str
) -> None:
    layer = sentinel_layer(redis_sentinel)
    try:
        assert (await round_trip(layer))["text"] == "hi"
        switched = await switch(redis_sentinel, how)
        took, errors = await until_ok(lambda: round_trip(layer))
        report = f"{how}() took {switched:.2f} s, then working after {took:.2f} s; {errors}"
        assert took < RECOVERY_BUDGET, report
        print("RedisChannelLayer on Sentinel:", report)
    finally:
        await layer.close_pools()


@SWITCHES
async def test_sentinel_master_for_follows_primary(redis_sentinel: SentinelSet, how: str) -> None:
    """wsauth's own client: writes reach the new primary within the budget."""
    sentinel = Sentinel(redis_sentinel.sentinels, socket_timeout=1)
    master = sentinel.master_for(redis_sentinel.service_name, socket_timeout=1)
    try:
        await master.set("k", "before")
        switched = await switch(redis_sentinel, how)
        new_primary = redis_sentinel.primary
        written = itertools.count()

        async def write() -> None:
            value = f"after-{next(written)}"
            await master.set("k", value)
            with new_primary.client() as check:
                assert check.get("k") == value.encode(), "write did not reach the new primary"

        took, errors = await until_ok(write)
        report = f"{how}() took {switched:.2f} s, then writing after {took:.2f} s; {errors}"
        assert took < RECOVERY_BUDGET, report
        print("Sentinel.master_for:", report)
    finally:
        await master.aclose()
        for client in sentinel.sentinels:
            await client.aclose()


# --- Cluster ------------------------------------------------------------------------------


async def delivered(layer: Any, channel: str, send: Callable[[], Awaitable[None]]) -> Any:
    """Send until ``layer`` receives on ``channel``: a SUBSCRIBE is not acknowledged before
    new_channel()/group_add() return. One receive() throughout: cancelling it unsubscribes."""
    receiving = asyncio.ensure_future(layer.receive(channel))
    deadline = time.monotonic() + 5
    try:
        while not receiving.done() and time.monotonic() < deadline:
            await send()
            await asyncio.wait({receiving}, timeout=0.2)
        assert receiving.done(), "not delivered within 5 s"
        return receiving.result()
    finally:
        receiving.cancel()


async def test_pubsub_layer_across_cluster_nodes(redis_cluster: Cluster) -> None:
    """Two RedisPubSubChannelLayer on different nodes: Cluster forwards PUBLISH to all."""
    p = prefix()
    a = RedisPubSubChannelLayer(hosts=[redis_cluster.nodes[0].url], prefix=p)
    b = RedisPubSubChannelLayer(hosts=[redis_cluster.nodes[1].url], prefix=p)
    try:
        in_b = await b.new_channel()
        await b.group_add("room", in_b)
        message = await delivered(b, in_b, lambda: a.group_send("room", {"type": "g", "n": 1}))
        assert message == {"type": "g", "n": 1}

        in_a = await a.new_channel()
        message = await delivered(a, in_a, lambda: b.send(in_a, {"type": "d", "n": 2}))
        assert message == {"type": "d", "n": 2}
    finally:
        await a.flush()
        await b.flush()


def names(make: Callable[[int], str], want: Callable[[str], bool], count: int = 1) -> list[str]:
    """The first ``count`` names ``make(i)`` for which ``want`` holds."""
    found = list(itertools.islice(filter(want, map(make, range(10_000))), count))
    assert len(found) == count
    return found


async def test_channel_layer_on_cluster_node_fails(redis_cluster: Cluster) -> None:
    """RedisChannelLayer speaks to one node as if it held every key: each operation works
    only when all the keys it touches hash to that node, and to one slot for scripts and
    pipelines."""
    node = redis_cluster.nodes[0]
    p = prefix()
    layer = RedisChannelLayer(hosts=[{"address": node.url, "socket_timeout": 10}], prefix=p)
    local = lambda key: redis_cluster.node_for(key) is node  # noqa: E731

    def group_key(group: str) -> bytes:
        return f"{p}:group:{group}".encode()

    try:
        # A group whose key lives on another node: MOVED, redirect not followed.
        [remote_group] = names(lambda i: f"g{i}", lambda g: not local(group_key(g)))
        with pytest.raises(MovedError) as moved:
            await layer.group_add(remote_group, "chan")
        owner = redis_cluster.node_for(group_key(remote_group))
        assert (moved.value.slot_id, moved.value.port) == (
            key_slot(group_key(remote_group)),
            owner.port,
        )

        # group_send to two channels whose keys are on this node but in different slots.
        [group] = names(lambda i: f"g{i}", lambda g: local(group_key(g)))
        channels = names(lambda i: f"c{i}", lambda c: local(p + c), count=2)
        assert key_slot((p + channels[0]).encode()) != key_slot((p + channels[1]).encode())
        for channel in channels:
            await layer.group_add(group, channel)  # single-key commands on this node: fine
        with pytest.raises(
            ClusterCrossSlotError, match="Keys in request don't hash to the same slot"
        ):
            await layer.group_send(group, {"type": "m"})

        # receive(): a script given its keys as ARGV; the backup key "<channel>$inflight"
        # is elsewhere: refused even though the channel's own key is on this node.
        [channel] = names(
            lambda i: f"r{i}", lambda c: local(p + c) and not local(f"{p}{c}$inflight")
        )
        await layer.send(channel, {"type": "m"})  # a single key on this node: fine
        with pytest.raises(redis.ResponseError, match="non local key in a cluster node"):
            await layer.receive(channel)
    finally:
        await layer.close_pools()


async def test_channel_layer_round_trip_on_each_cluster_node(redis_cluster: Cluster) -> None:
    """The ordinary flow with a random channel fails on at least 2 of the 3 nodes: its
    group, channel and backup keys sit in three slots, and only a node holding all
    three could serve it."""
    outcomes: list[str] = []
    for node in redis_cluster.nodes:
        layer = RedisChannelLayer(
            hosts=[{"address": node.url, "socket_timeout": 10}], prefix=prefix()
        )
        try:
            await round_trip(layer)
            outcomes.append("ok")
        except redis.ResponseError as error:  # MovedError, ClusterCrossSlotError, scripts
            outcomes.append(f"{type(error).__name__}: {error}"[:100])
        finally:
            await layer.close_pools()
    assert outcomes.count("ok") <= 1, outcomes
    print("RedisChannelLayer on each cluster node:", outcomes)


SET_BOTH = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[1])
return redis.call('GET', KEYS[2])
"""


async def test_cluster_scripts_need_one_slot(redis_cluster: Cluster) -> None:
    """register_script works for keys sharing a hash tag; keys of different slots are
    refused by redis-py before sending, and by the server (CROSSSLOT) if sent anyway."""
    client = RedisCluster.from_url(redis_cluster.startup_url)
    try:
        script = client.register_script(SET_BOTH)
        tag = prefix()
        assert await script(keys=[f"{{{tag}}}:a", f"{{{tag}}}:b"], args=["v"]) == b"v"

        a, b = f"{tag}:a", f"{tag}:b"
        assert key_slot(a.encode()) != key_slot(b.encode())
        with pytest.raises(RedisClusterException, match="all keys must map to the same key slot"):
            await script(keys=[a, b], args=["v"])
        with redis_cluster.node_for(a).client() as direct:
            with pytest.raises(ClusterCrossSlotError, match="don't hash to the same slot"):
                direct.eval(SET_BOTH, 2, a, b, "v")
    finally:
        await client.aclose()


# --- Valkey -------------------------------------------------------------------------------


async def test_channel_layer_on_valkey(valkey: RedisServer) -> None:
    assert "valkey_version" in valkey.info("server")
    layer = RedisChannelLayer(
        hosts=[{"address": valkey.url, "socket_timeout": 10}], prefix=prefix()
    )
    try:
        assert (await round_trip(layer))["text"] == "hi"
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "direct"})
        assert (await asyncio.wait_for(layer.receive(channel), 3))["type"] == "direct"
    finally:
        await layer.close_pools()
