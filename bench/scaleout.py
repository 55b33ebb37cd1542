"""Section 6: two Daphne processes sharing Redis against one. Handshake rate with 50
clients spread over both, and chat fan-out: a room whose members sit on one process or
on two, every message delivered to every member through the Redis channel layer."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from typing import Any

from .context import Context
from .load import cycle, cycles, open_ws, token_cred
from .report import median, ratios
from .wsclient import WS

SECTION = "scaleout"
CONCURRENCY = 50
MEMBERS = 40


async def _fanout(members: list[WS], messages: int, tag: str) -> tuple[float, list[float]]:
    """The first member sends; wait until every member has each message."""
    latencies: list[float] = []
    start = time.perf_counter()
    for i in range(messages):
        text = f"{tag}-{i}"
        sent = time.perf_counter()
        await members[0].send(json.dumps({"message": text}))
        for got in await asyncio.gather(*(m.recv() for m in members)):
            if got is None or json.loads(got).get("message") != text:
                raise RuntimeError(f"unexpected chat frame {got!r}")
        latencies.append((time.perf_counter() - sent) * 1000)
    return time.perf_counter() - start, latencies


async def run(ctx: Context) -> None:
    quick = ctx.options.quick
    rounds = 3 if quick else 5
    n = 150 if quick else 250
    messages = 20 if quick else 40
    a, b = ctx.server("wsauth"), ctx.server("wsauth-b", "wsauth")
    tokens = [ctx.issuer.token("RS256", lifetime=3600, sub=f"bench-s{i}") for i in range(8)]
    creds = [token_cred(tokens[i % len(tokens)]) for i in range(n)]
    for server in (a, b):
        for cred in creds[:20]:
            await cycle(server.port, cred)

    setups = {"one": [a.port], "two": [a.port, b.port]}
    rooms: dict[str, list[WS]] = {}
    for name, ports in setups.items():
        members = []
        for i in range(MEMBERS):
            cred = token_cred(tokens[i % len(tokens)], path=f"/ws/chat/bench-{name}/")
            members.append(await open_ws(ports[i % len(ports)], cred))
        rooms[name] = members
    await asyncio.sleep(0.5)
    await _fanout(rooms["one"], 3, "warm")
    await _fanout(rooms["two"], 3, "warm")

    rate: dict[str, list[float]] = defaultdict(list)
    deliveries: dict[str, list[float]] = defaultdict(list)
    latency: dict[str, list[float]] = defaultdict(list)
    for r in range(rounds):
        order = ["one", "two"] if r % 2 == 0 else ["two", "one"]
        for name in order:
            elapsed, failed = await cycles(a.port, creds, CONCURRENCY, ports=setups[name])
            rate[name].append((n - failed) / elapsed)
        for name in order:
            elapsed, lat = await _fanout(rooms[name], messages, f"r{r}")
            deliveries[name].append(messages * MEMBERS / elapsed)
            latency[name] += lat
    for members in rooms.values():
        await asyncio.gather(*(m.close() for m in members))

    raw: dict[str, Any] = {
        "handshake_rate": dict(rate),
        "deliveries_per_s": dict(deliveries),
        "fanout_latency_ms": {k: median(v) for k, v in latency.items()},
        "members": MEMBERS,
    }
    ctx.results.raw[SECTION] = raw
    res = ctx.results
    res.add(SECTION, "handshakes/s, 50 concurrent: one process", median(rate["one"]), "1/s")
    res.add(
        SECTION,
        "handshakes/s, 50 concurrent: two processes + Redis",
        median(rate["two"]),
        "1/s",
        ratio=ratios(rate["two"], rate["one"]),
        vs="one",
    )
    res.add(
        SECTION,
        f"chat deliveries/s, {MEMBERS} members: one process",
        median(deliveries["one"]),
        "1/s",
    )
    res.add(
        SECTION,
        f"chat deliveries/s, {MEMBERS} members: two processes",
        median(deliveries["two"]),
        "1/s",
        ratio=ratios(deliveries["two"], deliveries["one"]),
        vs="one",
    )
    for name, label in (("one", "one process"), ("two", "two processes")):
        res.add(
            SECTION,
            f"chat fan-out latency to all {MEMBERS}: {label}",
            median(latency[name]),
            "ms",
            ratio=median(latency[name]) / median(latency["one"]) if name == "two" else None,
            vs="one" if name == "two" else None,
        )
