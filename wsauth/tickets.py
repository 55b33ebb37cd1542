"""One-time tickets: 256-bit random, opaque, short-lived, redeemed once on any process.

Tickets live in the shared store (``TICKET_CACHE``'s Redis, or ``WSAUTH["REDIS"]``) under
a SHA-256 digest of the ticket, so a dump of the store yields no usable ticket.
Redeeming is one ``GETDEL`` on the primary: atomic, so of many simultaneous redeems
exactly one gets the record, and nothing else is done to the store before it; a refusal
after it (origin, user) cannot leave the ticket half-used.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from typing import Any

from . import metrics, store
from .conf import get_conf
from .errors import StoreUnavailable

TICKET_RE = re.compile(r"[A-Za-z0-9_-]{43}")
#: Seconds the store keeps a ticket past its life: a late redemption is then told (and
#: counted) as expired, not unknown. Its ``expires_at`` still refuses it.
EXPIRED_GRACE = 60


class TicketStoreError(StoreUnavailable):
    """The shared store is unreachable: callers answer 503 or refuse, never half-redeem."""


def store_key(ticket: str) -> str:
    """The ticket's key (before the store's prefix): a digest, never the ticket."""
    return get_conf().ticket_key_prefix + hashlib.sha256(ticket.encode()).hexdigest()


def is_well_formed(ticket: Any) -> bool:
    return isinstance(ticket, str) and TICKET_RE.fullmatch(ticket) is not None


def _valid(record: Any) -> dict[str, Any] | None:
    if not isinstance(record, dict) or record.get("expires_at", 0) <= time.time():
        return None
    return record


async def issue(data: dict[str, Any], ttl: int | None = None) -> tuple[str, int]:
    """Store ``data`` (JSON-serialisable) under a new ticket; ``(ticket, lifetime s)``."""
    ttl = ttl or get_conf().ticket_ttl
    ticket = secrets.token_urlsafe(32)  # 32 bytes: 256 bits, 43 characters
    now = time.time()
    record = {**data, "issued_at": now, "expires_at": now + ttl}
    tickets = store.get("tickets")
    try:
        value = json.dumps(record, default=str)  # a UUID or other pk as text
        await tickets.set(tickets.make_key(store_key(ticket)), value, ttl + EXPIRED_GRACE)
    except Exception as exc:
        raise TicketStoreError(str(exc)) from exc
    metrics.ticket("issued")
    return ticket, ttl


async def redeem(ticket: str) -> dict[str, Any] | None:
    """Return the ticket's data and consume it, or ``None`` if unknown, used or expired.
    Raises ``TicketStoreError`` when the store cannot be reached."""
    if not is_well_formed(ticket):
        metrics.ticket("invalid")
        return None
    tickets = store.get("tickets")
    try:
        raw = await tickets.getdel(tickets.make_key(store_key(ticket)))
    except Exception as exc:
        raise TicketStoreError(str(exc)) from exc
    if raw is None:
        metrics.ticket("invalid")
        return None
    try:
        found = json.loads(raw)
    except ValueError:
        metrics.ticket("invalid")
        return None
    record = _valid(found)
    metrics.ticket("expired" if record is None else "redeemed")
    return record
