"""Abuse limits: handshakes and failed authentications per client address, concurrent
sockets per user, shared by every process through the cache's Redis when there is one.

With Django's ``RedisCache`` each check is one pipelined round trip to Redis, made in a
worker thread. With any other cache backend the counters live in this process only (as
the check ``wsauth.W001`` warns for tickets): fine for one process and for tests.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

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


def _redis(conf: Conf) -> tuple[Any, Any] | None:
    cache = caches[conf.rate_limit_cache]
    if isinstance(cache, RedisCache):
        return cache, cache._cache.get_client(write=True)
    return None


def _hit_sync(key: str | None, window: float, peek: str | None, conf: Conf) -> tuple[int, int]:
    """Count one hit on ``key`` (None: none) and read ``peek``: one round trip."""
    shared = _redis(conf)
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
    results = pipe.execute()
    count = int(results[0]) if key is not None else 0
    peeked = results[-1] if peek is not None else None
    return count, int(peeked) if peeked is not None else 0


def _add_member_sync(key: str, member: str, lease: float, conf: Conf) -> int:
    shared = _redis(conf)
    if shared is None:
        return _local.add_member(key, member, lease)
    cache, client = shared
    full, now = cache.make_key(key), time.time()
    pipe = client.pipeline(transaction=False)
    pipe.zremrangebyscore(full, "-inf", now - lease)
    pipe.zadd(full, {member: now})
    pipe.zcard(full)
    pipe.expire(full, int(lease) + 1)
    return int(pipe.execute()[2])


def _remove_member_sync(key: str, member: str, conf: Conf) -> None:
    shared = _redis(conf)
    if shared is None:
        _local.remove_member(key, member)
        return
    cache, client = shared
    client.zrem(cache.make_key(key), member)


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
        count, failures = await sync_to_async(_hit_sync, thread_sensitive=False)(
            count_key, window, peek_key, conf
        )
    except Exception as exc:  # the store is down: limits fail open, authentication does not
        _store_down(exc)
        return
    if rules.failures is not None and failures >= rules.failures[0]:
        raise Limited(
            "too_many_failures",
            f"{failures} failed authentications from {address} in {rules.failures[1]:g} s",
            first=failures == rules.failures[0],
        )
    if rules.handshake is not None and count > rules.handshake[0]:
        raise Limited(
            "too_many_handshakes",
            f"more than {rules.handshake[0]} handshakes from {address} in {window:g} s",
            first=count == rules.handshake[0] + 1,
        )


async def record_failure(address: str, conf: Conf) -> None:
    """Count a failed authentication from ``address`` (the next handshake sees it)."""
    rules = limits(conf)
    if rules.failures is None:
        return
    key = _window_key("fail", address, rules.failures[1])
    await sync_to_async(_hit_sync, thread_sensitive=False)(key, rules.failures[1], None, conf)


class SocketSlot:
    """A user's place among their concurrent sockets; ``release()`` on disconnect."""

    def __init__(self, key: str, member: str, conf: Conf) -> None:
        self.key, self.member, self.conf = key, member, conf

    async def release(self) -> None:
        try:
            await sync_to_async(_remove_member_sync, thread_sensitive=False)(
                self.key, self.member, self.conf
            )
        except Exception as exc:  # the place lapses after SOCKET_LEASE
            _store_down(exc)


async def claim_socket(user: Any, conf: Conf) -> SocketSlot | None:
    """Take one of the user's ``MAX_SOCKETS_PER_USER`` places, or raise ``Limited``."""
    limit = limits(conf).sockets_per_user
    if limit is None or user is None or not getattr(user, "is_authenticated", False):
        return None
    key, member = f"wsauth:sockets:{user.pk}", uuid.uuid4().hex
    # A crashed process cannot release its places: they lapse after SOCKET_LEASE seconds.
    try:
        count = await sync_to_async(_add_member_sync, thread_sensitive=False)(
            key, member, conf.socket_lease, conf
        )
    except Exception as exc:
        _store_down(exc)
        return None
    slot = SocketSlot(key, member, conf)
    if count > limit:
        await slot.release()
        raise Limited(
            "too_many_sockets",
            f"user pk={user.pk} has {limit} open sockets (MAX_SOCKETS_PER_USER)",
            first=count == limit + 1,
        )
    return slot
