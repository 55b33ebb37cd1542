"""Load patterns: handshake cycles, held sockets, echo round trips; N at a time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial

from .wsclient import WS


@dataclass(frozen=True)
class Cred:
    """What one handshake presents."""

    path: str = "/ws/echo/"
    subprotocols: tuple[str, ...] = ()
    cookie: str | None = None


PREFIX = "authorization_bearer_"


def token_cred(token: str, path: str = "/ws/echo/") -> Cred:
    # The README's recommended form: an application subprotocol next to the token.
    return Cred(path=path, subprotocols=("chat", PREFIX + token))


async def open_ws(port: int, cred: Cred) -> WS:
    return await WS.connect(
        port, cred.path, subprotocols=list(cred.subprotocols) or None, cookie=cred.cookie
    )


async def cycle(port: int, cred: Cred) -> None:
    """One socket's life: handshake, the greeting, the closing handshake."""
    ws = await open_ws(port, cred)
    greeting = await ws.recv()
    if greeting is None or not greeting.startswith("Hello"):
        raise RuntimeError(f"unexpected greeting {greeting!r}")
    await ws.close()


async def run_pool(
    jobs: Sequence[Callable[[], Awaitable[None]]], concurrency: int, *, strict: bool = False
) -> tuple[float, int]:
    """Run the jobs ``concurrency`` at a time; return (elapsed seconds, failures). With
    ``strict``, a failing job's exception propagates instead of being counted."""
    it = iter(jobs)
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for job in it:
            try:
                await job()
            except Exception:
                if strict:
                    raise
                failures += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, failures


async def cycles(
    port: int, creds: Sequence[Cred], concurrency: int, ports: Sequence[int] | None = None
) -> tuple[float, int]:
    """Handshake cycles; with ``ports``, spread round-robin over several servers."""
    targets = ports or [port]
    jobs = [partial(cycle, targets[i % len(targets)], c) for i, c in enumerate(creds)]
    return await run_pool(jobs, concurrency)


async def echo_round_trips(ws: WS, count: int) -> None:
    for i in range(count):
        await ws.send(f"m{i}")
        answer = await ws.recv()
        if answer is None:
            raise RuntimeError("socket closed during echo")
