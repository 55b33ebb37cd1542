"""The store in this process's memory: for one process and for tests.

Same semantics as the Redis store; other processes see nothing of it, which
``manage.py check`` says (``wsauth.W001``) wherever more than one process may run.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from .base import Admission, Place, Store


class LocalStore(Store):
    shared = False

    def __init__(self, make_key: Callable[[str], str]) -> None:
        super().__init__(make_key)
        self._lock = threading.Lock()
        self._values: dict[str, tuple[float, str]] = {}  # key: (expires, value)
        self._counters: dict[str, tuple[float, int]] = {}
        self._places: dict[str, dict[str, float]] = {}  # key: member: lease end

    def _sweep(self, now: float) -> None:
        if len(self._counters) > 100_000:
            self._counters = {k: v for k, v in self._counters.items() if v[0] > now}
        if len(self._values) > 100_000:
            self._values = {k: v for k, v in self._values.items() if v[0] > now}

    def _hit(self, key: str, window: int, now: float) -> int:
        expires, count = self._counters.get(key, (0.0, 0))
        if expires <= now:
            expires, count = now + window, 0
        self._counters[key] = (expires, count + 1)
        return count + 1

    def _get(self, key: str, now: float) -> str | None:
        entry = self._values.get(key)
        if entry is None or entry[0] <= now:
            return None
        return entry[1]

    async def admit(
        self,
        counter: tuple[str, int] | None,
        place: Place | None,
        markers: Sequence[str] = (),
    ) -> Admission:
        now = time.time()
        with self._lock:
            self._sweep(now)
            count = self._hit(*counter, now) if counter is not None else 0
            taken, held = False, 0
            if place is not None:
                members = {
                    m: end for m, end in self._places.get(place.key, {}).items() if end > now
                }
                held = len(members)
                if place.limit is None or held < place.limit:
                    members[place.member] = now + place.lease
                    taken, held = True, held + 1
                self._places[place.key] = members
            found = {k: v for k in markers if (v := self._get(k, now)) is not None}
        return Admission(count, taken, held, found)

    async def hit(self, key: str, window: int) -> int:
        now = time.time()
        with self._lock:
            return self._hit(key, window, now)

    async def sync(
        self,
        counters: Sequence[tuple[str, int, int]],
        places: Mapping[str, tuple[Sequence[str], Sequence[str]]],
        until: float,
        lease: float,
    ) -> tuple[list[tuple[int, float]], dict[str, int]]:
        now = time.time()
        totals: list[tuple[int, float]] = []
        held: dict[str, int] = {}
        with self._lock:
            for key, delta, window in counters:
                expires, count = self._counters.get(key, (0.0, 0))
                if expires <= now:
                    expires, count = now + window, 0
                self._counters[key] = (expires, count + delta)
                totals.append((count + delta, expires - now))
            for key, (adds, removes) in places.items():
                members = {m: end for m, end in self._places.get(key, {}).items() if end > now}
                for member in adds:
                    members[member] = until
                for member in removes:
                    members.pop(member, None)
                self._places[key] = members
                held[key] = len(members)
        return totals, held

    async def renew(self, places: Mapping[str, Sequence[str]], until: float, ttl: int) -> None:
        with self._lock:
            for key, members in places.items():
                held = self._places.setdefault(key, {})
                for member in members:
                    held[member] = until

    async def release(self, key: str, member: str) -> None:
        with self._lock:
            held = self._places.get(key)
            if held is not None:
                held.pop(member, None)
                if not held:
                    del self._places[key]

    async def members(self, key: str, now: float) -> list[tuple[str, float]]:
        with self._lock:
            return sorted(
                ((m, end) for m, end in self._places.get(key, {}).items() if end > now),
                key=lambda item: item[1],
            )

    async def getdel(self, key: str) -> str | None:
        now = time.time()
        with self._lock:
            value = self._get(key, now)
            self._values.pop(key, None)
            return value

    async def set(self, key: str, value: str, ttl: int) -> None:
        with self._lock:
            self._values[key] = (time.time() + ttl, value)

    async def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        now = time.time()
        with self._lock:
            return {k: v for k in keys if (v := self._get(k, now)) is not None}

    async def values_matching(self, pattern: str) -> dict[str, str]:
        now = time.time()
        with self._lock:
            return {
                k: v
                for k, (expires, v) in self._values.items()
                if expires > now and fnmatch.fnmatchcase(k, pattern)
            }

    def add_sync(self, key: str, ttl: int) -> bool:
        now = time.time()
        with self._lock:
            if self._get(key, now) is not None:
                return False
            self._values[key] = (now + ttl, "1")
            return True

    def places_sync(
        self, prefix: str, suffix: str, now: float
    ) -> dict[str, list[tuple[str, float]]]:
        with self._lock:
            return {
                key: sorted(live, key=lambda item: item[1])
                for key, held in self._places.items()
                if key.startswith(prefix) and key.endswith(suffix)
                if (live := [(m, end) for m, end in held.items() if end > now])
            }

    def version_sync(self) -> str | None:
        return None
