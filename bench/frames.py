"""Section 7: what the server-side frame limits (``wsauth.contrib.daphne_limits``) save
and what they cost, wsauth with them against wsauth without (``wsauth-unguarded``):

- a flood of 60,000 one-byte continuation fragments on a first-message route, no
  credential: the server's CPU for it, and the echo latency of another socket meanwhile;
- 300 echoes of 200 KiB to a socket that never reads: the server's RSS growth;
- the cost on every message: server CPU per echo round trip, interleaved rounds, and
  with ``--callgrind`` the instructions per round trip (repeatable where CPU is not).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from typing import Any

from .context import Context
from .handshakes import callgrind_server, instructions, retried
from .load import echo_round_trips, open_ws, token_cred
from .report import median, ratios
from .wsclient import ORIGIN, WS

SECTION = "frames"
CALLGRIND_MESSAGES = 300
FRAGMENTS = 60_000
ECHOES, ECHO_SIZE = 300, 200 * 1024
NAMES = ("wsauth-unguarded", "wsauth")


def _frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    key = os.urandom(4)
    mask = (key * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    return head + key + body if n else head + key


def _silent_socket(port: int, token: str) -> socket.socket:
    """Blocking: an upgraded socket with a 4 KiB receive buffer, never to be read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    request = (
        f"GET /ws/echo/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\nOrigin: {ORIGIN}\r\n"
        f"Sec-WebSocket-Protocol: chat, authorization_bearer_{token}\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    if b" 101 " not in head:
        raise RuntimeError(f"no upgrade: {head[:80]!r}")
    return sock


def _feed(sock: socket.socket) -> int:
    """Blocking: send the echoes' requests until the server gives up; how many were sent."""
    frame = _frame(0x1, b"y" * ECHO_SIZE)
    for sent in range(ECHOES):
        try:
            sock.sendall(frame)
        except OSError:
            return sent
        time.sleep(0.011)  # within MESSAGE_RATE
    return ECHOES


async def _flood(ctx: Context, name: str, token: str) -> dict[str, float]:
    server = ctx.server(name)
    other = await open_ws(server.port, token_cred(token))
    await other.recv()
    flooder = await WS.connect(server.port, "/ws/echo/inband/")
    flood = _frame(0x1, b"x", fin=False) + _frame(0x0, b"x", fin=False) * (FRAGMENTS - 1)
    latencies: list[float] = []

    async def probe() -> None:
        for _ in range(20):
            start = time.perf_counter()
            await echo_round_trips(other, 1)
            latencies.append(time.perf_counter() - start)
            await asyncio.sleep(0.02)

    before = server.cpu_seconds()
    probing = asyncio.create_task(probe())
    try:
        flooder.writer.write(flood)
        await flooder.writer.drain()
    except ConnectionError:
        pass
    await probing
    await asyncio.sleep(0.5)
    cpu = server.cpu_seconds() - before
    flooder.abort()
    await other.close()
    return {"cpu_s": cpu, "max_latency_ms": max(latencies) * 1e3}


async def _slow_reader(ctx: Context, name: str, token: str) -> float:
    server = ctx.fresh_server(name, name)  # a process of its own: RSS never shrinks back
    sock = await asyncio.to_thread(_silent_socket, server.port, token)
    before = server.rss_bytes()
    await asyncio.to_thread(_feed, sock)
    await asyncio.sleep(1.5)
    growth = (server.rss_bytes() - before) / 2**20
    sock.close()
    return growth


async def run(ctx: Context) -> None:
    quick = ctx.options.quick
    token = ctx.issuer.token("RS256", lifetime=3600)
    raw: dict[str, Any] = {"flood": {}, "slow_reader_mib": {}, "cpu_us": {}}
    for name in NAMES:
        raw["flood"][name] = await _flood(ctx, name, token)
        raw["slow_reader_mib"][name] = await _slow_reader(ctx, name, token)

    rounds, count = (3, 1500) if quick else (5, 3000)
    sockets = {}
    for name in NAMES:
        sockets[name] = await open_ws(ctx.server(name).port, token_cred(token))
        await sockets[name].recv()
        await echo_round_trips(sockets[name], 200)  # warm-up
    cpu: dict[str, list[float]] = {name: [] for name in NAMES}
    for r in range(rounds):
        for name in NAMES if r % 2 == 0 else tuple(reversed(NAMES)):
            server = ctx.server(name)
            before = server.cpu_seconds()
            await echo_round_trips(sockets[name], count)
            cpu[name].append((server.cpu_seconds() - before) / count * 1e6)
    for ws in sockets.values():
        await ws.close()
    raw["cpu_us"] = cpu
    ctx.results.raw[SECTION] = raw

    res = ctx.results
    off, on = raw["flood"]["wsauth-unguarded"], raw["flood"]["wsauth"]
    res.add(SECTION, "fragment flood, server CPU: unguarded", off["cpu_s"], "s")
    res.add(SECTION, "fragment flood, server CPU: wsauth", on["cpu_s"], "s", vs="unguarded")
    res.add(SECTION, "fragment flood, another echo's worst: unguarded", off["max_latency_ms"], "ms")
    res.add(SECTION, "fragment flood, another echo's worst: wsauth", on["max_latency_ms"], "ms")
    res.add(
        SECTION,
        "never-reading client, RSS growth: unguarded",
        raw["slow_reader_mib"]["wsauth-unguarded"],
        "MiB",
    )
    res.add(
        SECTION,
        "never-reading client, RSS growth: wsauth",
        raw["slow_reader_mib"]["wsauth"],
        "MiB",
        target="< 16 MiB",
        met=raw["slow_reader_mib"]["wsauth"] < 16,
    )
    ratio = ratios(cpu["wsauth"], cpu["wsauth-unguarded"])
    res.add(SECTION, "server CPU/echo: unguarded", median(cpu["wsauth-unguarded"]), "us")
    res.add(
        SECTION,
        "server CPU/echo: wsauth",
        median(cpu["wsauth"]),
        "us",
        ratio=ratio,
        vs="unguarded",
        target="<= 1.03x unguarded",
        met=ratio <= 1.03,
    )

    if ctx.options.callgrind:
        await run_callgrind(ctx, token)


async def run_callgrind(ctx: Context, token: str) -> None:
    per: dict[str, float] = {}
    for name in NAMES:
        async with callgrind_server(ctx, f"frames-{name}", name) as server:
            ws = await retried(lambda port=server.port: open_ws(port, token_cred(token)))
            await ws.recv()
            await echo_round_trips(ws, 50)

            async def work(ws: WS = ws) -> None:
                await echo_round_trips(ws, CALLGRIND_MESSAGES)

            per[name], _ = await instructions(server, work, CALLGRIND_MESSAGES)
            await ws.close()
    ctx.results.raw["callgrind_frames"] = per
    ratio = per["wsauth"] / per["wsauth-unguarded"]
    res = ctx.results
    label = "instructions/echo round trip (callgrind)"
    res.add(SECTION, f"{label}: unguarded", per["wsauth-unguarded"] / 1e3, "k instr")
    res.add(
        SECTION,
        f"{label}: wsauth",
        per["wsauth"] / 1e3,
        "k instr",
        ratio=ratio,
        vs="unguarded",
        target="<= 1.01x unguarded",
        met=ratio <= 1.01,
    )
