"""wsauth's store on the Redis deployments people run, against real servers the test
starts: Django's RedisCache (one server, a primary with replicas), django-redis (default
client, SentinelClient), Sentinel with a failover, Cluster with 3 masters, Valkey. Each
runs the same admission: a ticket, the user's socket places, a limit, revocation."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from wsauth import admission, revoke, store, tickets
from wsauth import conf as wsauth_conf
from wsauth.checks import check_redis_version, check_settings
from wsauth.store.redisstore import RedisStore

from . import topology
from .topology import Cluster, RedisServer, Replicated, SentinelSet

redis_cluster = topology.redis_cluster
redis_sentinel = topology.redis_sentinel
redis_replicated = topology.redis_replicated
valkey = topology.valkey

RECOVERY_BUDGET = 30.0


@pytest.fixture
def use(settings) -> Iterator[Any]:
    """``use(CACHES entry, **WSAUTH)``: wsauth's store on that configuration."""

    def configure(cache: dict[str, Any] | None = None, **wsauth: Any) -> None:
        settings.CACHES = {
            "default": cache or {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
        }
        settings.WSAUTH = {**settings.WSAUTH, "MAX_SOCKETS_PER_USER": 2, **wsauth}
        wsauth_conf.reset()

    yield configure
    wsauth_conf.reset()


def sentinel_config(sentinels: SentinelSet) -> dict[str, Any]:
    return {"SENTINELS": sentinels.sentinels, "SERVICE_NAME": sentinels.service_name}


async def exercise(user: Any) -> None:
    """One user's admission on the configured store: ticket, places, revocation."""
    ticket, _ = await tickets.issue({"uid": user.pk, "claims": None})
    record = await tickets.redeem(ticket)
    assert record is not None and record["uid"] == user.pk
    assert await tickets.redeem(ticket) is None  # once
    attempt = admission.Attempt("192.0.2.1", "192.0.2.1", "/ws/echo/", None)
    first = await admission.admit(attempt, user, None, time.time(), method="t", expires_at=None)
    second = await admission.admit(attempt, user, None, time.time(), method="t", expires_at=None)
    assert first is not None and second is not None
    with pytest.raises(admission.Limited):  # MAX_SOCKETS_PER_USER = 2, on the store
        await admission.admit(attempt, user, None, time.time(), method="t", expires_at=None)
    await admission.sync_now()  # counts and places are written in batches
    assert len(await admission.sockets_of(user.pk)) == 2
    await first.release()
    await second.release()
    issued = time.time() - 1
    await revoke.adisconnect_user(user, reason="test")
    with pytest.raises(revoke.Revoked):
        await admission.admit(attempt, user, None, issued, method="t", expires_at=None)


async def new_user() -> Any:
    return await get_user_model().objects.acreate(username="topo-" + uuid.uuid4().hex[:8])


def no_store_problems() -> set[str]:
    return {e.id for e in check_settings()} & {"wsauth.E016", "wsauth.W001"}


@pytest.mark.django_db(transaction=True)
async def test_django_redis_cache_with_replicas_writes_and_reads_the_primary(
    use, redis_replicated: Replicated
):
    servers = [redis_replicated.primary, *redis_replicated.replicas]
    use(
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": [s.url for s in servers],
        }
    )
    shared = store.get("tickets")
    assert isinstance(shared, RedisStore) and shared.spec.url == redis_replicated.primary.url
    await exercise(await new_user())
    assert redis_replicated.primary.client().dbsize() > 0  # markers, counters: the primary
    assert no_store_problems() == set()


@pytest.mark.django_db(transaction=True)
async def test_django_redis_default_client_is_shared_not_per_process(use, redis_url):
    """Before: django-redis silently fell back to per-process counters."""
    use(
        {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": redis_url,
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
        }
    )
    assert store.get("limits").shared
    await exercise(await new_user())
    assert no_store_problems() == set()
    assert [e.id for e in check_redis_version()] == []


@pytest.mark.django_db(transaction=True)
async def test_a_password_in_options_is_used(use):
    with RedisServer() as server:
        server.client().config_set("requirepass", "s3cret")
        use(
            {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": server.url,
                "OPTIONS": {"PASSWORD": "s3cret"},
            }
        )
        await exercise(await new_user())
        use(
            {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": server.url,
                "OPTIONS": {"password": "s3cret"},
            }
        )
        await exercise(await new_user())


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("form", ["django-redis SentinelClient", "WSAUTH REDIS"])
async def test_sentinel_failover(use, redis_sentinel: SentinelSet, form: str):
    """What was written before a failover is honoured after it; writes go to the new
    primary within the budget."""
    if form == "WSAUTH REDIS":
        use(REDIS=sentinel_config(redis_sentinel))
    else:
        use(
            {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": f"redis://{redis_sentinel.service_name}/0",
                "OPTIONS": {
                    "CLIENT_CLASS": "django_redis.client.SentinelClient",
                    "SENTINELS": redis_sentinel.sentinels,
                },
            }
        )
    assert store.get("tickets").spec.kind == "sentinel"  # type: ignore[attr-defined]
    user = await new_user()
    await exercise(user)
    ticket, _ = await tickets.issue({"uid": user.pk})
    issued = time.time() - 1
    redis_sentinel.primary.client().execute_command("WAIT", 1, 2000)  # on the replica too
    old = redis_sentinel.primary.address
    redis_sentinel.failover()
    assert redis_sentinel.primary.address != old
    started = time.monotonic()
    while True:
        try:
            record = await tickets.redeem(ticket)
            break
        except tickets.TicketStoreError:
            assert time.monotonic() - started < RECOVERY_BUDGET
            await asyncio.sleep(0.2)
    assert record is not None and record["uid"] == user.pk  # written before, honoured after
    attempt = admission.Attempt("192.0.2.1", "192.0.2.1", "/", None)
    with pytest.raises(revoke.Revoked) as info:  # the marker written before the failover
        await admission.admit(attempt, user, None, issued, method="t", expires_at=None)
    assert info.value.reason == "revoked"
    await exercise(await new_user())  # and everything works on the new primary


@pytest.mark.django_db(transaction=True)
async def test_cluster_with_three_masters(use, redis_cluster: Cluster):
    use(REDIS={"CLUSTER": redis_cluster.startup_url})
    shared = store.get("limits")
    assert isinstance(shared, RedisStore) and shared.spec.kind == "cluster"
    for _ in range(3):  # users whose keys land on different nodes
        await exercise(await new_user())
    slots = {
        redis_cluster.node_for(k).port for n in redis_cluster.nodes for k in n.client().keys("*")
    }
    assert len(slots) > 1  # the keys really are spread over the masters
    assert [e.id for e in check_redis_version()] == []


@pytest.mark.django_db(transaction=True)
async def test_cluster_user_keys_share_one_slot(use, redis_cluster: Cluster):
    """The place script touches the user's counter and places: one hash tag."""
    from redis.crc import key_slot

    from wsauth.admission.places import places_key
    from wsauth.admission.policies import Rate, UserHandshakeRate

    use(REDIS={"CLUSTER": redis_cluster.startup_url})
    rule = UserHandshakeRate(Rate(5, 60))
    for pk in (1, "abc", uuid.uuid4()):
        tag = admission.user_tag(pk)
        assert key_slot(places_key(pk).encode()) == key_slot(rule.key(tag).encode())


@pytest.mark.django_db(transaction=True)
async def test_valkey(use, valkey: RedisServer):
    use({"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": valkey.url})
    await exercise(await new_user())
    version = store.get("tickets").version_sync()
    assert version is not None and version >= "7.2"  # Valkey 8 reports 7.2.4
    assert [e.id for e in check_redis_version()] == []


@pytest.mark.parametrize(
    ("cache", "expected"),
    [
        (
            {
                "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
                "LOCATION": "127.0.0.1:11211",
            },
            "wsauth.E016",
        ),
        (
            {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "t"},
            "wsauth.E016",
        ),
        (
            {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": "redis://127.0.0.1:6379/0",
                "OPTIONS": {"CLIENT_CLASS": "django_redis.client.ShardClient"},
            },
            "wsauth.E016",
        ),
    ],
)
def test_a_backend_wsauth_cannot_share_fails_check(use, cache, expected):
    use(cache)
    errors = [e for e in check_settings() if e.id == expected]
    assert errors and "WSAUTH['REDIS']" in errors[0].hint


def test_local_memory_is_a_warning_wherever_more_processes_may_run(use, settings):
    settings.DEBUG = False
    use()
    assert "wsauth.W001" in {e.id for e in check_settings()}
    settings.DEBUG = True
    use()
    assert "wsauth.W001" not in {e.id for e in check_settings()}


def test_bad_redis_setting_fails_check(use):
    use(REDIS={"SENTINELS": [("127.0.0.1", 26379)]})
    [error] = [e for e in check_settings() if e.id == "wsauth.E016"]
    assert "SERVICE_NAME" in error.msg
