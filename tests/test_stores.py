"""wsauth.stores: blocking store calls on wsauth's own threads, and ``first_use``, the
replay cache (SET NX) over local memory and over a real Redis."""

from __future__ import annotations

import asyncio
import threading

import pytest
import redis

from wsauth import conf as wsauth_conf
from wsauth import stores


@pytest.fixture(autouse=True)
def fresh_conf():
    wsauth_conf.reset()
    yield
    wsauth_conf.reset()


async def test_run_uses_wsauths_own_threads_not_the_default_executor():
    def where() -> str:
        return threading.current_thread().name

    names = await asyncio.gather(*(stores.run(where) for _ in range(4)))
    assert all(name.startswith("wsauth-store") for name in names)
    assert stores._pool() is stores._pool()  # one pool per process


async def test_run_passes_arguments_and_raises_what_the_call_raises():
    assert await stores.run(divmod, 7, 2) == (3, 1)
    with pytest.raises(ZeroDivisionError):
        await stores.run(divmod, 1, 0)


def test_first_use_in_local_memory():
    assert stores.first_use("default", "test-ns", "value-1", 60) is True
    assert stores.first_use("default", "test-ns", "value-1", 60) is False
    assert stores.first_use("default", "other-ns", "value-1", 60) is True
    assert stores.first_use("default", "test-ns", "value-2", 60) is True


@pytest.fixture
def redis_cache(settings, redis_url):
    settings.CACHES = {
        **settings.CACHES,
        "shared": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url},
    }
    wsauth_conf.reset()
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_first_use_through_redis_is_seen_by_another_process_and_keeps_only_a_digest(redis_cache):
    secret = "a-jti-that-must-not-be-stored"
    assert stores.first_use("shared", "test-ns", secret, 30) is True
    wsauth_conf.reset()  # a fresh store object and connection, as in another process
    assert stores.first_use("shared", "test-ns", secret, 30) is False
    keys = list(redis_cache.scan_iter(match="*test-ns*"))
    assert len(keys) == 1
    assert secret.encode() not in keys[0]
    assert redis_cache.get(keys[0]) is not None
    # Kept for the ttl plus a second of rounding, not forever.
    assert 30 <= redis_cache.ttl(keys[0]) <= 31


def test_first_use_with_non_utf8_text(redis_cache):
    lone = "\udcff-surrogate"  # as a percent-decoded header may hold
    assert stores.first_use("shared", "test-ns", lone, 5) is True
    assert stores.first_use("shared", "test-ns", lone, 5) is False
