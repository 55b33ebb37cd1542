"""Per-event-loop state, kept one way.

An asyncio object (a Redis connection, a task, a timer) belongs to the loop it was made
on. Daphne and uvicorn run one loop per process; tests make a new loop per test. Each
module's per-loop state is a ``PerLoop``: made on first use in a loop, dropped with the
loop (weakly keyed) or on ``clear()`` (settings changed).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    def __init__(self, factory: Callable[[], T]) -> None:
        self.factory = factory
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )
        # The last loop asked about, and its value: a server has one loop, and a
        # WeakKeyDictionary look-up makes a weak reference each time.
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], T] | None = None

    def get(self) -> T:
        """The running loop's instance, made now if it has none."""
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0]() is loop:
            return last[1]
        value = self._by_loop.get(loop)
        if value is None:
            value = self._by_loop[loop] = self.factory()
        self._last = (weakref.ref(loop), value)
        return value

    def peek(self) -> T | None:
        """The running loop's instance if it has one (no loop: ``None``)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        last = self._last
        if last is not None and last[0]() is loop:
            return last[1]
        return self._by_loop.get(loop)

    def replace(self, value: T) -> T:
        loop = asyncio.get_running_loop()
        self._by_loop[loop] = value
        self._last = (weakref.ref(loop), value)
        return value

    def clear(self) -> None:
        self._by_loop.clear()
        self._last = None
