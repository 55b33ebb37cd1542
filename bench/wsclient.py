"""A lean asyncio WebSocket and HTTP client for load: a few hundred lines of Python cost
less per handshake than a full client library, so the server, not the client, is measured.

Only what the benchmarks need: the opening handshake, masked text frames, unfragmented
server frames, the closing handshake, and one-shot HTTP requests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from typing import Any

ORIGIN = "http://bench.test"


class HandshakeFailed(Exception):
    """No 101 answer: the status line, or what happened instead."""


def _mask(payload: bytes) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    if n == 0:
        return key
    mask = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    return key + masked


def _frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + _mask(payload)


class WS:
    """One client WebSocket connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(
        cls,
        port: int,
        path: str = "/ws/echo/",
        *,
        subprotocols: list[str] | None = None,
        cookie: str | None = None,
        origin: str | None = ORIGIN,
        limit: float = 30.0,
    ) -> WS:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, limit=1 << 20), limit
        )
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if origin:
            lines.append(f"Origin: {origin}")
        if subprotocols:
            lines.append("Sec-WebSocket-Protocol: " + ", ".join(subprotocols))
        if cookie:
            lines.append(f"Cookie: {cookie}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), limit)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            writer.close()
            raise HandshakeFailed("connection closed during handshake") from exc
        status = head.split(b"\r\n", 1)[0].decode("latin-1")
        if " 101 " not in status + " ":
            writer.close()
            raise HandshakeFailed(status)
        return cls(reader, writer)

    async def recv(self) -> str | None:
        """The next text message, or ``None`` when the server closed."""
        while True:
            b0, b1 = await self.reader.readexactly(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            payload = await self.reader.readexactly(n) if n else b""
            if opcode == 0x1:
                return payload.decode()
            if opcode == 0x8:
                return None
            if opcode == 0x9:  # ping
                self.writer.write(_frame(0xA, payload))

    async def send(self, text: str) -> None:
        self.writer.write(_frame(0x1, text.encode()))
        await self.writer.drain()

    async def close(self) -> None:
        """The closing handshake: send 1000, wait for the server's close and the EOF."""
        try:
            self.writer.write(_frame(0x8, struct.pack("!H", 1000)))
            while await self.recv() is not None:
                pass
            await self.reader.read()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.writer.close()

    def abort(self) -> None:
        self.writer.close()


async def http_request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    limit: float = 30.0,
) -> tuple[int, bytes]:
    """One HTTP/1.1 request on its own connection: ``(status, body)``."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), limit)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    try:
        raw = await asyncio.wait_for(reader.read(), limit)
    finally:
        writer.close()
    head, _, content = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, content


async def post_ticket(port: int, token: str, origin: str | None = ORIGIN) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    if origin:
        headers["Origin"] = origin
    status, content = await http_request(port, "POST", "/wsauth/ticket/", headers)
    if status != 200:
        raise RuntimeError(f"ticket POST answered {status}: {content[:200]!r}")
    data: dict[str, Any] = json.loads(content)
    return str(data["ticket"])
