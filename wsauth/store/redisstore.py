"""The store on Redis or Valkey: standalone, primary with replicas, Sentinel, Cluster.

Each operation is one command or one script on one hash slot, so the same code runs on
a Cluster (redis-py's ``RedisCluster`` routes each by its key) as on one server. Every
command goes to the primary: a ticket or a revocation marker written a moment ago must
be seen (Sentinel's replicas lag). Scripts are redis-py's ``register_script`` (EVALSHA,
loaded again by redis-py after a restart or a failover to a server without them).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from redis.exceptions import NoScriptError

from ..loops import PerLoop
from .base import Admission, Place, Store
from .connect import RedisSpec

#: KEYS: the counter, the user's places (one hash tag). ARGV: the counter's window (0: no
#: counter), the member ('' : no place), now, the lease's end, the limit (0: none), the
#: places key's TTL. Lapsed places are dropped before counting: a dead process's places
#: lapse with their lease.
ADMIT = """
local count, taken, held = 0, 0, 0
local window = tonumber(ARGV[1])
if window > 0 then
  count = redis.call('INCR', KEYS[1])
  redis.call('EXPIRE', KEYS[1], window, 'NX')
end
if ARGV[2] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
  held = redis.call('ZCARD', KEYS[2])
  local limit = tonumber(ARGV[5])
  if limit == 0 or held < limit then
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
    redis.call('EXPIRE', KEYS[2], ARGV[6])
    taken, held = 1, held + 1
  end
end
return {count, taken, held}
"""

#: KEYS: a counter. ARGV: its window. The window opens at the first hit (EXPIRE NX): no
#: calendar boundary for a burst to straddle.
HIT = """
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1], 'NX')
return count
"""

#: Renewals sent per pipeline (a heartbeat of a process with many users).
RENEW_CHUNK = 500


class RedisStore(Store):
    def __init__(self, spec: RedisSpec, make_key: Callable[[str], str]) -> None:
        super().__init__(make_key)
        self.spec = spec
        self._clients: PerLoop[tuple[Any, Any, Any]] = PerLoop(self._connect)
        self._sync: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> tuple[Any, Any, Any]:
        client = self.spec.async_client()
        return client, client.register_script(ADMIT), client.register_script(HIT)

    @property
    def client(self) -> Any:
        """This event loop's redis.asyncio client."""
        return self._clients.get()[0]

    def sync_client(self) -> Any:
        if self._sync is None:
            with self._lock:
                if self._sync is None:
                    self._sync = self.spec.sync_client()
        return self._sync

    async def admit(
        self,
        counter: tuple[str, int] | None,
        place: Place | None,
        markers: Sequence[str] = (),
    ) -> Admission:
        if counter is None and place is None:
            return Admission(0, False, 0, await self.get_many(markers) if markers else {})
        client, admit, _ = self._clients.get()
        now = time.time()
        # Both KEYS always: the script reads only those its ARGV ask for.
        first = counter[0] if counter is not None else place.key  # type: ignore[union-attr]
        keys = [first, place.key if place is not None else first]
        args: list[Any] = [counter[1] if counter is not None else 0]
        if place is None:
            args += ["", 0, 0, 0, 0]
        else:
            args += [place.member, repr(now), repr(now + place.lease), place.limit or 0]
            args.append(int(place.lease) + 1)
        if not markers:
            reply = await admit(keys=keys, args=args)
            return _admission(reply, {})
        if self.spec.kind == "cluster":  # the markers live in other slots
            reply, found = await asyncio.gather(admit(keys=keys, args=args), self.get_many(markers))
            return _admission(reply, found)
        pipe = client.pipeline(transaction=False)  # one round trip for both
        pipe.evalsha(admit.sha, len(keys), *keys, *args)
        pipe.mget(list(markers))
        reply, values = await pipe.execute(raise_on_error=False)
        if isinstance(reply, NoScriptError):  # a restarted server: redis-py loads it
            reply = await admit(keys=keys, args=args)
        for result in (reply, values):
            if isinstance(result, Exception):
                raise result
        found = {k: _text(v) for k, v in zip(markers, values, strict=True) if v is not None}
        return _admission(reply, found)

    async def hit(self, key: str, window: int) -> int:
        _, _, hit = self._clients.get()
        return int(await hit(keys=[key], args=[window]))

    async def renew(self, places: Mapping[str, Sequence[str]], until: float, ttl: int) -> None:
        items = list(places.items())
        for start in range(0, len(items), RENEW_CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for key, members in items[start : start + RENEW_CHUNK]:
                pipe.zadd(key, dict.fromkeys(members, until))
                pipe.expire(key, ttl)
            await pipe.execute()

    async def release(self, key: str, member: str) -> None:
        await self.client.zrem(key, member)

    async def members(self, key: str, now: float) -> list[tuple[str, float]]:
        rows = await self.client.zrangebyscore(key, f"({now!r}", "+inf", withscores=True)
        return [(_text(m), float(score)) for m, score in rows]

    async def getdel(self, key: str) -> str | None:
        value = await self.client.getdel(key)
        return None if value is None else _text(value)

    async def set(self, key: str, value: str, ttl: int) -> None:
        await self.client.set(key, value, ex=max(1, int(ttl)))

    async def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        client = self.client
        if self.spec.kind == "cluster":  # keys of several slots: one request per node
            values = await client.mget_nonatomic(list(keys))
        else:
            values = await client.mget(list(keys))
        return {k: _text(v) for k, v in zip(keys, values, strict=True) if v is not None}

    def add_sync(self, key: str, ttl: int) -> bool:
        return bool(self.sync_client().set(key, 1, nx=True, ex=max(1, int(ttl))))

    def version_sync(self) -> str | None:
        # A client of its own: short timeouts, and RESP2, which every version answers.
        client = self.spec.sync_client(socket_timeout=2, socket_connect_timeout=2, protocol=2)
        try:
            info = client.info("server")
        finally:
            client.close()
        if self.spec.kind == "cluster":  # {node: info}: the oldest node decides
            # redis-py routes INFO by the server's command tips: to every node, or to one
            # (then the answer is that node's info, not a dict of them).
            infos = [i for i in (info or {}).values() if isinstance(i, dict)] or [info or {}]
            versions = [str(i["redis_version"]) for i in infos if "redis_version" in i]
            return min(versions, key=_version_key) if versions else None
        return str(info["redis_version"])


def _admission(reply: Any, found: dict[str, str]) -> Admission:
    count, taken, held = reply
    return Admission(int(count), bool(taken), int(held), found)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())
