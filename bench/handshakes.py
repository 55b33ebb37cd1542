"""Section 1: handshakes. Bare Daphne (also receiving the same request bytes as the
subprotocol variant, the token's header included), wsauth by subprotocol (a token seen
before, a new token each time, and with the shared-store checks off), wsauth by ticket
(the POST timed apart), and Channels' ``AuthMiddlewareStack`` with a session; sequential
and 50 at a time, interleaved rounds; server CPU per handshake from /proc; optionally
instructions under callgrind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from .context import Context
from .load import Cred, cycle, cycles, run_pool, token_cred
from .report import median, ratios
from .servers import Daphne, commandstats
from .wsclient import post_ticket

SECTION = "handshakes"
VARIANTS = [
    "bare",
    "bare-same-request",
    "subprotocol",
    "subprotocol-new-token",
    "subprotocol-no-store-checks",
    "ticket",
    "session",
]
SERVER_OF = {
    "bare": "bare",
    "bare-same-request": "bare",
    "subprotocol": "wsauth",
    "subprotocol-no-store-checks": "wsauth-local",
    "subprotocol-new-token": "wsauth-new-tokens",
    "ticket": "wsauth-tickets",
    "session": "session",
}
#: Each wsauth variant has a process of its own, and tickets are issued by yet another
#: (they are valid on every process): what one variant leaves behind (a thousand new
#: tokens' claims, a burst of ticket POSTs and the garbage they owe) is not counted in
#: another's CPU. Measured with one shared process: ticket handshakes 1.08-1.33x the
#: subprotocol's CPU at 50 concurrent, where they tie when the POSTs run elsewhere.
APP_OF = {"wsauth-new-tokens": "wsauth", "wsauth-tickets": "wsauth", "wsauth-mint": "wsauth"}
CONCURRENCY = 50
MODES = (("seq", "sequential"), ("c50", f"{CONCURRENCY} concurrent"))


class Credentials:
    def __init__(self, ctx: Context, new_tokens: int) -> None:
        self.ctx = ctx
        self.token = ctx.issuer.token("RS256", lifetime=3600)
        self.pool = [ctx.issuer.token("RS256", lifetime=3600) for _ in range(new_tokens)]
        self.post_rate: dict[str, list[float]] = defaultdict(list)
        self.post_cpu: list[float] = []

    async def make(self, variant: str, n: int, concurrency: int) -> list[Cred]:
        if variant == "bare":
            return [Cred()] * n
        if variant == "session":
            return [Cred(cookie=self.ctx.session_cookie)] * n
        if variant in ("subprotocol", "subprotocol-no-store-checks", "bare-same-request"):
            return [token_cred(self.token)] * n
        if variant == "subprotocol-new-token":
            if len(self.pool) < n:
                self.pool += [self.ctx.issuer.token("RS256", lifetime=3600) for _ in range(n)]
            taken, self.pool = self.pool[:n], self.pool[n:]
            return [token_cred(t) for t in taken]
        if variant == "ticket":
            return [Cred(path=f"/ws/echo/?ticket={t}") for t in await self.tickets(n, concurrency)]
        raise ValueError(variant)

    async def tickets(self, n: int, concurrency: int) -> list[str]:
        """POST n tickets, ``concurrency`` at a time, timing the POSTs on their own."""
        server = self.ctx.server("wsauth-mint", "wsauth")
        out: list[str] = []

        async def post() -> None:
            out.append(await post_ticket(server.port, self.token))

        cpu = server.cpu_seconds()
        elapsed, _ = await run_pool([post] * n, concurrency, strict=True)
        self.post_cpu.append((server.cpu_seconds() - cpu) / n)
        self.post_rate["seq" if concurrency == 1 else "c50"].append(n / elapsed)
        return out


async def count_store_commands(
    creds: Credentials, servers: dict[str, Daphne]
) -> dict[str, tuple[float, dict[str, int]]]:
    """Redis commands per sequential handshake once warm, from ``INFO commandstats`` of
    the benchmark's own Redis (``bench.servers.PrivateRedis``): the limits' batched
    syncs and the channel layer's receive loop included, whatever they cost."""
    n = 100
    found: dict[str, tuple[float, dict[str, int]]] = {}
    for variant in ("subprotocol", "ticket"):
        batch = await creds.make(variant, n, 1)  # tickets minted before the count
        await asyncio.sleep(1.0)  # the warm-up's batched sync has gone out
        before = commandstats()
        await cycles(servers[SERVER_OF[variant]].port, batch, 1)
        after = commandstats()
        calls = {
            name: after[name] - before.get(name, 0)
            for name in after
            if name != "info" and after[name] != before.get(name, 0)
        }
        found[variant] = (sum(calls.values()) / n, calls)
    return found


async def run(ctx: Context) -> None:
    quick = ctx.options.quick
    rounds = 3 if quick else 6  # the 50-concurrent ratios move +-0.1 between short runs
    n_seq = 50 if quick else 60
    n_conc = 120 if quick else 200
    res = ctx.results
    servers = {name: ctx.server(name, APP_OF.get(name)) for name in set(SERVER_OF.values())}
    creds = Credentials(ctx, new_tokens=rounds * (n_seq + n_conc) + 20)

    # Warm-up: imports, the JWKS fetch, user rows, session rows, Redis connections.
    for variant in VARIANTS:
        port = servers[SERVER_OF[variant]].port
        for cred in await creds.make(variant, 20, 1):
            await cycle(port, cred)
    creds.post_rate.clear()
    creds.post_cpu.clear()
    store_calls = await count_store_commands(creds, servers)

    rate: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    cpu: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    failures = 0
    for r in range(rounds):
        for mode, n, concurrency in (("seq", n_seq, 1), ("c50", n_conc, CONCURRENCY)):
            order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
            for variant in order:
                server = servers[SERVER_OF[variant]]
                batch = await creds.make(variant, n, concurrency)
                before = server.cpu_seconds()
                elapsed, failed = await cycles(server.port, batch, concurrency)
                cpu[variant][mode].append((server.cpu_seconds() - before) / n * 1000)
                rate[variant][mode].append((n - failed) / elapsed)
                failures += failed
        print(f"  round {r + 1}/{rounds} done", flush=True)

    for variant, (per_handshake, _) in store_calls.items():
        res.add(
            SECTION,
            f"Redis commands/handshake, steady state (INFO commandstats): {variant}",
            per_handshake,
            "",
            target="< 0.1 (syncs only)" if variant == "subprotocol" else "<= 1 (GETDEL)",
            met=per_handshake < 0.1 if variant == "subprotocol" else per_handshake <= 1.05,
        )
    post_cpu_ms = [c * 1000 for c in creds.post_cpu]
    res.raw[SECTION] = {
        "rounds": rounds,
        "n_seq": n_seq,
        "n_concurrent": n_conc,
        "rate": {v: dict(m) for v, m in rate.items()},
        "cpu_ms": {v: dict(m) for v, m in cpu.items()},
        "ticket_post_rate": dict(creds.post_rate),
        "ticket_post_cpu_ms": post_cpu_ms,
        "failures": failures,
        "store_commands": {v: calls for v, (_, calls) in store_calls.items()},
    }

    for mode, label in MODES:
        for variant in VARIANTS:
            target = met = None
            ratio = ratios(rate[variant][mode], rate["bare"][mode])
            if variant == "subprotocol" and mode == "c50":
                target, met = ">= 0.95x bare", ratio >= 0.95
            res.add(
                SECTION,
                f"handshakes/s {label}: {variant}",
                median(rate[variant][mode]),
                "1/s",
                ratio=ratio,
                vs="bare",
                target=target,
                met=met,
            )
    for mode, label in MODES:
        for variant in VARIANTS:
            res.add(
                SECTION,
                f"server CPU/handshake ({label}): {variant}",
                median(cpu[variant][mode]),
                "ms",
                ratio=ratios(cpu[variant][mode], cpu["bare"][mode]),
                vs="bare",
            )
    res.add(
        SECTION,
        f"ticket POST/s ({CONCURRENCY} concurrent)",
        median(creds.post_rate["c50"]),
        "1/s",
    )
    post_cpu = median(post_cpu_ms)
    res.add(SECTION, "server CPU/ticket POST", post_cpu, "ms")

    all_cpu = {v: cpu[v]["seq"] + cpu[v]["c50"] for v in ("ticket", "subprotocol")}
    ticket_cpu = median(all_cpu["ticket"])
    ticket_vs_sub = ratios(all_cpu["ticket"], all_cpu["subprotocol"])
    res.add(
        SECTION,
        "ticket handshake CPU vs subprotocol",
        ticket_cpu,
        "ms",
        ratio=ticket_vs_sub,
        vs="subprotocol",
        target="<= 1.0x (5% noise band)",
        met=ticket_vs_sub <= 1.05,
    )
    res.add(
        SECTION,
        "ticket POST + handshake CPU vs subprotocol",
        post_cpu + ticket_cpu,
        "ms",
        ratio=(post_cpu + ticket_cpu) / median(all_cpu["subprotocol"]),
        vs="subprotocol",
    )
    for variant in ("subprotocol", "ticket"):
        ahead = ratios(rate[variant]["c50"], rate["session"]["c50"])
        res.add(
            SECTION,
            f"{variant} vs session stack, {CONCURRENCY} concurrent",
            median(rate[variant]["c50"]),
            "1/s",
            ratio=ahead,
            vs="session",
            target=">= 1.25x session",
            met=ahead >= 1.25,
        )
    if failures:
        res.add(SECTION, "failed handshakes (all variants)", failures, "")

    if ctx.options.callgrind:
        await run_callgrind(ctx, creds, median(rate["subprotocol"]["seq"]))


# -- callgrind ---------------------------------------------------------------------------------


def _callgrind_control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


def _dump(server: Daphne, out: Path) -> int:
    """Dump the counters since the last zeroing; return the instruction count."""
    before = set(out.parent.glob(out.name + ".*"))
    _callgrind_control("-d", str(server.pid))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = set(out.parent.glob(out.name + ".*")) - before
        for path in new:
            text = path.read_text(errors="replace")
            match = re.search(r"^(?:totals|summary):\s*(\d+)", text, re.M)
            if match:
                return int(match.group(1))
        time.sleep(0.2)
    raise RuntimeError("callgrind dump did not appear")


@contextlib.asynccontextmanager
async def callgrind_server(
    ctx: Context, label: str, app: str, **wsauth: Any
) -> AsyncIterator[Daphne]:
    """A Daphne of ``app`` under valgrind for the block, its counts in a file of its own."""
    out = ctx.project.dir / f"callgrind-{label}.out"
    print(f"  callgrind: starting {label} under valgrind...", flush=True)
    server = Daphne(ctx.project, app, callgrind_out=out, wsauth=wsauth).start(timeout=600)
    try:
        yield server
    finally:
        server.stop()


async def instructions(server: Daphne, work: Any, n: int) -> tuple[float, float]:
    """Instructions per unit of ``work`` (n units), minus an idle run as long as the work.
    A full garbage collection first (``bench.serve``): the process's start-up debt is
    settled outside the window, as in a long-running server."""
    out = server.callgrind_out
    assert out is not None, "not started under callgrind"
    os.kill(server.pid, signal.SIGUSR1)
    await asyncio.sleep(2)
    _callgrind_control("-z", str(server.pid))
    start = time.perf_counter()
    await work()
    elapsed = time.perf_counter() - start
    busy = _dump(server, out)
    _callgrind_control("-z", str(server.pid))
    await asyncio.sleep(elapsed)
    idle = _dump(server, out)
    return (busy - idle) / n, idle / elapsed


async def retried(attempt: Any, attempts: int = 5) -> Any:
    """``await attempt()`` until it succeeds: under valgrind a process's first handshake
    (imports, keys, connections) can outlast the handshake timeout."""
    for n in range(attempts):
        try:
            return await attempt()
        except Exception:
            if n == attempts - 1:
                raise
            await asyncio.sleep(1)


#: A variant counted only under callgrind: the subprotocol handshake with the allowed
#: origins reloaded from the database on every handshake (the difference is one reload).
RELOAD = "subprotocol-origins-reloaded"
#: Counted only under callgrind: the subprotocol handshake with the Prometheus metrics
#: off (``METRICS: False``); "subprotocol" has them on when prometheus_client is installed.
METRICS_OFF = "subprotocol-metrics-off"
#: Callgrind-only variants: their WSAUTH settings and the credentials they use.
EXTRA: dict[str, dict[str, Any]] = {
    RELOAD: {"ORIGINS_REFRESH_INTERVAL": 0},
    METRICS_OFF: {"METRICS": False},
}


async def run_callgrind(ctx: Context, creds: Credentials, seq_rate: float) -> None:
    """``seq_rate``: the subprotocol variant's sequential handshakes/s, measured natively,
    to spread a reload every 2 s over the handshakes of those 2 s."""
    res = ctx.results
    n = ctx.options.callgrind_handshakes
    apps = {v: APP_OF.get(SERVER_OF[v], SERVER_OF[v]) for v in VARIANTS}
    del apps["subprotocol-new-token"]
    apps[RELOAD] = apps[METRICS_OFF] = "wsauth"
    wanted = ctx.options.callgrind_variants
    if wanted:
        apps = {v: app for v, app in apps.items() if v in wanted}
    per: dict[str, float] = {}
    raw: dict[str, Any] = {"handshakes": n}
    for variant, app in apps.items():
        reload = EXTRA.get(variant, {})
        like = "subprotocol" if variant in EXTRA else variant
        async with callgrind_server(ctx, variant, app, **reload) as server:

            async def first(variant: str = like, port: int = server.port) -> None:
                await cycle(port, (await creds.make(variant, 1, 1))[0])

            await retried(first)
            for cred in await creds.make(like, 5, 1):  # warm-up
                await cycle(server.port, cred)
            if variant == "ticket":
                token = creds.token
                tickets: list[str] = []

                async def posts(
                    token: str = token, tickets: list[str] = tickets, port: int = server.port
                ) -> None:
                    for _ in range(n):
                        tickets.append(await post_ticket(port, token))

                post, _ = await instructions(server, posts, n)
                per["ticket POST"] = post
                batch = [Cred(path=f"/ws/echo/?ticket={t}") for t in tickets]
            else:
                batch = await creds.make(like, n, 1)

            async def work(batch: list[Cred] = batch, port: int = server.port) -> None:
                await cycles(port, batch, 1)

            per[variant], idle_rate = await instructions(server, work, n)
            raw[f"{variant}_idle_instructions_per_s"] = idle_rate
    raw["per_handshake"] = per
    res.raw["callgrind"] = raw
    if {"subprotocol", METRICS_OFF} <= set(per):
        cost = per["subprotocol"] / per[METRICS_OFF]
        res.add(
            SECTION,
            "instructions: subprotocol handshake, metrics on vs off",
            per["subprotocol"] / 1e6,
            "M instr",
            ratio=cost,
            vs=METRICS_OFF,
            target="<= 1.02x",
            met=cost <= 1.02,
        )
    if "bare" not in per:  # a subset (--callgrind-variants): no ratios to bare
        for variant, count in per.items():
            res.add(
                SECTION, f"instructions/handshake (callgrind): {variant}", count / 1e6, "M instr"
            )
        return
    for variant in [v for v in apps if v not in EXTRA]:
        ratio = per[variant] / per["bare"]
        target = met = None
        if variant == "subprotocol":
            target, met = "<= 1.10x bare", ratio <= 1.10
        res.add(
            SECTION,
            f"instructions/handshake (callgrind): {variant}",
            per[variant] / 1e6,
            "M instr",
            ratio=ratio,
            vs="bare",
            target=target,
            met=met,
        )
    if not {"ticket", "subprotocol", RELOAD} <= set(per):
        return
    ticket_ratio = per["ticket"] / per["subprotocol"]
    res.add(
        SECTION,
        "instructions: ticket handshake vs subprotocol",
        per["ticket"] / 1e6,
        "M instr",
        ratio=ticket_ratio,
        vs="subprotocol",
        target="<= 1.0x",
        met=ticket_ratio <= 1.0,
    )
    res.add(SECTION, "instructions/ticket POST (callgrind)", per["ticket POST"] / 1e6, "M instr")
    one_reload = per[RELOAD] - per["subprotocol"]
    res.add(SECTION, "instructions/allowed-origins reload (callgrind)", one_reload / 1e6, "M instr")
    spread = one_reload / (2.0 * seq_rate)  # one per ORIGINS_REFRESH_INTERVAL (2 s)
    res.add(
        SECTION,
        "  spread over 2 s of sequential subprotocol handshakes",
        spread / 1e6,
        "M instr",
        ratio=spread / per["subprotocol"],
        vs="subprotocol",
    )
