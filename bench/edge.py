"""Section ``edge``: what the server edge adds to each handshake, in this process. The
scope's copy without the token, finding the server's connection behind ``send`` (as
Daphne and uvicorn hand it, and behind two closures such as Sentry's), and forgetting
the token in the server's scope after the accept. Real server classes, no sockets."""

from __future__ import annotations

import functools
import time
from typing import Any

from . import inproc
from .context import Context
from .report import median

SECTION = "edge"
PREFIX = "authorization_bearer_"


def _timed(fn: Any, n: int, rounds: int) -> float:
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        results.append((time.perf_counter() - start) / n * 1e6)
    return median(results)


async def run(ctx: Context) -> None:
    inproc.setup(ctx.issuer)
    import daphne.ws_protocol
    import uvicorn.protocols.websockets.websockets_sansio_impl as sansio
    from django.utils.module_loading import import_string

    from wsauth import edge

    n, rounds = (2000, 3) if ctx.options.quick else (20000, 7)
    token = ctx.issuer.token("RS256", size=700)
    offer = f"chat, {PREFIX}{token}".encode()
    headers = [
        (b"host", b"chat.example.com"),
        (b"user-agent", b"Mozilla/5.0 " + b"x" * 100),
        (b"origin", b"https://chat.example.com"),
        (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"sec-websocket-version", b"13"),
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-protocol", offer),
        (b"cookie", b"sessionid=" + b"c" * 200),
    ]
    adapters = [import_string(path)() for path in edge.DEFAULT_ADAPTERS]
    on_daphne = daphne.ws_protocol.WebSocketProtocol.__new__(daphne.ws_protocol.WebSocketProtocol)
    on_uvicorn = sansio.WebSocketsSansIOProtocol.__new__(sansio.WebSocketsSansIOProtocol)
    daphne_send = functools.partial(
        print, on_daphne
    )  # Daphne's shape: partial(handle_reply, protocol)

    def closure_around(send: Any) -> Any:  # Sentry's and OpenTelemetry's shape
        async def wrapped(message: Any) -> None:
            await send(message)

        return wrapped

    outer = closure_around(closure_around(daphne_send))

    def scope() -> dict[str, Any]:
        return {"headers": list(headers), "subprotocols": ["chat", PREFIX + token]}

    res = ctx.results
    res.add(
        SECTION,
        "scope's copy without the token",
        _timed(lambda: edge.headers_without_token(headers, PREFIX), n, rounds),
        "us",
    )
    for label, send in (
        ("Daphne's partial", daphne_send),
        ("uvicorn's bound method", on_uvicorn.data_received),
        ("two closures around Daphne's", outer),
    ):
        res.add(
            SECTION,
            f"find the connection: {label}",
            _timed(lambda s=send: edge.find(s, adapters), n, rounds),
            "us",
        )
    base = _timed(scope, n, rounds)
    forgetting = _timed(lambda: edge.forget_in_scope(scope(), PREFIX), n, rounds)
    res.add(SECTION, "forget the token in the server's scope", max(0.0, forgetting - base), "us")
