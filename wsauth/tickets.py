"""One-time tickets: 256-bit random, opaque, short-lived, redeemed once on any process.

Tickets live in a Django cache shared by every process (Redis in production). The store
holds only a SHA-256 digest of the ticket as its key, so a dump of the store yields no
usable ticket. Redeeming reads the entry and then deletes it; only the caller whose
delete removed the entry wins (``cache.delete`` reports whether the key existed, and a
Redis ``DEL`` is atomic), so of many simultaneous redeems exactly one succeeds.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import caches

from .conf import get_conf

TICKET_RE = re.compile(r"[A-Za-z0-9_-]{43}")


class TicketStoreError(Exception):
    """The shared store is unreachable: callers answer 503 or refuse, never half-redeem."""


def _key(ticket: str) -> str:
    return get_conf().ticket_key_prefix + hashlib.sha256(ticket.encode()).hexdigest()


def is_well_formed(ticket: Any) -> bool:
    return isinstance(ticket, str) and TICKET_RE.fullmatch(ticket) is not None


def _issue_sync(data: dict[str, Any], ttl: int) -> str:
    ticket = secrets.token_urlsafe(32)  # 32 bytes: 256 bits, 43 characters
    record = {**data, "issued_at": time.time(), "expires_at": time.time() + ttl}
    caches[get_conf().ticket_cache].set(_key(ticket), record, timeout=ttl)
    return ticket


def _redeem_sync(ticket: str) -> dict[str, Any] | None:
    cache = caches[get_conf().ticket_cache]
    key = _key(ticket)
    record = cache.get(key)
    if record is None or not cache.delete(key):
        return None
    if not isinstance(record, dict) or record.get("expires_at", 0) <= time.time():
        return None
    return record


async def issue(data: dict[str, Any], ttl: int | None = None) -> tuple[str, int]:
    """Store ``data`` under a new ticket; return ``(ticket, lifetime in seconds)``."""
    ttl = ttl or get_conf().ticket_ttl
    try:
        ticket = await sync_to_async(_issue_sync, thread_sensitive=False)(data, ttl)
    except Exception as exc:
        raise TicketStoreError(str(exc)) from exc
    return ticket, ttl


async def redeem(ticket: str) -> dict[str, Any] | None:
    """Return the ticket's data and consume it, or ``None`` if unknown, used or expired."""
    if not is_well_formed(ticket):
        return None
    try:
        return await sync_to_async(_redeem_sync, thread_sensitive=False)(ticket)
    except Exception as exc:
        raise TicketStoreError(str(exc)) from exc
