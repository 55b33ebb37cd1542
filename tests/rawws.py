"""A WebSocket client at the frame level, for what ordinary clients never send: fragments
by the thousand, messages that never end, a reader that never reads.

The handshake and the framing are RFC 6455, written here (not a library) so a test can
send exactly the bytes it wants and choose its own receive buffer."""

from __future__ import annotations

import base64
import os
import socket
import struct
import time

TEXT, BINARY, CONTINUATION, CLOSE, PING = 0x1, 0x2, 0x0, 0x8, 0x9


def frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """One masked client frame."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return head + mask + masked


class RawSocket:
    """An upgraded TCP connection. ``rcvbuf`` shrinks the receive buffer before connecting
    (a small window: the server's writes pile up in the server, not in our kernel)."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        protocols: list[str] | None = None,
        rcvbuf: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if protocols:
            lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed during the handshake: {self.buffer!r}")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_text(self, text: str) -> None:
        self.send(frame(TEXT, text.encode()))

    def recv_frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """The next whole frame from the server: ``(opcode, payload)``."""
        deadline = time.monotonic() + timeout
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self.buffer += chunk

    def _parse(self) -> tuple[int, bytes] | None:
        if len(self.buffer) < 2:
            return None
        opcode, n, at = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
        if n == 126:
            if len(self.buffer) < 4:
                return None
            n, at = struct.unpack("!H", self.buffer[2:4])[0], 4
        elif n == 127:
            if len(self.buffer) < 10:
                return None
            n, at = struct.unpack("!Q", self.buffer[2:10])[0], 10
        if len(self.buffer) < at + n:
            return None
        payload, self.buffer = self.buffer[at : at + n], self.buffer[at + n :]
        return opcode, payload

    def close_code(self, timeout: float = 5.0) -> int | None:
        """Read until the server's close frame: its code (None: the connection dropped)."""
        try:
            while True:
                opcode, payload = self.recv_frame(timeout)
                if opcode == CLOSE:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        except (ConnectionError, OSError):
            return None

    def close(self) -> None:
        self.sock.close()
