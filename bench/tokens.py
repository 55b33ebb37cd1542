"""Section 2: token validation alone, in this process. wsauth's ``validate_access_token``
for a token never seen (distinct tokens) and for one verified before, against pyjwt's
``jwt.decode`` with a key object prepared once; RS256, ES256, EdDSA; ~700 B and ~3 KB."""

from __future__ import annotations

import gc
import time
from typing import Any

import jwt
from jwt.algorithms import get_default_algorithms

from . import inproc
from .context import Context
from .issuer import AUDIENCE
from .report import median, ratios

SECTION = "tokens"
ALGS = ["RS256", "ES256", "EdDSA"]
SIZES = {"small": 700, "large": 3000}


async def run(ctx: Context) -> None:
    from wsauth.tokens import validate_access_token

    issuer = ctx.issuer
    conf = inproc.setup(issuer)
    quick = ctx.options.quick
    rounds = 3 if quick else 7
    per_round = 100 if quick else 200
    cached_calls = 2000 if quick else 5000
    algorithms = get_default_algorithms()
    keys: dict[str, Any] = {}
    for jwk in issuer.jwks()["keys"]:
        keys[jwk["alg"]] = algorithms[jwk["alg"]].from_jwk(jwk)
    res = ctx.results
    raw: dict[str, Any] = {}

    for alg in ALGS:
        for size_name, size in SIZES.items():
            label = f"{alg} {size_name}"
            batches = [
                [issuer.token(alg, size=size) for _ in range(per_round)] for _ in range(rounds)
            ]
            length = len(batches[0][0])
            key = keys[alg]
            # warm: the JWKS fetch and the key object, outside the timing
            await validate_access_token(issuer.token(alg, size=size), conf=conf)
            fresh: list[float] = []
            bare: list[float] = []
            cached: list[float] = []
            for r, batch in enumerate(batches):

                def pyjwt_decode(batch: list[str] = batch, alg: str = alg, key: Any = key) -> float:
                    start = time.perf_counter()
                    for token in batch:
                        jwt.decode(
                            token, key, algorithms=[alg], audience=AUDIENCE, issuer=issuer.issuer
                        )
                    return (time.perf_counter() - start) / len(batch) * 1e6

                async def wsauth_fresh(batch: list[str] = batch) -> float:
                    start = time.perf_counter()
                    for token in batch:
                        await validate_access_token(token, conf=conf)
                    return (time.perf_counter() - start) / len(batch) * 1e6

                gc.collect()
                if r % 2:
                    bare.append(pyjwt_decode())
                    fresh.append(await wsauth_fresh())
                else:
                    fresh.append(await wsauth_fresh())
                    bare.append(pyjwt_decode())
                token = batch[0]  # verified above: now a cache hit
                start = time.perf_counter()
                for _ in range(cached_calls):
                    await validate_access_token(token, conf=conf)
                cached.append((time.perf_counter() - start) / cached_calls * 1e6)

            ratio = ratios(fresh, bare)
            raw[label] = {
                "bytes": length,
                "wsauth_new_us": fresh,
                "pyjwt_us": bare,
                "cached_us": cached,
            }
            res.add(SECTION, f"pyjwt decode, cached key: {label} ({length} B)", median(bare), "us")
            res.add(
                SECTION,
                f"wsauth new token: {label}",
                median(fresh),
                "us",
                ratio=ratio,
                vs="pyjwt",
                target="<= 1.05x pyjwt",
                met=ratio <= 1.05,
            )
            hit = median(cached)
            res.add(
                SECTION,
                f"wsauth token seen before: {label}",
                hit,
                "us",
                ratio=hit / median(bare),
                vs="pyjwt",
                target="<= 10 us",
                met=hit <= 10,
            )
    raw["breakdown"] = breakdown(ctx, conf, keys)
    res.raw[SECTION] = raw


def breakdown(ctx: Context, conf: Any, keys: dict[str, Any]) -> dict[str, float]:
    """Where a new RS256 token's time goes: digest, parse, header, signature, claims."""
    import hashlib

    from wsauth import tokens

    token = ctx.issuer.token("RS256", size=700)
    n = 2000
    out: dict[str, float] = {}

    def timed(name: str, fn: Any) -> None:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        out[name] = (time.perf_counter() - start) / n * 1e6

    timed("sha256 digest", lambda: hashlib.sha256(token.encode()).digest())
    timed("parse (split, base64, JSON)", lambda: tokens.parse(token, conf))
    header, claims, signing_input, signature = tokens.parse(token, conf)
    timed("check_header", lambda: tokens.check_header(header, conf))
    rsa = get_default_algorithms()["RS256"]
    timed("RSA verify (cryptography)", lambda: rsa.verify(signing_input, keys["RS256"], signature))
    timed("check_claims", lambda: tokens.check_claims(claims, conf))
    for name, value in out.items():
        ctx.results.add(SECTION, f"RS256 new-token breakdown: {name}", value, "us")
    return out
