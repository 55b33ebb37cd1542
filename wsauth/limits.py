"""Abuse limits: handshakes and failed authentications per client address, concurrent
sockets per user, shared by every process through the cache's Redis when there is one.

With Django's ``RedisCache`` each check is one request in the store's Lua script, on the
event loop (``stores.SCRIPT``: an authenticated handshake's checks are one request, and
requests that arrive together share a call). With any other cache backend the
counters live in this process only (as the check ``wsauth.W001`` warns for tickets): fine
for one process and for tests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

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
    """In-process fallback with the same semantics as the Redis script below."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counters: dict[str, tuple[float, int]] = {}
        self.sets: dict[str, dict[str, float]] = {}

    def apply(
        self,
        incr: Sequence[tuple[str, float]],
        get: Sequence[str],
        slot: tuple[str, str] | None,
        lease: float,
    ) -> tuple[list[int], list[int], int]:
        now = time.monotonic()
        with self.lock:
            if len(self.counters) > 100_000:
                self.counters = {k: v for k, v in self.counters.items() if v[0] > now}
            hits = []
            for key, window in incr:
                expires, count = self.counters.get(key, (now + window, 0))
                if expires <= now:
                    expires, count = now + window, 0
                self.counters[key] = (expires, count + 1)
                hits.append(count + 1)
            peeks = []
            for key in get:
                expires, count = self.counters.get(key, (0.0, 0))
                peeks.append(count if expires > now else 0)
            places = 0
            if slot is not None:
                wall = time.time()
                members = self.sets.get(slot[0], {})
                members = {m: t for m, t in members.items() if t > wall - lease}
                members[slot[1]] = wall
                self.sets[slot[0]] = members
                places = len(members)
            return hits, peeks, places

    def remove_member(self, key: str, member: str) -> None:
        with self.lock:
            self.sets.get(key, {}).pop(member, None)


_local = _LocalStore()


@on_reset
def _reset() -> None:
    global _local, _trusted
    _local = _LocalStore()
    _trusted = None


async def _store(
    conf: Conf,
    incr: Sequence[tuple[str, float]],
    get: Sequence[str] = (),
    slot: tuple[str, str] | None = None,
    markers: Sequence[str] = (),
) -> tuple[list[int], list[int], int, dict[str, Any]]:
    """One request to ``RATE_LIMIT_CACHE`` (in one script call with any others waiting:
    ``stores.batch``): increment the ``(key, window)`` counters, read the ``get`` counters,
    take the ``slot`` place, and read revocation ``markers`` (only when the revocation
    cache is this same Redis). Returns hits, peeks, places and the markers found. Raises
    when the store is down."""
    shared = stores.async_redis(conf.rate_limit_cache)
    if shared is None:
        hits, peeks, places = _local.apply(incr, get, slot, conf.socket_lease)
        return hits, peeks, places, {}
    cache, client = shared
    own_markers = list(markers)
    made = stores.request(
        **_counters(cache, incr, get),
        marks=[cache.make_key(k) for k in own_markers],
        place=(cache.make_key(slot[0]), slot[1], conf.socket_lease) if slot else None,
    )
    hits, peeks, values, _, places = await stores.batch(cache, client).run(made)
    found = {k: stores.loads(cache, v) for k, v in zip(own_markers, values, strict=True) if v}
    return [int(h) for h in hits], [int(p or 0) for p in peeks], int(places), found


def _counters(cache: Any, incr: Sequence[tuple[str, float]], get: Sequence[str]) -> dict[str, Any]:
    """The ``incr`` and ``get`` arguments of ``stores.request``, as made keys."""
    return {
        "incr": [(cache.make_key(k), max(1, round(window))) for k, window in incr],
        "get": [cache.make_key(k) for k in get],
    }


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
    message: tuple[int, float] | None  # frames per socket (a token bucket, in the consumer)


_limits: Limits | None = None


def limits(conf: Conf) -> Limits:
    global _limits
    if _limits is None:
        _limits = Limits(
            handshake=parse_rate(conf.handshake_rate),
            failures=parse_rate(conf.failed_auth_rate),
            sockets_per_user=conf.max_sockets_per_user or None,
            message=parse_rate(conf.message_rate),
        )
    return _limits


@on_reset
def _drop_limits() -> None:
    global _limits
    _limits = None


def _address_ops(
    address: str, rules: Limits, failed: bool, count_handshake: bool = True
) -> tuple[list[tuple[str, float]], list[str]]:
    """A handshake from ``address`` counts as one (unless ``count_handshake`` is off: it
    was counted already); a failed one as one failure too, else the failures are only
    read."""
    incr: list[tuple[str, float]] = []
    get: list[str] = []
    if rules.handshake is not None and count_handshake:
        incr.append((_window_key("hs", address, rules.handshake[1]), rules.handshake[1]))
    if rules.failures is not None:
        key = _window_key("fail", address, rules.failures[1])
        if failed:
            incr.append((key, rules.failures[1]))
        else:
            get.append(key)
    return incr, get


def _counts(rules: Limits, values: list[int]) -> tuple[int, int]:
    """``(handshakes, failures)`` from the values of ``_address_ops``, in its order."""
    handshakes = values[0] if rules.handshake is not None and values else 0
    failures = values[-1] if rules.failures is not None and values else 0
    return handshakes, failures


async def check_handshake(address: str, conf: Conf) -> None:
    """Count a handshake from ``address``; raise ``Limited`` over either limit."""
    rules = limits(conf)
    incr, get = _address_ops(address, rules, failed=False)
    if not (incr or get):
        return
    try:
        hits, peeks, _, _ = await _store(conf, incr, get)
    except Exception as exc:  # the store is down: limits fail open, authentication does not
        _store_down(exc)
        return
    limited = _judge_address(address, rules, *_counts(rules, hits + peeks))
    if limited is not None:
        raise limited


async def record_failure(address: str, conf: Conf, counted: bool = False) -> Limited | None:
    """Count a refused handshake from ``address`` (as a handshake, unless ``counted``
    already, and as a failure); return ``Limited`` if the address was already over a limit
    (answer 4429, not 403)."""
    rules = limits(conf)
    incr, _ = _address_ops(address, rules, failed=True, count_handshake=not counted)
    if not incr:
        return None
    hits, _, _, _ = await _store(conf, incr)
    if counted:
        return _judge_address(address, rules, 0, hits[-1] - 1 if rules.failures else 0)
    count, failures = _counts(rules, hits)
    return _judge_address(address, rules, count, failures - 1)


async def count_failure(address: str, conf: Conf, counted: bool = False) -> Limited | None:
    """``record_failure``, logging instead of raising when the store is down (the refusal
    stands anyway)."""
    try:
        return await record_failure(address, conf, counted)
    except Exception as exc:
        logger.error("wsauth: cannot count a failed authentication: %s", exc)
        return None


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
    """A user's place among their concurrent sockets; ``release()`` on disconnect.
    (Slotted: it lives as long as the socket.)"""

    __slots__ = ("conf", "key", "made", "member")

    def __init__(self, key: str, member: str, conf: Conf, made: bool = False) -> None:
        """``made``: ``key`` is already the Redis key (a ticket named it)."""
        self.key, self.member, self.conf, self.made = key, member, conf, made

    async def release(self) -> None:
        """Give the place back; returns once the store has it (with Redis, together with
        other calls: see ``stores.Batch``)."""
        shared = stores.async_redis(self.conf.rate_limit_cache)
        if shared is None:
            _local.remove_member(self.key, self.member)
        else:  # shielded: the future is shared with other sockets
            cache, client = shared
            key = self.key if self.made else cache.make_key(self.key)
            try:
                await asyncio.shield(stores.batch(cache, client).give_back(key, self.member))
            except Exception as exc:  # the place lapses after SOCKET_LEASE
                _store_down(exc)


def _place_key(user_pk: Any) -> str:
    return f"wsauth:sockets:{user_pk}"


async def admit(
    user: Any,
    claims: dict[str, Any] | None,
    issued_at: float | None,
    address: str,
    conf: Conf,
    *,
    count_handshake: bool = True,
) -> SocketSlot | None:
    """After authentication, in one round trip: count the handshake against its address
    (``Limited``), refuse a revoked credential (``revoke.Revoked``), and take one of the
    user's ``MAX_SOCKETS_PER_USER`` places (``Limited``). Without ``count_handshake`` (a
    socket authenticated by its first frame: its handshake was counted then), only the
    last two."""
    rules = limits(conf)
    slot = None
    if rules.sockets_per_user is not None and getattr(user, "is_authenticated", False):
        slot = (_place_key(user.pk), uuid.uuid4().hex)
    incr, get = _address_ops(address, rules, failed=False) if count_handshake else ([], [])
    keys = revoke.marker_keys(user.pk, claims) if conf.revocation_check else {}
    if not (slot or incr or get or keys):
        return None
    # Markers ride in the same command when the revocation cache is the limits' cache.
    together = bool(keys) and _same_redis(conf.rate_limit_cache, conf.revocation_cache)
    hits: list[int] = []
    peeks: list[int] = []
    places, found = 0, dict[str, Any]()
    try:
        hits, peeks, places, found = await _store(
            conf, incr, get, slot, list(keys) if together else []
        )
    except Exception as exc:
        if together:  # revocation fails closed
            raise revoke.Revoked(
                "revocation_store_unavailable", f"cannot check revocation: {exc}"
            ) from exc
        _store_down(exc)  # limits fail open
    if keys and not together:
        found = await revoke.read_markers(keys)
    socket_slot = SocketSlot(slot[0], slot[1], conf) if slot is not None and places else None
    return await _judge(
        user, claims, issued_at, address, rules, hits + peeks, places, found, keys, socket_slot
    )


async def _judge(
    user: Any,
    claims: dict[str, Any] | None,
    issued_at: float | None,
    address: str,
    rules: Limits,
    counts: list[int],
    places: int,
    found: dict[str, Any],
    keys: dict[str, str],
    socket_slot: SocketSlot | None,
) -> SocketSlot | None:
    """An admission's verdict from the store's answer: the address limits, revocation,
    then the user's places; a place taken for a refused socket is given back."""
    try:
        limited = _judge_address(address, rules, *_counts(rules, counts))
        if limited is not None:
            raise limited
        await revoke.settle(found, keys, user.pk, revoke.issued_at_of(claims, issued_at))
        limit = rules.sockets_per_user
        if socket_slot is not None and limit is not None and places > limit:
            raise Limited(
                "too_many_sockets",
                f"user pk={user.pk} has {limit} open sockets (MAX_SOCKETS_PER_USER)",
                first=places == limit + 1,
            )
    except BaseException:  # refused, a database fault in settle(), or the handshake timeout
        if socket_slot is not None:
            await socket_slot.release()
        raise
    return socket_slot


# -- a ticket handshake: redemption and admission in one request ------------------------------


def shared_with_tickets(conf: Conf) -> tuple[Any, Any] | None:
    """``(cache, client)`` of the limits' Redis when tickets live in it too (the default:
    both in TICKET_CACHE), so a ticket handshake can be one request; else None."""
    mine = stores.async_redis(conf.rate_limit_cache)
    if conf.ticket_cache == conf.rate_limit_cache:
        return mine
    tickets = stores.async_redis(conf.ticket_cache)
    return mine if mine is not None and tickets is not None and mine[1] is tickets[1] else None


def ticket_keys(user_pk: Any, claims: dict[str, Any] | None) -> list[str] | None:
    """At issue: the made keys the redeeming handshake's request needs, the user's socket
    place first, then the revocation markers when they are in the same Redis; None when
    tickets and limits are in different stores (the handshake then makes two requests)."""
    conf = get_conf()
    shared = shared_with_tickets(conf) if user_pk is not None else None
    if shared is None:
        return None
    cache = shared[0]
    named = [cache.make_key(_place_key(user_pk))]
    if _same_redis(conf.rate_limit_cache, conf.revocation_cache):
        named += [cache.make_key(k) for k in revoke.marker_keys(user_pk, claims)]
    return named


@dataclass(slots=True)
class TicketAdmission:
    """The store's answer to a ticket handshake's one request (``redeem_admitting``)."""

    raw: Any  # the redeemed value, or None
    counts: list[int]  # the address counters, as for ``admit``
    places: int  # the user's places, this socket's included; 0: none taken
    marks: list[Any]  # the ticket's revocation markers, when read in the same request
    slot: SocketSlot | None  # the place taken, to give back if the handshake is refused
    named: bool  # the ticket named its keys (issued by this version, tickets and limits shared)
    conf: Conf

    async def release(self) -> None:
        if self.slot is not None:
            await self.slot.release()
            self.slot = None


async def redeem_admitting(
    shared: tuple[Any, Any], key: str, address: str, conf: Conf
) -> TicketAdmission:
    """Redeem the ticket stored under ``key`` (made) in ``shared_with_tickets()`` and, in
    the same request, count the handshake against ``address``, take a place in the user's
    sockets and read the revocation markers the ticket names (``ticket_keys``). Raises
    when the store is down."""
    cache, client = shared
    rules = limits(conf)
    incr, get = _address_ops(address, rules, failed=False)
    member = uuid.uuid4().hex if rules.sockets_per_user is not None else None
    together = conf.revocation_check and _same_redis(conf.rate_limit_cache, conf.revocation_cache)
    made = stores.request(
        **_counters(cache, incr, get), ticket=(key, member, conf.socket_lease, together)
    )
    hits, peeks, marks, (raw,), places = await stores.batch(cache, client).run(made)
    named, _ = stores.named_keys(raw)
    slot = None
    if member is not None and places and named:
        slot = SocketSlot(named[0], member, conf, made=True)
    counts = [int(h) for h in hits] + [int(p or 0) for p in peeks]
    return TicketAdmission(raw, counts, int(places), list(marks), slot, bool(named), conf)


async def conclude(
    admission: TicketAdmission,
    user: Any,
    claims: dict[str, Any] | None,
    issued_at: float | None,
    address: str,
) -> SocketSlot | None:
    """``admit``'s verdict for a ticket handshake whose request was ``redeem_admitting``."""
    conf = admission.conf
    if not admission.named:  # a ticket that names no keys: admit the user apart
        rules = limits(conf)
        limited = _judge_address(address, rules, *_counts(rules, admission.counts))
        if limited is not None:
            raise limited
        return await admit(user, claims, issued_at, address, conf, count_handshake=False)
    keys = revoke.marker_keys(user.pk, claims) if conf.revocation_check else {}
    found: dict[str, Any] = {}
    shared = stores.async_redis(conf.rate_limit_cache)
    if keys and shared is not None and len(admission.marks) == len(keys):
        cache = shared[0]
        found = {k: stores.loads(cache, v) for k, v in zip(keys, admission.marks, strict=True) if v}
    elif keys:  # another store, or a ticket issued before its user's markers were named
        try:
            found = await revoke.read_markers(keys)
        except BaseException:
            await admission.release()
            raise
    slot, admission.slot = admission.slot, None
    return await _judge(
        user,
        claims,
        issued_at,
        address,
        limits(conf),
        admission.counts,
        admission.places,
        found,
        keys,
        slot,
    )


def _same_redis(alias: str, other: str) -> bool:
    if alias == other:
        return stores.async_redis(alias) is not None
    mine, theirs = stores.async_redis(alias), stores.async_redis(other)
    return mine is not None and theirs is not None and mine[1] is theirs[1]
