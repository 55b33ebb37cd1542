"""The credential deadlines of a process's sockets: one timer per second, not per socket."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from wsauth.consumers import _Deadlines


class _Socket:
    """Stands in for a consumer: records when each deadline's method started."""

    _deadline: int | None = None

    def __init__(self) -> None:
        self.started: list[tuple[str, float]] = []

    def _start(self, callback: Any) -> None:
        self.started.append((callback.__name__, time.time()))

    def _warn(self) -> None: ...

    def _expire(self) -> None: ...


async def test_sockets_due_in_one_second_share_one_timer_and_fire_at_it() -> None:
    deadlines = _Deadlines(asyncio.get_running_loop())
    at = time.time() + 0.3
    a, b, gone = _Socket(), _Socket(), _Socket()
    seconds = {deadlines.add(s, at, "_expire") for s in (a, b, gone)}
    a._deadline = b._deadline = gone._deadline = second = seconds.pop()
    assert not seconds and len(deadlines.handles) == 1
    deadlines.remove(gone, second)  # closed before its deadline
    await asyncio.sleep(second - time.time() + 0.3)
    assert [name for name, _ in a.started] == ["_expire"] == [name for name, _ in b.started]
    assert all(when >= second >= at for _, when in a.started + b.started)  # not early
    assert gone.started == [] and a._deadline is None
    assert deadlines.due == {} and deadlines.handles == {}


async def test_the_last_socket_of_a_second_cancels_its_timer() -> None:
    deadlines = _Deadlines(asyncio.get_running_loop())
    sock = _Socket()
    second = deadlines.add(sock, time.time() + 0.2, "_warn")
    handle = deadlines.handles[second]
    deadlines.remove(sock, second)
    assert handle.cancelled() and deadlines.due == {} and deadlines.handles == {}
    await asyncio.sleep(second - time.time() + 0.2)
    assert sock.started == []


async def test_a_deadline_already_past_fires_at_once() -> None:
    deadlines = _Deadlines(asyncio.get_running_loop())
    sock = _Socket()
    deadlines.add(sock, time.time() - 5, "_warn")
    await asyncio.sleep(0.05)
    assert [name for name, _ in sock.started] == ["_warn"]
