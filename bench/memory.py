"""Section 5: resident memory per idle socket, bare Daphne against wsauth (distinct
tokens, 1,000 users with several sockets each; and by ticket), at 1k, 5k and 10k sockets."""

from __future__ import annotations

import asyncio
import gc
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from .context import Context
from .load import Cred, open_ws, run_pool, token_cred
from .servers import create_users
from .wsclient import WS, post_ticket

SECTION = "memory"
USERS = 1000
CONCURRENCY = 50


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


async def _ladder(
    ctx: Context, name: str, creds: Sequence[Cred | TicketFor], levels: list[int]
) -> dict[str, Any]:
    app = "bare-forgetting" if name.endswith("forgotten") else name.partition("-")[0]
    server = ctx.fresh_server(f"mem-{name}", app)
    warm: list[WS] = []
    await _hold(server.port, creds[:50], warm)  # warm-up: imports, keys, connections, caches
    for ws in warm:
        await ws.close()
    await asyncio.sleep(1)
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
    # ... with those copies of the request forgotten after the accept, as wsauth does
    # (wsauth.serverstate): what is left over bare is the bytes' passage, nobody's state.
    creds["bare-same-request-forgotten"] = creds["wsauth"]
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
    names = ("bare", "bare-same-request", "bare-same-request-forgotten", "bare-ticket-request")
    for name in (*names, "wsauth", "wsauth-ticket"):
        raw[name] = await _ladder(ctx, name, creds[name], levels)
    ctx.results.raw[SECTION] = raw
    res = ctx.results
    for level in levels:
        bare = raw["bare"]["levels"][level]
        auth = raw["wsauth"]["levels"][level]
        same = raw["bare-same-request"]["levels"][level]
        forgotten = raw["bare-same-request-forgotten"]["levels"][level]
        ticket = raw["wsauth-ticket"]["levels"][level]
        same_ticket = raw["bare-ticket-request"]["levels"][level]
        res.add(SECTION, f"RSS/socket at {level}: bare", bare["per_socket"] / 1024, "KiB")
        for label, row in (
            ("wsauth", auth),
            ("bare, same request bytes", same),
            ("bare, same request bytes, forgotten after accept", forgotten),
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
        res.add(  # wsauth's own state: the same bytes passed through Daphne, forgotten alike
            SECTION,
            f"extra RSS/authenticated socket at {level}, same request bytes forgotten alike",
            (auth["per_socket"] - forgotten["per_socket"]) / 1024,
            "KiB",
        )
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
    held = raw["wsauth"]["levels"][top]["held"]
    res.add(
        SECTION,
        f"authenticated sockets held by one process (of {top})",
        held,
        "sockets",
        target=f"{top}" if top == 10000 else None,
        met=held >= top if top == 10000 else None,
    )
