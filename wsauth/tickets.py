"""One-time tickets: 256-bit random, opaque, short-lived, redeemed once on any process.

Tickets live in a Django cache shared by every process (Redis in production). The store
holds only a SHA-256 digest of the ticket as its key, so a dump of the store yields no
usable ticket. With Django's RedisCache, redeeming is one ``GETDEL`` (atomic: exactly
one caller gets the value; Redis 6.2+) on the event loop; with other caches it reads the
entry and then deletes it, and only the caller whose delete removed the entry wins
(``cache.delete`` reports whether the key existed). Either way, of many simultaneous
redeems exactly one succeeds.

When the limits share the tickets' Redis (the default), ``issue`` writes a first line
before the record: the made keys of the user's socket place and revocation markers
(``limits.ticket_keys``). The handshake's store script then redeems the ticket and
admits the socket in the same request (``limits.redeem_admitting``); ``decode`` drops
the line.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from typing import Any

from . import limits, stores
from .conf import get_conf

TICKET_RE = re.compile(r"[A-Za-z0-9_-]{43}")


class TicketStoreError(Exception):
    """The shared store is unreachable: callers answer 503 or refuse, never half-redeem."""


def store_key(ticket: str) -> str:
    """The ticket's cache key (before the cache's prefix): a digest, never the ticket."""
    return get_conf().ticket_key_prefix + hashlib.sha256(ticket.encode()).hexdigest()


def redis_key(cache: Any, ticket: str) -> str:
    """The ticket's key in the Redis of ``cache``. ``make_key``, not
    ``make_and_validate_key``: for Redis the validation only warns about memcached, one
    character at a time, on every handshake."""
    return str(cache.make_key(store_key(ticket)))


def is_well_formed(ticket: Any) -> bool:
    return isinstance(ticket, str) and TICKET_RE.fullmatch(ticket) is not None


def _new(data: dict[str, Any], ttl: int) -> tuple[str, dict[str, Any]]:
    ticket = secrets.token_urlsafe(32)  # 32 bytes: 256 bits, 43 characters
    now = time.time()
    return ticket, {**data, "issued_at": now, "expires_at": now + ttl}


def _valid(record: Any) -> dict[str, Any] | None:
    if not isinstance(record, dict) or record.get("expires_at", 0) <= time.time():
        return None
    return record


def _redeem_sync(ticket: str) -> dict[str, Any] | None:
    cache = stores.cache(get_conf().ticket_cache)
    key = store_key(ticket)
    record = cache.get(key)
    if record is None or not cache.delete(key):
        return None
    return _valid(record)


async def issue(data: dict[str, Any], ttl: int | None = None) -> tuple[str, int]:
    """Store ``data`` under a new ticket; return ``(ticket, lifetime in seconds)``."""
    ttl = ttl or get_conf().ticket_ttl
    ticket, record = _new(data, ttl)
    try:
        shared = stores.async_redis(get_conf().ticket_cache)
        if shared is None:
            cache = stores.cache(get_conf().ticket_cache)
            await stores.run(cache.set, store_key(ticket), record, ttl)
        else:  # on the event loop: no thread hop (see stores.async_redis)
            cache, client = shared
            value = stores.dumps(cache, record)
            named = limits.ticket_keys(record.get("uid"), record.get("claims"))
            if named is not None:  # for the redeeming handshake's store script
                value = stores.name_keys(named, value)
            await client.set(redis_key(cache, ticket), value, ex=ttl)
    except Exception as exc:
        raise TicketStoreError(str(exc)) from exc
    return ticket, ttl


def decode(cache: Any, raw: Any) -> dict[str, Any] | None:
    """A redeemed Redis value's record (without the keys line ``issue`` put first), or
    ``None`` if it is gone or expired."""
    if raw is None:
        return None
    return _valid(stores.loads(cache, stores.named_keys(raw)[1]))


async def redeem(ticket: str) -> dict[str, Any] | None:
    """Return the ticket's data and consume it, or ``None`` if unknown, used or expired."""
    if not is_well_formed(ticket):
        return None
    try:
        shared = stores.async_redis(get_conf().ticket_cache)
        if shared is None:
            return await stores.run(_redeem_sync, ticket)
        # GETDEL: read and delete atomically, so only one caller gets the value; in the
        # store's script, with any other handshakes' requests waiting (stores.Batch).
        cache, client = shared
        raw = await stores.batch(cache, client).take(redis_key(cache, ticket))
    except Exception as exc:
        raise TicketStoreError(str(exc)) from exc
    return decode(cache, raw)
