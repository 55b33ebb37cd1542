"""Limits counted in this process and synced with the deployment in batches.

A handshake asks memory only: each counter and each user's socket places are counted
here, and every ``LIMITS_SYNC_INTERVAL`` one store request per node sends what this
process counted since and reads back the deployment's totals (as Kong's rate-limiting
``sync_rate`` and Envoy's local-plus-global limits do). A limit can thus be overshot by
at most (processes x what one process admits in one interval); ``LIMITS_SYNC_INTERVAL
= 0`` makes every check one store request instead (exact).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from .. import store
from ..conf import get_conf
from ..loops import PerLoop

logger = logging.getLogger("wsauth")


class _Count:
    """One counter's window: the deployment's count at the last sync (``known``), this
    process's hits in the request in flight (``sending``) and since (``delta``)."""

    __slots__ = ("delta", "ends", "known", "sending", "window")

    def __init__(self, window: int, now: float) -> None:
        self.window, self.ends = window, now + window
        self.known = self.sending = self.delta = 0


@dataclass(slots=True)
class _Places:
    """One user's places as this process knows them."""

    held: dict[str, bool] = field(default_factory=dict)  # member: sent to the store
    gone: set[str] = field(default_factory=set)  # released, still in the store
    others: int = 0  # other processes' places at the last sync


class Sync:
    def __init__(self) -> None:
        self.counts: dict[str, _Count] = {}
        self.places: dict[str, _Places] = {}
        self.task: asyncio.Task[None] | None = None
        self.failing_since: float | None = None

    # -- what a handshake asks (no I/O) -------------------------------------------------------

    def hit(self, key: str, window: int) -> int:
        """Count one; the deployment's count as this process knows it, this one included."""
        now = time.time()
        count = self.counts.get(key)
        if count is None or count.ends <= now:
            count = self.counts[key] = _Count(window, now)
        count.delta += 1
        self._wake()
        return count.known + count.sending + count.delta

    def take(self, key: str, member: str, limit: int | None) -> tuple[bool, int]:
        """Take a place unless ``limit`` are held; ``(taken, places held)``."""
        user = self.places.get(key)
        if user is None:
            user = self.places[key] = _Places()
        held = user.others + len(user.held)
        if limit is not None and held >= limit:
            return False, held
        user.held[member] = False
        self._wake()
        return True, held + 1

    def release(self, key: str, member: str) -> None:
        user = self.places.get(key)
        if user is None:
            return
        if user.held.pop(member, False):
            user.gone.add(member)  # in the store: removed by the next sync
        self._wake()

    # -- the sync -----------------------------------------------------------------------------

    def _wake(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self.counts or any(p.held or p.gone for p in self.places.values()):
            await asyncio.sleep(get_conf().limits_sync_interval)
            await self.flush()
        self.task = None

    async def flush(self) -> None:
        """Send what was counted, read back the totals."""
        now = time.time()
        self.counts = {k: c for k, c in self.counts.items() if c.ends > now}
        self.places = {k: p for k, p in self.places.items() if p.held or p.gone}
        counters = []
        for key, count in self.counts.items():
            count.sending, count.delta = count.delta, 0
            counters.append((key, count.sending, count.window))
        lease = get_conf().socket_lease
        changes = {}
        for key, user in self.places.items():
            adds = [m for m, sent in user.held.items() if not sent]
            changes[key] = (adds, list(user.gone))
        try:
            totals, held = await store.get("limits").sync(counters, changes, now + lease, lease)
        except Exception as exc:
            for count in self.counts.values():  # counted again with the next sync
                count.delta, count.sending = count.delta + count.sending, 0
            if self.failing_since is None or time.monotonic() - self.failing_since > 60:
                self.failing_since = time.monotonic()
                logger.error("wsauth: cannot sync limits with the store: %s", exc)
            return
        self.failing_since = None
        now = time.time()
        for (key, _, _), (total, ttl) in zip(counters, totals, strict=True):
            synced = self.counts.get(key)
            if synced is None:
                continue
            synced.known, synced.sending = total, 0
            if ttl > 0:  # the window the deployment counts in, opened by its first hit
                synced.ends = now + ttl
        for key, (adds, gone) in changes.items():
            known = self.places.get(key)
            if known is None:
                continue
            user = known
            for member in adds:
                if member in user.held:
                    user.held[member] = True
                else:  # released during the sync: it is in the store now
                    user.gone.add(member)
            user.gone.difference_update(gone)
            ours = sum(1 for sent in user.held.values() if sent) + len(user.gone)
            user.others = max(0, held.get(key, 0) - ours)


_sync: PerLoop[Sync] = PerLoop(Sync)


def get() -> Sync:
    """This event loop's ``Sync``."""
    return _sync.get()
