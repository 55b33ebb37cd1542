"""Section 3: the key cache against a real local JWKS server. A burst of validations on a
cold cache (in this process, and as real handshakes on a fresh Daphne), and a flood of
tokens naming unknown kids: how many HTTP fetches each causes."""

from __future__ import annotations

import asyncio
import time
import uuid
from functools import partial
from typing import Any

from . import inproc
from .context import Context
from .load import Cred, cycle, run_pool, token_cred
from .servers import Daphne

SECTION = "jwks"
COOLDOWN = 5.0  # the smallest JWKS_UNKNOWN_KID_COOLDOWN wsauth accepts


async def _burst(ctx: Context, app: str, cred: Cred, n: int) -> tuple[float, int, int]:
    """``n`` handshake cycles at once on a new Daphne process serving ``app``: (elapsed
    seconds, failures, JWKS fetches during the burst)."""
    server = Daphne(ctx.project, app).start()
    try:
        before = ctx.issuer.jwks_fetches
        elapsed, failed = await run_pool([partial(cycle, server.port, cred)] * n, n)
        return elapsed, failed, ctx.issuer.jwks_fetches - before
    finally:
        server.stop()


async def run(ctx: Context) -> None:
    from wsauth.tokens import TokenError, validate_access_token

    issuer = ctx.issuer
    res = ctx.results
    quick = ctx.options.quick
    burst = 1000
    raw: dict[str, Any] = {}

    # 1. cold cache, 1,000 validations at once, in this process
    tokens = [issuer.token("EdDSA") for _ in range(burst)]
    conf = inproc.setup(issuer, JWKS_UNKNOWN_KID_COOLDOWN=COOLDOWN)  # reset: cold caches
    issuer.reset_counts()
    start = time.perf_counter()
    outcomes = await asyncio.gather(
        *(validate_access_token(t, conf=conf) for t in tokens), return_exceptions=True
    )
    elapsed = time.perf_counter() - start
    ok = sum(1 for o in outcomes if not isinstance(o, BaseException))
    fetches = issuer.jwks_fetches
    raw["cold_burst_inprocess"] = {"validations": burst, "ok": ok, "fetches": fetches, "s": elapsed}
    res.add(
        SECTION,
        f"cold cache, {burst} validations at once: JWKS fetches",
        fetches,
        "fetches",
        target="exactly 1",
        met=fetches == 1 and ok == burst,
    )
    res.add(SECTION, f"cold cache, {burst} validations at once: accepted", ok, "tokens")

    # 2. unknown-kid flood: tokens signed by the issuer's key, naming kids nobody published
    duration = COOLDOWN + 1
    issuer.reset_counts()
    refused = 0
    sent = 0
    start = time.monotonic()
    while time.monotonic() - start < duration:
        wave = [issuer.token("EdDSA", kid=f"unknown-{uuid.uuid4().hex[:8]}") for _ in range(50)]
        for outcome in await asyncio.gather(
            *(validate_access_token(t, conf=conf) for t in wave), return_exceptions=True
        ):
            refused += isinstance(outcome, TokenError)
        sent += len(wave)
        await asyncio.sleep(0.01)
    fetches = issuer.jwks_fetches
    windows = int(duration // COOLDOWN) + 1
    raw["unknown_kid_flood"] = {
        "tokens": sent,
        "refused": refused,
        "seconds": duration,
        "cooldown": COOLDOWN,
        "fetches": fetches,
    }
    res.add(
        SECTION,
        f"unknown-kid flood, {sent} tokens in {duration:.0f} s: JWKS fetches",
        fetches,
        "fetches",
        target=f"<= 1 per {COOLDOWN:.0f} s window ({windows})",
        met=fetches <= windows and refused == sent,
    )

    # 3. the same burst as real handshakes on a Daphne process that has never fetched keys,
    # then on bare Daphne, for the completion count
    n = 300 if quick else burst
    token = issuer.token("RS256", lifetime=3600)
    elapsed, failed, fetches = await _burst(ctx, "wsauth", token_cred(token), n)
    bare_elapsed, bare_failed, _ = await _burst(ctx, "bare", Cred(), n)
    raw["cold_burst_handshakes"] = {
        "handshakes": n,
        "failed": failed,
        "fetches": fetches,
        "s": elapsed,
        "bare_failed": bare_failed,
        "bare_s": bare_elapsed,
    }
    res.add(
        SECTION,
        f"cold Daphne, {n} handshakes at once: JWKS fetches",
        fetches,
        "fetches",
        target="exactly 1",
        met=fetches == 1,
    )
    res.add(SECTION, f"cold Daphne, {n} handshakes at once: completed", n - failed, "handshakes")
    res.add(
        SECTION,
        f"cold Daphne, {n} handshakes at once: completed, bare",
        n - bare_failed,
        "handshakes",
    )
    res.add(SECTION, f"cold Daphne, {n} handshakes at once: wall time", elapsed, "s")
    res.add(SECTION, f"cold Daphne, {n} handshakes at once: wall time, bare", bare_elapsed, "s")
    res.raw[SECTION] = raw
