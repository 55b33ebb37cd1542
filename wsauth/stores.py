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
import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.core.cache import BaseCache, caches
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import NoScriptError

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
        _batches.clear()


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


# -- the hot path's Redis commands, in one script, sent together ------------------------------

#: Every hot-path operation in one command (EVALSHA), for any number of requests. Per
#: request: counters to increment (INCR, and EXPIRE NX: the window opens at the first hit),
#: counters to read (GET), revocation markers (MGET), tickets to redeem (GETDEL), socket
#: places given back (ZREM) and a user's socket place (a sorted set by time, entries older
#: than the lease dropped). ARGV: the number of requests, then per request its five
#: counts, its place (member, now, cutoff, TTL; member '' for none), its ticket mode, one
#: window per INCR key and one member per ZREM key; KEYS in the same order, the place's
#: last. Ticket mode 1 or 2: the one redeemed value is a ticket that names, on its first
#: line (a JSON list written at issue), its user's place key and revocation markers; the
#: place is taken there (mode 2: the markers read too), so a ticket handshake is one
#: request like any other, and nothing is taken for a ticket that is gone. Measured:
#: eight pipelined commands cost redis-py about twice the client CPU of one script call.
SCRIPT = """
local out = {}
local k, a = 1, 2
for r = 1, tonumber(ARGV[1]) do
  local n_incr, n_get, n_marks = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local n_take, n_free = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local member, now, cutoff, ttl = ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8]
  local mode = tonumber(ARGV[a + 9])
  a = a + 10
  local hits, peeks, marks, taken = {}, {}, {}, {}
  for j = 1, n_incr do
    hits[j] = redis.call('INCR', KEYS[k])
    redis.call('EXPIRE', KEYS[k], ARGV[a], 'NX')
    k, a = k + 1, a + 1
  end
  for j = 1, n_get do
    peeks[j] = redis.call('GET', KEYS[k])
    k = k + 1
  end
  if n_marks > 0 then
    marks = redis.call('MGET', unpack(KEYS, k, k + n_marks - 1))
    k = k + n_marks
  end
  for j = 1, n_take do
    taken[j] = redis.call('GETDEL', KEYS[k])
    k = k + 1
  end
  for j = 1, n_free do
    redis.call('ZREM', KEYS[k], ARGV[a])
    k, a = k + 1, a + 1
  end
  local place = nil
  if mode > 0 then
    local ticket = taken[1]
    local line = ticket and string.sub(ticket, 1, 1) == '[' and string.find(ticket, '\\n', 1, true)
    if line then
      local named = cjson.decode(string.sub(ticket, 1, line - 1))
      place = named[1]
      if mode == 2 and #named > 1 then
        marks = redis.call('MGET', unpack(named, 2))
      end
    end
  elseif member ~= '' then
    place = KEYS[k]
    k = k + 1
  end
  local count = 0
  if member ~= '' and place then
    redis.call('ZREMRANGEBYSCORE', place, '-inf', cutoff)
    redis.call('ZADD', place, now, member)
    count = redis.call('ZCARD', place)
    redis.call('EXPIRE', place, ttl)
  end
  out[r] = {hits, peeks, marks, taken, count}
end
return out
"""
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest()

#: How long a closing socket's place waits for others to be given back with it.
RELEASE_DELAY = 0.02

#: A request's KEYS and ARGV (without the leading count), as ``SCRIPT`` reads them.
Request = tuple[list[str], list[Any]]


def name_keys(keys: list[str], value: bytes) -> bytes:
    """``value`` with ``keys`` (made) on a first line, as the script's ticket mode reads
    them: a JSON list (a pickled value never starts with ``[``)."""
    return json.dumps(keys).encode() + b"\n" + value


def named_keys(raw: Any) -> tuple[list[str] | None, Any]:
    """``(keys, value)`` from a stored value; ``keys`` is None when it names none."""
    if isinstance(raw, bytes) and raw.startswith(b"["):
        line, _, value = raw.partition(b"\n")
        return json.loads(line), value
    return None, raw


def request(
    *,
    incr: Sequence[tuple[str, int]] = (),
    get: Sequence[str] = (),
    marks: Sequence[str] = (),
    take: Sequence[str] = (),
    free: Sequence[tuple[str, str]] = (),
    place: tuple[str, str, float] | None = None,
    ticket: tuple[str, str | None, float, bool] | None = None,
) -> Request:
    """One request in ``SCRIPT``'s layout, from made keys: ``incr`` (key, window seconds),
    ``get``, ``marks``, ``take`` (GETDEL), ``free`` (key, member) and ``place`` (key,
    member, lease seconds); or, instead of ``take`` and ``place``, ``ticket`` (key, member
    or None, lease, read its markers): redeem it and take the place it names. Its reply:
    hits, peeks, markers, taken values, places."""
    mode = 0
    if ticket is not None:
        take = [ticket[0]]
        member, lease, mode = ticket[1], ticket[2], 2 if ticket[3] else 1
        place = ("", member, lease) if member else None
    keys = [key for key, _ in incr] + [*get, *marks, *take] + [key for key, _ in free]
    args: list[Any] = [len(incr), len(get), len(marks), len(take), len(free)]
    if place is None:
        args += ["", 0, 0, 0]
    else:
        key, member, lease = place
        now = time.time()
        if not mode:
            keys.append(key)
        args += [member, repr(now), repr(now - lease), int(lease) + 1]
    args.append(mode)
    args += [window for _, window in incr]
    args += [member for _, member in free]
    return keys, args


class Batch:
    """Script calls to one Redis from one event loop, sent together (group commit): a
    request goes at once when no call is in flight, else with every request that arrived
    meanwhile, in the next call. Socket places given back ride in the next call, or go in
    one call ``RELEASE_DELAY`` after the first when none comes. Measured: redis-py's
    client CPU per call was wsauth's largest handshake cost (14 % of Daphne's busy samples
    under 50 concurrent handshakes), and a ``ZREM`` per closing socket 5 %."""

    def __init__(self, loop: asyncio.AbstractEventLoop, cache: Any, client: Any) -> None:
        self.loop, self.cache, self.client = loop, cache, client
        self.busy = False  # a call is in flight
        self.waiting: list[tuple[Request, asyncio.Future[Any]]] = []
        self.freed: list[tuple[str, str]] = []
        self.freed_sent: asyncio.Future[None] | None = None
        self.freed_due = False
        self.timer: asyncio.TimerHandle | None = None
        self.drain: asyncio.Task[None] | None = None

    async def run(self, request: Request) -> Any:
        """The request's reply: hits, peeks, markers, taken values, places."""
        if self.busy:  # go with the next call
            future = self.loop.create_future()
            self.waiting.append((request, future))
            return await future
        self.busy = True  # nothing in flight: send it from here, no task to schedule
        try:
            return (await self._call([request]))[0]
        finally:
            self._idle()

    async def take(self, key: str) -> Any:
        """``GETDEL key``: a plain command when nothing is in flight (cheaper than the
        script for one key), else a request in the next call."""
        if self.busy:
            _, _, _, (value,), _ = await self.run(request(take=[key]))
            return value
        self.busy = True
        try:
            return await self.client.getdel(key)
        finally:
            self._idle()

    def give_back(self, key: str, member: str) -> asyncio.Future[None]:
        """Queue a socket place (its made key); the future is done once a call carrying it
        has returned (with the call's exception if it failed)."""
        self.freed.append((key, member))
        if self.freed_sent is None:
            self.freed_sent = self.loop.create_future()
            self.timer = self.loop.call_later(RELEASE_DELAY, self._due)
        return self.freed_sent

    def _due(self) -> None:
        self.timer = None
        self.freed_due = True
        if not self.busy:
            self._idle()

    def _idle(self) -> None:
        self.busy = False
        if self.waiting or self.freed_due:
            self.busy = True
            self.drain = self.loop.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self.waiting or self.freed_due:
                batch, self.waiting = self.waiting, []
                try:
                    answers = await self._call([request for request, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for (_, future), answer in zip(batch, answers, strict=True):
                        if not future.done():  # a handshake that timed out meanwhile
                            future.set_result(answer)
        finally:
            self.busy = False

    async def _call(self, requests: list[Request]) -> list[Any]:
        freed, freed_sent = self.freed, self.freed_sent
        self.freed, self.freed_sent, self.freed_due = [], None, False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if freed:  # first: a place given back before an admission counts as free in it
            requests = [request(free=freed), *requests]
        keys, args = [], [len(requests)]
        for request_keys, request_args in requests:
            keys += request_keys
            args += request_args
        try:
            try:
                reply = await self.client.evalsha(SCRIPT_SHA, len(keys), *keys, *args)
            except NoScriptError:  # a restarted or flushed Redis: load it once, again
                await self.client.script_load(SCRIPT)
                reply = await self.client.evalsha(SCRIPT_SHA, len(keys), *keys, *args)
        except Exception as exc:
            if freed_sent is not None:
                freed_sent.set_exception(exc)
            raise
        if freed_sent is not None:
            freed_sent.set_result(None)
        return list(reply[1:] if freed else reply)


_batches: dict[int, Batch] = {}


def batch(cache: RedisCache, client: Any) -> Batch:
    """The ``Batch`` of ``client`` (from ``async_redis``, which makes one per event loop)."""
    known = _batches.get(id(client))
    if known is None or known.client is not client:
        known = _batches[id(client)] = Batch(asyncio.get_running_loop(), cache, client)
    return known
