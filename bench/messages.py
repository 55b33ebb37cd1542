"""Section 4: echo round trips per second after the handshake, one socket and 50 sockets,
wsauth's EchoConsumer (control-frame check, expiry timer, message limits) against a plain
AsyncWebsocketConsumer; interleaved rounds; server CPU per message; with ``--callgrind``,
instructions per round trip (repeatable where rates on a shared machine are not)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from functools import partial
from typing import Any

from .context import Context
from .handshakes import callgrind_server, instructions, retried
from .load import Cred, echo_round_trips, open_ws, token_cred
from .report import median, ratios
from .wsclient import WS

SECTION = "messages"
SOCKETS = 50
CALLGRIND_MESSAGES = 300


async def run(ctx: Context) -> None:
    quick = ctx.options.quick
    rounds = 3 if quick else 4
    one_count = 1500 if quick else 3000
    many_count = 30 if quick else 60  # per socket per round
    servers = {"bare": ctx.server("bare"), "wsauth": ctx.server("wsauth")}
    token = ctx.issuer.token("RS256", lifetime=3600)
    creds = {"bare": Cred(), "wsauth": token_cred(token)}
    sockets: dict[str, list[WS]] = {}
    for name, server in servers.items():
        sockets[name] = [await open_ws(server.port, creds[name]) for _ in range(SOCKETS)]
        for ws in sockets[name]:
            await ws.recv()  # the greeting
        await echo_round_trips(sockets[name][0], 200)  # warm-up

    rate: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    cpu: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in range(rounds):
        order = ["bare", "wsauth"] if r % 2 == 0 else ["wsauth", "bare"]
        for mode in ("one", "many"):
            for name in order:
                server = servers[name]
                before = server.cpu_seconds()
                start = time.perf_counter()
                if mode == "one":
                    await echo_round_trips(sockets[name][0], one_count)
                    total = one_count
                else:
                    await asyncio.gather(
                        *(echo_round_trips(ws, many_count) for ws in sockets[name])
                    )
                    total = many_count * SOCKETS
                elapsed = time.perf_counter() - start
                rate[name][mode].append(total / elapsed)
                cpu[name][mode].append((server.cpu_seconds() - before) / total * 1e6)
    for name in sockets:
        await asyncio.gather(*(ws.close() for ws in sockets[name]))

    raw: dict[str, Any] = {
        "rounds": rounds,
        "rate": {n: dict(m) for n, m in rate.items()},
        "cpu_us": {n: dict(m) for n, m in cpu.items()},
    }
    ctx.results.raw[SECTION] = raw
    res = ctx.results
    for mode, label in (("one", "1 socket"), ("many", f"{SOCKETS} sockets")):
        res.add(SECTION, f"echo round trips/s, {label}: bare", median(rate["bare"][mode]), "1/s")
        ratio = ratios(rate["wsauth"][mode], rate["bare"][mode])
        res.add(
            SECTION,
            f"echo round trips/s, {label}: wsauth",
            median(rate["wsauth"][mode]),
            "1/s",
            ratio=ratio,
            vs="bare",
            target=">= 0.97x bare",
            met=ratio >= 0.97,
        )
    for mode, label in (("one", "1 socket"), ("many", f"{SOCKETS} sockets")):
        res.add(SECTION, f"server CPU/message, {label}: bare", median(cpu["bare"][mode]), "us")
        res.add(
            SECTION,
            f"server CPU/message, {label}: wsauth",
            median(cpu["wsauth"][mode]),
            "us",
            ratio=ratios(cpu["wsauth"][mode], cpu["bare"][mode]),
            vs="bare",
        )

    if ctx.options.callgrind:
        await run_callgrind(ctx, creds)


async def run_callgrind(ctx: Context, creds: dict[str, Cred]) -> None:
    """Instructions per echo round trip on one socket, bare and wsauth, under valgrind."""
    per: dict[str, float] = {}
    for name in ("bare", "wsauth"):
        async with callgrind_server(ctx, f"messages-{name}", name) as server:
            ws = await retried(partial(open_ws, server.port, creds[name]))
            await ws.recv()  # the greeting
            await echo_round_trips(ws, 50)  # warm-up

            async def work(ws: WS = ws) -> None:
                await echo_round_trips(ws, CALLGRIND_MESSAGES)

            per[name], _ = await instructions(server, work, CALLGRIND_MESSAGES)
            await ws.close()
    ctx.results.raw["callgrind_messages"] = {"messages": CALLGRIND_MESSAGES, "per_message": per}
    ratio = per["wsauth"] / per["bare"]
    res = ctx.results
    res.add(SECTION, "instructions/echo round trip (callgrind): bare", per["bare"] / 1e3, "k instr")
    res.add(
        SECTION,
        "instructions/echo round trip (callgrind): wsauth",
        per["wsauth"] / 1e3,
        "k instr",
        ratio=ratio,
        vs="bare",
        target="<= 1.03x bare",
        met=ratio <= 1.03,
    )
