"""Per-socket limits that only the server can enforce, on Daphne: bytes queued for a
client that does not read, fragments per message, frames per second.

The application sees whole messages and never the write buffer. A client that never
reads lets every message sent to it pile up in the server's write buffer (measured: 300
echoes of 200 KiB took Daphne from 87 to 144 MiB, and the socket stayed open); a client
that sends 60,000 one-byte continuation fragments of a message it never ends costs
autobahn 0.4 s of CPU (it re-slices its buffer once per frame) and stalls every other
socket of the process, while no message, and so no ``MESSAGE_RATE``, is ever counted.

``guard(send)`` gives the socket's protocol object (reached through Daphne's ``send``,
``functools.partial(server.handle_reply, protocol)``) a subclass of its own class that
checks, before each frame is parsed and before each message is written:

- ``MAX_QUEUED_BYTES``: what the transport holds unsent, plus the next message; beyond,
  close 4008 (as Centrifugo's ``client_queue_max_size``, 1 MiB by default);
- ``MAX_FRAGMENTS``: frames per message; beyond, close 4009;
- ``FRAME_RATE``: every frame the client sends (data, continuation, ping), authenticated
  or not yet; beyond, close 4429.

A refused socket gets its close frame and no more reading; a client that does not read it
is dropped a second later, its buffer with it. Nothing per socket is allocated until
its first frame (a few attributes in the protocol's dict, which has room for them). With
another server nothing is found and nothing is changed: what a proxy must cap there is
in docs/security.md.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

from .. import close_codes
from ..conf import get_conf, on_reset

logger = logging.getLogger("wsauth")

#: Seconds a refused client has to read its close frame before the connection is aborted.
CLOSE_GRACE = 1.0


@dataclass(frozen=True, slots=True)
class Limits:
    max_queued: int | None
    max_fragments: int | None
    frames: int | None  # FRAME_RATE's count...
    per: float  # ... per this many seconds

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.max_queued, self.max_fragments, self.frames))


_limits: Limits | None = None


def limits() -> Limits:
    global _limits
    if _limits is None:
        from ..admission.policies import Rate

        conf = get_conf()
        rate = Rate.parse(conf.frame_rate)
        _limits = Limits(
            max_queued=conf.max_queued_bytes,
            max_fragments=conf.max_fragments,
            frames=None if rate is None else rate.count,
            per=1.0 if rate is None else rate.seconds,
        )
    return _limits


@on_reset
def _drop() -> None:
    global _limits
    _limits = None


def queued_bytes(transport: Any) -> int:
    """Bytes a Twisted transport holds unsent (a TLS wrapper's and the TCP one's below)."""
    total = 0
    for _ in range(3):
        if transport is None:
            break
        buffer = getattr(transport, "dataBuffer", None)
        if isinstance(buffer, bytes | bytearray | memoryview):
            offset = getattr(transport, "offset", 0)
            pending = getattr(transport, "_tempDataLen", 0)
            total += len(buffer) - (offset if isinstance(offset, int) else 0)
            total += pending if isinstance(pending, int) else 0
        transport = getattr(transport, "transport", None)
    return total


def _refuse(protocol: Any, code: int, reason: str) -> None:
    """Send the close frame, stop reading (no further frame is parsed), and abort the
    connection if the client has not read it within ``CLOSE_GRACE``."""
    path = getattr(protocol, "path", b"-")
    logger.warning(
        "wsauth: closing socket code=%s path=%s client=%s: %s",
        code,
        path.decode("latin-1") if isinstance(path, bytes) else path,
        ":".join(map(str, getattr(protocol, "client_addr", None) or ("-",))),
        reason,
    )
    protocol.wasClean = False
    protocol.wasNotCleanReason = reason
    protocol.sendCloseFrame(code=code, reasonUtf8=reason.encode()[:123], isReply=False)
    protocol.dropConnection(abort=False)  # flushes the close frame, then closes
    transport = getattr(protocol, "transport", None)
    abort = getattr(transport, "abortConnection", None)
    if callable(abort):
        import txaio  # autobahn's scheduler, on the reactor Daphne runs

        txaio.call_later(CLOSE_GRACE, abort)  # type: ignore[attr-defined]


class _Guard:
    """Mixed in before Daphne's protocol class (see ``guard``)."""

    # Class-level starting values: an instance gets its own at its first frame.
    _wsauth_allowance = -1.0  # frames it may send now (a token bucket); -1: unset
    _wsauth_stamp = 0.0
    _wsauth_fragments = 0

    def onFrameBegin(self) -> None:
        refusal = _frame_refusal(self, limits())
        if refusal is not None:
            _refuse(self, *refusal)
            return
        super().onFrameBegin()  # type: ignore[misc]

    def serverSend(self, content: Any, binary: bool = False) -> None:
        limit = limits().max_queued
        if limit is not None and self.state == self.STATE_OPEN:  # type: ignore[attr-defined]
            queued = queued_bytes(self.transport)  # type: ignore[attr-defined]
            if queued and queued + len(content) > limit:
                reason = f"{queued} bytes queued for a client that does not read them"
                _refuse(self, close_codes.SLOW_CLIENT, f"{reason} (MAX_QUEUED_BYTES {limit})")
                return
        super().serverSend(content, binary)  # type: ignore[misc]


def _frame_refusal(protocol: Any, rules: Limits) -> tuple[int, str] | None:
    frame = protocol.current_frame
    if rules.max_fragments is not None and frame.opcode <= 7:  # a data frame
        fragments = protocol._wsauth_fragments + 1 if protocol.inside_message else 1
        protocol._wsauth_fragments = fragments
        if fragments > rules.max_fragments:
            return (
                close_codes.MESSAGE_TOO_BIG,
                f"a message in more than {rules.max_fragments} fragments (MAX_FRAGMENTS)",
            )
    if rules.frames is not None:
        now = time.monotonic()
        allowance = protocol._wsauth_allowance
        if allowance < 0:
            allowance = float(rules.frames)
        else:
            refill = (now - protocol._wsauth_stamp) * rules.frames / rules.per
            allowance = min(float(rules.frames), allowance + refill)
        protocol._wsauth_stamp = now
        if allowance < 1:
            protocol._wsauth_allowance = allowance
            return close_codes.RATE_LIMITED, "too many frames (FRAME_RATE)"
        protocol._wsauth_allowance = allowance - 1
    return None


_guarded: dict[type, type] = {}


def _protocol(send: Any) -> Any | None:
    """Daphne's (autobahn's) protocol object behind ``send``, or ``None``."""
    if isinstance(send, functools.partial) and send.args:
        candidate = send.args[0]
        if all(
            callable(getattr(candidate, name, None))
            for name in ("onFrameBegin", "serverSend", "sendCloseFrame", "dropConnection")
        ):
            return candidate
    return None


def guard(send: Any) -> bool:
    """Put the socket behind ``send`` under the limits; True when it is a Daphne socket."""
    protocol = _protocol(send)
    if protocol is None:
        return False
    if isinstance(protocol, _Guard) or not limits().active:
        return True
    cls = type(protocol)
    guarded = _guarded.get(cls)
    if guarded is None:
        guarded = _guarded[cls] = type(f"Guarded{cls.__name__}", (_Guard, cls), {})
    protocol.__class__ = guarded
    return True
