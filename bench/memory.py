"""Section 5: resident memory per idle socket, bare Daphne against wsauth (distinct
tokens, 1,000 users with several sockets each; and by ticket), at 1k, 5k and 10k sockets."""

from __future__ import annotations

import asyncio
import gc
import re
import secrets
import signal
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from .context import Context
from .load import Cred, open_ws, run_pool, token_cred
from .servers import ROOT, Daphne, create_users
from .wsclient import WS, post_ticket

SECTION = "memory"
USERS = 1000
CONCURRENCY = 50
#: Sockets held for the allocation attribution (``--tracemalloc``), and lines reported.
TRACED_SOCKETS = 2000
TRACED_LINES = 12


@dataclass(frozen=True)
class TicketFor:
    """A ticket to POST for ``token`` (on another process) just before the handshake."""

    mint_port: int
    token: str


async def _hold_one(port: int, cred: Cred | TicketFor, into: list[WS]) -> None:
    if isinstance(cred, TicketFor):
        ticket = await post_ticket(cred.mint_port, cred.token)
        cred = Cred(path=f"/ws/echo/?ticket={ticket}")
    ws = await open_ws(port, cred)
    await ws.recv()
    into.append(ws)


async def _hold(port: int, creds: Sequence[Cred | TicketFor], into: list[WS]) -> int:
    """Open one socket per credential, 50 at a time, and keep them; return failures."""
    _, failures = await run_pool([partial(_hold_one, port, c, into) for c in creds], CONCURRENCY)
    return failures


async def _warm_up(port: int, creds: Sequence[Cred | TicketFor]) -> None:
    """50 sockets opened and closed: imports, keys, connections and caches, before the
    baseline is taken."""
    warm: list[WS] = []
    await _hold(port, creds[:50], warm)
    for ws in warm:
        await ws.close()
    await asyncio.sleep(1)


async def _ladder(
    ctx: Context, name: str, creds: Sequence[Cred | TicketFor], levels: list[int]
) -> dict[str, Any]:
    server = ctx.fresh_server(f"mem-{name}", "bare" if name.startswith("bare") else "wsauth")
    await _warm_up(server.port, creds)
    base = server.rss_bytes()
    held: list[WS] = []
    out: dict[str, Any] = {"base_rss": base, "levels": {}}
    failures = 0
    for level in levels:
        failures += await _hold(server.port, creds[len(held) + failures : level], held)
        await asyncio.sleep(2)
        rss = server.rss_bytes()
        out["levels"][level] = {
            "held": len(held),
            "rss": rss,
            "per_socket": (rss - base) / len(held),
        }
        print(f"  {name}: {len(held)} sockets, RSS {rss / 1e6:.1f} MB", flush=True)
    out["failures"] = failures
    for ws in held:
        ws.abort()
    held.clear()
    gc.collect()
    ctx.stop_server(f"mem-{name}")
    return out


async def run(ctx: Context) -> None:
    levels = [1000] if ctx.options.quick else [1000, 5000, 10000]
    top = levels[-1]
    create_users(ctx.project, USERS)
    issuer = ctx.issuer
    creds: dict[str, Sequence[Cred | TicketFor]] = {
        "bare": [Cred()] * (top + 100),
        "wsauth": [
            token_cred(issuer.token("EdDSA", lifetime=3600, sub=f"bench-u{i % USERS}"))
            for i in range(top + 100)
        ],
    }
    # The same request bytes to bare Daphne: Daphne, autobahn and Twisted keep the
    # request's headers (the token among them) for the socket's life, whoever authenticates.
    creds["bare-same-request"] = creds["wsauth"]
    # By ticket: a short query string instead of the token in a header. One token per
    # user (a user's tabs share it), one ticket per socket, POSTed on another process.
    mint = ctx.server("wsauth-mint", "wsauth").port
    per_user = [issuer.token("EdDSA", lifetime=3600, sub=f"bench-u{i}") for i in range(USERS)]
    creds["wsauth-ticket"] = [TicketFor(mint, per_user[i % USERS]) for i in range(top + 100)]
    # ... and bare Daphne receiving such a request (a ticket's length, nobody redeeming it).
    creds["bare-ticket-request"] = [
        Cred(path=f"/ws/echo/?ticket={secrets.token_urlsafe(32)}") for _ in range(top + 100)
    ]
    raw: dict[str, Any] = {}
    for name in ("bare", "bare-same-request", "bare-ticket-request", "wsauth", "wsauth-ticket"):
        raw[name] = await _ladder(ctx, name, creds[name], levels)
    ctx.results.raw[SECTION] = raw
    res = ctx.results
    for level in levels:
        bare = raw["bare"]["levels"][level]
        auth = raw["wsauth"]["levels"][level]
        same = raw["bare-same-request"]["levels"][level]
        ticket = raw["wsauth-ticket"]["levels"][level]
        same_ticket = raw["bare-ticket-request"]["levels"][level]
        res.add(SECTION, f"RSS/socket at {level}: bare", bare["per_socket"] / 1024, "KiB")
        for label, row in (
            ("wsauth", auth),
            ("bare, same request bytes", same),
            ("wsauth by ticket", ticket),
            ("bare, a ticket's request bytes", same_ticket),
        ):
            res.add(
                SECTION,
                f"RSS/socket at {level}: {label}",
                row["per_socket"] / 1024,
                "KiB",
                ratio=row["per_socket"] / bare["per_socket"],
                vs="bare",
            )
        last = level == top
        for kind, row, same_bytes in (
            ("authenticated", auth, same),
            ("ticket-authenticated", ticket, same_ticket),
        ):
            res.add(
                SECTION,
                f"extra RSS/{kind} socket at {level}, same request bytes",
                (row["per_socket"] - same_bytes["per_socket"]) / 1024,
                "KiB",
            )
            extra = (row["per_socket"] - bare["per_socket"]) / 1024
            res.add(
                SECTION,
                f"extra RSS/{kind} socket at {level}",
                extra,
                "KiB",
                target="<= 2 KiB" if last else None,
                met=extra <= 2 if last else None,
            )
    if ctx.options.tracemalloc:
        await _attribute(ctx, creds["bare"], creds["wsauth"])
    held = raw["wsauth"]["levels"][top]["held"]
    res.add(
        SECTION,
        f"authenticated sockets held by one process (of {top})",
        held,
        "sockets",
        target=f"{top}" if top == 10000 else None,
        met=held >= top if top == 10000 else None,
    )


# -- where the memory goes: tracemalloc, by line, wsauth against bare ------------------------


async def _snapshot(server: Daphne, out: Any, n: int) -> tracemalloc.Snapshot:
    """Snapshot ``n`` of the server's live allocations (``bench.serve``, SIGUSR2)."""
    server.proc.send_signal(signal.SIGUSR2)  # type: ignore[union-attr]
    path = out.with_name(f"{out.name}.{n}")
    for _ in range(600):
        if path.exists():
            return tracemalloc.Snapshot.load(str(path))
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no tracemalloc snapshot from {server.app}")


async def _traced(
    ctx: Context, app: str, creds: Sequence[Cred | TicketFor]
) -> tuple[Counter[str], int]:
    """Bytes allocated and alive per socket, by line, for TRACED_SOCKETS idle sockets."""
    out = ctx.project.dir / f"tracemalloc-{app}"
    server = Daphne(ctx.project, app, tracemalloc_out=out).start()
    try:
        await _warm_up(server.port, creds)
        before = await _snapshot(server, out, 0)
        held: list[WS] = []
        await _hold(server.port, creds[50 : 50 + TRACED_SOCKETS], held)
        await asyncio.sleep(2)
        after = await _snapshot(server, out, 1)
        for ws in held:
            ws.abort()
    finally:
        server.stop()
    by_line: Counter[str] = Counter()
    for stat in after.compare_to(before, "lineno"):
        frame = stat.traceback[0]
        where = re.sub(r".*/(site-packages|lib/python3\.\d+)/", "", frame.filename)
        where = where.replace(f"{ROOT}/", "")
        by_line[f"{where}:{frame.lineno}"] += stat.size_diff
    return by_line, len(held)


async def _attribute(
    ctx: Context, bare_creds: Sequence[Cred | TicketFor], creds: Sequence[Cred | TicketFor]
) -> None:
    """Python allocations alive per idle socket (tracemalloc), wsauth against bare, and the
    lines that hold the difference: the breakdown behind the RSS figures."""
    bare, n_bare = await _traced(ctx, "bare", bare_creds)
    auth, n_auth = await _traced(ctx, "wsauth", creds)
    res = ctx.results
    per_bare = sum(bare.values()) / n_bare
    per_auth = sum(auth.values()) / n_auth
    label = f"traced Python memory/socket ({n_auth} idle sockets)"
    res.add(SECTION, f"{label}: bare", per_bare, "B")
    res.add(SECTION, f"{label}: wsauth", per_auth, "B", ratio=per_auth / per_bare, vs="bare")
    res.add(SECTION, "traced extra/authenticated socket", per_auth - per_bare, "B")
    extra = Counter({k: auth[k] / n_auth - bare[k] / n_bare for k in set(auth) | set(bare)})
    for where, size in extra.most_common(TRACED_LINES):
        res.add(SECTION, f"  extra/socket at {where}", size, "B")
    ctx.results.raw.setdefault(SECTION, {})["tracemalloc_extra_per_socket"] = {
        k: round(v, 1) for k, v in extra.most_common() if abs(v) >= 1
    }
