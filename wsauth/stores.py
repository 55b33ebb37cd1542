"""The shared store (a Django cache, Redis in production), reached without waste.

Two measured costs removed here (see docs/performance.md):

- ``django.core.cache.caches[alias]`` is per async context, and every
  ``sync_to_async(thread_sensitive=False)`` call runs in a fresh context: each call built
  a new cache object, a new connection pool and a new TCP connection to Redis (about
  1.4 ms per handshake). One instance per process is kept here instead; Django's Redis
  and local-memory backends are thread-safe.
- The default executor (``min(32, cores + 4)`` threads) is shared with everything else,
  so a burst of handshakes queued the JWKS fetch behind its own store calls until every
  handshake timed out. Store calls get their own pool here, and so does the JWKS fetch.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.core.cache import BaseCache, caches
from django.core.cache.backends.redis import RedisCache

from .conf import on_reset

T = TypeVar("T")

_lock = threading.Lock()
_instances: dict[str, BaseCache] = {}
_executor: ThreadPoolExecutor | None = None


def cache(alias: str) -> BaseCache:
    """The process-wide instance of the cache ``alias``."""
    instance = _instances.get(alias)
    if instance is None:
        with _lock:
            instance = _instances.get(alias)
            if instance is None:
                instance = _instances[alias] = caches.create_connection(alias)
    return instance


@on_reset
def _drop() -> None:
    with _lock:
        _instances.clear()
        _clients.clear()


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="wsauth-store")
    return _executor


async def run(function: Callable[..., T], *args: Any) -> T:
    """Run a blocking store call off the event loop, on wsauth's own threads."""
    return await asyncio.get_running_loop().run_in_executor(_pool(), function, *args)


# -- Redis on the event loop ------------------------------------------------------------------

#: alias -> (event loop, answer): a redis.asyncio client belongs to the loop it was made
#: on; Daphne has one loop, tests make a new one per test.
_clients: dict[str, tuple[asyncio.AbstractEventLoop, tuple[RedisCache, Any] | None]] = {}


def async_redis(alias: str) -> tuple[RedisCache, Any] | None:
    """``(cache, redis.asyncio client)`` when the cache ``alias`` is Django's RedisCache:
    the hot path (counters, markers, tickets) then runs on the event loop, with no thread
    hop and no GIL hand-off (measured: three hops cost more than the rest of wsauth's
    handshake). ``None`` for other backends, which go through ``run``."""
    loop = asyncio.get_running_loop()
    known = _clients.get(alias)
    if known is not None and known[0] is loop:
        return known[1]
    instance = cache(alias)
    answer: tuple[RedisCache, Any] | None = None
    if isinstance(instance, RedisCache):
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(
            instance._servers[0],  # type: ignore[attr-defined]
            max_connections=1000,
            socket_timeout=5,
        )
        answer = (instance, client)
    _clients[alias] = (loop, answer)
    return answer


def first_use(alias: str, namespace: str, value: str, ttl: float) -> bool:
    """Blocking: True the first time ``value`` is seen in ``namespace`` within ``ttl``
    seconds, on any process (``cache.add`` is atomic: Redis ``SET NX``). For replay
    caches (``jti``); the store keeps only a digest of the value."""
    digest = hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()
    return bool(cache(alias).add(f"wsauth:{namespace}:{digest}", 1, timeout=int(ttl) + 1))


def loads(instance: RedisCache, value: Any) -> Any:
    """Decode a value as Django's RedisCache stored it."""
    return _serializer(instance).loads(value)


def dumps(instance: RedisCache, value: Any) -> Any:
    return _serializer(instance).dumps(value)


def _serializer(instance: RedisCache) -> Any:
    return instance._cache._serializer  # type: ignore[attr-defined]
