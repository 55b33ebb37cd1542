"""Abuse limits: handshakes and failed authentications per client address, concurrent
sockets per user, shared by every process through the cache's Redis when there is one.

With Django's ``RedisCache`` each check is one round trip to Redis on the event loop (an
authenticated handshake's checks are one Lua script). With any other cache backend the
counters live in this process only (as the check ``wsauth.W001`` warns for tickets): fine
for one process and for tests.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError

from . import revoke, stores
from .conf import Conf, get_conf, on_reset

logger = logging.getLogger("wsauth")


def parse_rate(value: Any) -> tuple[int, float] | None:
    """``"60/minute"``, ``"10/s"``, ``"100/30"`` (per 30 s) or ``(count, seconds)``; None:
    no limit. Raises ``ValueError`` with the expected form."""
    if value in (None, "", 0):
        return None
    if isinstance(value, list | tuple) and len(value) == 2:
        count, seconds = int(value[0]), float(value[1])
    elif isinstance(value, str) and "/" in value:
        count_s, _, per = value.partition("/")
        units = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600}
        units["hour"] = 3600
        per = per.strip().lower()
        count = int(count_s)
        seconds = float(units[per]) if per in units else float(per)
    else:
        raise ValueError(f"{value!r} is not a rate: use 'COUNT/second|minute|hour|SECONDS'")
    if count < 1 or seconds <= 0:
        raise ValueError(f"{value!r}: count and period must be positive")
    return count, seconds


# -- client address ---------------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(values: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values)


_trusted: tuple[Network, ...] | None = None


def _is_trusted(address: str, conf: Conf) -> bool:
    global _trusted
    if _trusted is None:
        _trusted = _networks(conf.trusted_proxies)
    if not _trusted:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in _trusted)


def client_address(scope: dict[str, Any], conf: Conf | None = None) -> str:
    """The client's address: the peer, or, when the peer is a trusted proxy
    (``TRUSTED_PROXIES``), the rightmost untrusted ``X-Forwarded-For`` entry."""
    conf = conf or get_conf()
    client = scope.get("client")
    peer = str(client[0]) if client else "-"
    if not _is_trusted(peer, conf):
        return peer
    forwarded = [v for k, v in scope.get("headers") or () if k.lower() == b"x-forwarded-for"]
    hops = [h.strip() for h in b",".join(forwarded).decode("latin-1").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, conf):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage from the client side: count it against the proxy's peer
    return peer


# -- the shared store -------------------------------------------------------------------------


class _LocalStore:
    """In-process fallback with the same semantics as the Redis scripts below."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counters: dict[str, tuple[float, int]] = {}
        self.sets: dict[str, dict[str, float]] = {}

    def hit(self, key: str | None, window: float, peek: str | None) -> tuple[int, int]:
        now = time.monotonic()
        with self.lock:
            if len(self.counters) > 100_000:
                self.counters = {k: v for k, v in self.counters.items() if v[0] > now}
            count = 0
            if key is not None:
                expires, count = self.counters.get(key, (now + window, 0))
                if expires <= now:
                    expires, count = now + window, 0
                count += 1
                self.counters[key] = (expires, count)
            peeked = 0
            if peek is not None:
                pe, pc = self.counters.get(peek, (0.0, 0))
                peeked = pc if pe > now else 0
            return count, peeked

    def add_member(self, key: str, member: str, lease: float) -> int:
        now = time.time()
        with self.lock:
            members = {m: t for m, t in self.sets.get(key, {}).items() if t > now - lease}
            members[member] = now
            self.sets[key] = members
            return len(members)

    def remove_member(self, key: str, member: str) -> None:
        with self.lock:
            self.sets.get(key, {}).pop(member, None)


_local = _LocalStore()


@on_reset
def _reset() -> None:
    global _local, _trusted
    _local = _LocalStore()
    _trusted = None


async def _hit(key: str | None, window: float, peek: str | None, conf: Conf) -> tuple[int, int]:
    """Count one hit on ``key`` (None: none) and read ``peek``: one round trip."""
    shared = stores.async_redis(conf.rate_limit_cache)
    if shared is None:
        return _local.hit(key, window, peek)
    cache, client = shared
    pipe = client.pipeline(transaction=False)
    if key is not None:
        full = cache.make_key(key)
        pipe.incr(full)
        pipe.expire(full, max(1, round(window)), nx=True)
    if peek is not None:
        pipe.get(cache.make_key(peek))
    results = await pipe.execute()
    count = int(results[0]) if key is not None else 0
    peeked = results[-1] if peek is not None else None
    return count, int(peeked) if peeked is not None else 0


def _slot_ops(pipe: Any, full: str, member: str, lease: float) -> None:
    now = time.time()
    pipe.zremrangebyscore(full, "-inf", now - lease)
    pipe.zadd(full, {member: now})
    pipe.zcard(full)
    pipe.expire(full, int(lease) + 1)


async def _add_member(key: str, member: str, lease: float, conf: Conf) -> int:
    shared = stores.async_redis(conf.rate_limit_cache)
    if shared is None:
        return _local.add_member(key, member, lease)
    cache, client = shared
    pipe = client.pipeline(transaction=False)
    _slot_ops(pipe, cache.make_key(key), member, lease)
    return int((await pipe.execute())[2])


async def _remove_member(key: str, member: str, conf: Conf) -> None:
    shared = stores.async_redis(conf.rate_limit_cache)
    if shared is None:
        _local.remove_member(key, member)
        return
    cache, client = shared
    await client.zrem(cache.make_key(key), member)


def _window_key(kind: str, ident: str, window: float) -> str:
    # The window opens at the first hit and lasts ``window`` seconds (the key's TTL): no
    # calendar boundaries, so a burst cannot straddle two windows for twice the limit.
    return f"wsauth:rl:{kind}:{ident}:{window:g}"


# -- the checks -------------------------------------------------------------------------------


_last_store_error = 0.0


def _store_down(exc: Exception) -> None:
    """Log an unreachable store at most once a minute, not once per handshake."""
    global _last_store_error
    now = time.monotonic()
    if now - _last_store_error > 60:
        _last_store_error = now
        logger.error("wsauth: rate-limit store unavailable, limits not enforced: %s", exc)


class Limited(Exception):
    def __init__(self, reason: str, detail: str, first: bool) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.first = first  # the first refusal in this window: log it; stay quiet after


@dataclass(slots=True)
class Limits:
    handshake: tuple[int, float] | None
    failures: tuple[int, float] | None
    sockets_per_user: int | None


_limits: Limits | None = None


def limits(conf: Conf) -> Limits:
    global _limits
    if _limits is None:
        _limits = Limits(
            handshake=parse_rate(conf.handshake_rate),
            failures=parse_rate(conf.failed_auth_rate),
            sockets_per_user=conf.max_sockets_per_user or None,
        )
    return _limits


@on_reset
def _drop_limits() -> None:
    global _limits
    _limits = None


async def check_handshake(address: str, conf: Conf) -> None:
    """Count a handshake from ``address``; raise ``Limited`` over either limit."""
    rules = limits(conf)
    if rules.handshake is None and rules.failures is None:
        return
    count_key = peek_key = None
    window = 0.0
    if rules.handshake is not None:
        window = rules.handshake[1]
        count_key = _window_key("hs", address, window)
    if rules.failures is not None:
        peek_key = _window_key("fail", address, rules.failures[1])
    try:
        count, failures = await _hit(count_key, window, peek_key, conf)
    except Exception as exc:  # the store is down: limits fail open, authentication does not
        _store_down(exc)
        return
    limited = _judge_address(address, rules, count, failures)
    if limited is not None:
        raise limited


async def record_failure(address: str, conf: Conf) -> Limited | None:
    """Count a refused handshake from ``address`` (as a handshake and as a failure);
    return ``Limited`` if the address was already over a limit (answer 4429, not 403)."""
    rules = limits(conf)
    results: list[tuple[int, int]] = []
    for kind, rule in (("hs", rules.handshake), ("fail", rules.failures)):
        if rule is not None:
            results.append(await _hit(_window_key(kind, address, rule[1]), rule[1], None, conf))
        else:
            results.append((0, 0))
    (count, _), (failures, _) = results
    return _judge_address(address, rules, count, failures - 1)


def _judge_address(address: str, rules: Limits, count: int, failures: int) -> Limited | None:
    """``failures`` counted before this handshake; ``count`` including it."""
    if rules.failures is not None and failures >= rules.failures[0]:
        return Limited(
            "too_many_failures",
            f"{failures} failed authentications from {address} in {rules.failures[1]:g} s",
            first=failures == rules.failures[0],
        )
    if rules.handshake is not None and count > rules.handshake[0]:
        return Limited(
            "too_many_handshakes",
            f"more than {rules.handshake[0]} handshakes from {address} in {rules.handshake[1]:g} s",
            first=count == rules.handshake[0] + 1,
        )
    return None


class SocketSlot:
    """A user's place among their concurrent sockets; ``release()`` on disconnect."""

    def __init__(self, key: str, member: str, conf: Conf) -> None:
        self.key, self.member, self.conf = key, member, conf

    async def release(self) -> None:
        try:
            await _remove_member(self.key, self.member, self.conf)
        except Exception as exc:  # the place lapses after SOCKET_LEASE
            _store_down(exc)


#: The admission of one handshake in one command (EVALSHA): the address counters
#: (INCR + EXPIRE NX), the failure counters (GET), the revocation markers (MGET) and the
#: user's socket place (a sorted set by time, entries older than the lease dropped).
#: Eight pipelined commands cost redis-py about twice the client CPU of one script call.
_ADMISSION_LUA = """
local n_incr, n_get, n_marks = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local hits, peeks, marks = {}, {}, {}
local i = 1
for _ = 1, n_incr do
  hits[#hits + 1] = redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], ARGV[4], 'NX')
  i = i + 1
end
for _ = 1, n_get do
  peeks[#peeks + 1] = redis.call('GET', KEYS[i])
  i = i + 1
end
if n_marks > 0 then
  marks = redis.call('MGET', unpack(KEYS, i, i + n_marks - 1))
  i = i + n_marks
end
local count = 0
if ARGV[5] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[7])
  redis.call('ZADD', KEYS[i], ARGV[6], ARGV[5])
  count = redis.call('ZCARD', KEYS[i])
  redis.call('EXPIRE', KEYS[i], ARGV[8])
end
return {hits, peeks, marks, count}
"""
_ADMISSION_SHA = hashlib.sha1(_ADMISSION_LUA.encode(), usedforsecurity=False).hexdigest()


async def _run_script(client: Any, keys: list[str], args: list[Any]) -> Any:
    """EVALSHA, loading the script once per Redis (after a restart or a flush too)."""
    try:
        return await client.evalsha(_ADMISSION_SHA, len(keys), *keys, *args)
    except NoScriptError:
        await client.script_load(_ADMISSION_LUA)
        return await client.evalsha(_ADMISSION_SHA, len(keys), *keys, *args)


async def _admission(
    address_ops: list[tuple[str, str, float]],
    keys: dict[str, str],
    slot: tuple[str, str] | None,
    conf: Conf,
) -> tuple[dict[str, int], dict[str, Any], int]:
    """Address counters (``("incr"|"get", key, window)``), revocation markers and a
    socket place: one pipeline when they share a Redis (the default: TICKET_CACHE)."""
    lshared = stores.async_redis(conf.rate_limit_cache)
    rshared = stores.async_redis(conf.revocation_cache) if keys else lshared
    if lshared is not None and rshared is not None and rshared[1] is lshared[1]:
        cache, client = lshared
        incr = [op for op in address_ops if op[0] == "incr"]
        get = [op for op in address_ops if op[0] == "get"]
        script_keys = [cache.make_key(k) for _, k, _ in incr + get]
        script_keys += [cache.make_key(k) for k in keys]
        if slot is not None:
            script_keys.append(cache.make_key(slot[0]))
        now = time.time()
        args = [
            len(incr),
            len(get),
            len(keys),
            max(1, round(incr[0][2])) if incr else 0,
            slot[1] if slot is not None else "",
            repr(now),
            repr(now - conf.socket_lease),
            int(conf.socket_lease) + 1,
        ]
        try:
            hits, peeks, values, count = await _run_script(client, script_keys, args)
        except Exception as exc:
            if keys:  # revocation fails closed
                raise revoke.Revoked(
                    "revocation_store_unavailable", f"cannot check revocation: {exc}"
                ) from exc
            _store_down(exc)  # limits fail open
            return {}, {}, 0
        counts: dict[str, int] = {}
        for (_, key, _), value in zip(incr + get, list(hits) + list(peeks), strict=True):
            counts[key] = int(value or 0)
        found: dict[str, Any] = {
            k: stores.loads(cache, v) for k, v in zip(keys, values, strict=True) if v
        }
        return counts, found, int(count or 0)
    # Separate stores: one call each.
    counts = {}
    try:
        for op, key, window in address_ops:
            hit, peek = await _hit(
                key if op == "incr" else None, window, None if op == "incr" else key, conf
            )
            counts[key] = hit if op == "incr" else peek
    except Exception as exc:
        _store_down(exc)
        counts = {}
    found = await revoke.read_markers(keys)
    count = 0
    if slot is not None:
        try:
            count = await _add_member(slot[0], slot[1], conf.socket_lease, conf)
        except Exception as exc:
            _store_down(exc)
    return counts, found, count


async def admit(
    user: Any,
    claims: dict[str, Any] | None,
    issued_at: float | None,
    address: str,
    conf: Conf,
) -> SocketSlot | None:
    """After authentication, in one round trip: count the handshake against its address
    (``Limited``), refuse a revoked credential (``revoke.Revoked``), and take one of the
    user's ``MAX_SOCKETS_PER_USER`` places (``Limited``)."""
    rules = limits(conf)
    slot = None
    if rules.sockets_per_user is not None and getattr(user, "is_authenticated", False):
        slot = (f"wsauth:sockets:{user.pk}", uuid.uuid4().hex)
    address_ops: list[tuple[str, str, float]] = []
    hs_key = fail_key = None
    if rules.handshake is not None:
        hs_key = _window_key("hs", address, rules.handshake[1])
        address_ops.append(("incr", hs_key, rules.handshake[1]))
    if rules.failures is not None:
        fail_key = _window_key("fail", address, rules.failures[1])
        address_ops.append(("get", fail_key, rules.failures[1]))
    keys = revoke.marker_keys(user.pk, claims) if conf.revocation_check else {}
    if not (slot or address_ops or keys):
        return None
    counts, found, count = await _admission(address_ops, keys, slot, conf)
    socket_slot = SocketSlot(slot[0], slot[1], conf) if slot is not None and count else None
    try:
        limited = _judge_address(
            address, rules, counts.get(hs_key or "", 0), counts.get(fail_key or "", 0)
        )
        if limited is not None:
            raise limited
        if revoke.judge(found, keys, revoke.issued_at_of(claims, issued_at)):
            await stores.run(revoke.check_active, user.pk)
        limit = rules.sockets_per_user
        if socket_slot is not None and limit is not None and count > limit:
            raise Limited(
                "too_many_sockets",
                f"user pk={user.pk} has {limit} open sockets (MAX_SOCKETS_PER_USER)",
                first=count == limit + 1,
            )
    except (Limited, revoke.Revoked):
        if socket_slot is not None:
            await socket_slot.release()
        raise
    return socket_slot
