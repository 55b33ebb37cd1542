"""Per-socket limits that only the server can enforce, on Daphne: bytes queued for a
client that does not read, fragments per message, frames per second.

The application sees whole messages and never the write buffer. A client that never
reads lets every message sent to it pile up in the server's write buffer (measured: 300
echoes of 200 KiB took Daphne from 87 to 144 MiB, and the socket stayed open); a client
that sends 60,000 one-byte continuation fragments of a message it never ends costs
autobahn 0.8 s of CPU (it re-slices its buffer once per frame) and stalls every other
socket of the process, while no message, and so no ``MESSAGE_RATE``, is ever counted.

``guard(send)`` gives the socket's protocol object (reached through Daphne's ``send``,
``functools.partial(server.handle_reply, protocol)``) a subclass of its own class that
counts each frame as it begins, and hands the middleware the transport whose unsent bytes
it looks at before each message is written (``over_queue``):

- ``MAX_QUEUED_BYTES``: what the transport holds unsent, plus the next message; beyond,
  close 4008 (as Centrifugo's ``client_queue_max_size``, 1 MiB by default);
- ``MAX_FRAGMENTS``: frames per message; beyond, close 4009;
- ``FRAME_RATE``: every frame the client sends (data, continuation, ping), authenticated
  or not yet, in windows of the rate's period (a burst may reach twice the count);
  beyond, close 4429.

A refused socket gets its close frame and no more reading; a client that does not read it
is dropped a second later, its buffer with it. Per socket: four attributes in the
protocol's dict (about 100 entries in room for 170: no resize) and a slot in the
middleware's ``send``. With
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
    _guarded.clear()  # built with the old limits (sockets open already keep theirs)


def queued_bytes(transport: Any) -> int:
    """Bytes a Twisted transport holds unsent (a TLS wrapper's and the TCP one's below)."""
    total = 0
    for _ in range(3):
        if transport is None:
            break
        buffer = getattr(transport, "dataBuffer", None)
        if isinstance(buffer, _BUFFERS):
            offset = getattr(transport, "offset", 0)
            pending = getattr(transport, "_tempDataLen", 0)
            total += len(buffer) - (offset if type(offset) is int else 0)
            total += pending if type(pending) is int else 0
        transport = getattr(transport, "transport", None)
    return total


_BUFFERS = (bytes, bytearray, memoryview)


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
    protocol._wsauth_refused = True
    protocol.wasClean = False
    protocol.wasNotCleanReason = reason
    protocol.sendCloseFrame(code=code, reasonUtf8=reason.encode()[:123], isReply=False)
    protocol.dropConnection(abort=False)  # flushes the close frame, then closes
    transport = getattr(protocol, "transport", None)
    abort = getattr(transport, "abortConnection", None)
    if callable(abort):
        import txaio  # autobahn's scheduler, on the reactor Daphne runs

        txaio.call_later(CLOSE_GRACE, abort)  # type: ignore[attr-defined]


def _guarded_class(cls: type, rules: Limits) -> type:
    """``cls`` with ``rules`` counted where autobahn's Twisted adapter passes frames on
    (``_onMessageBegin``, ``_onMessageFrameBegin``, ``_onPing``, ``_onPong``: one line
    each, calling the public hook). Replacing a pass-through adds no call per frame; the
    common case is a few attribute reads, and the clock is read once per ``FRAME_RATE``
    count of frames."""
    fragments = rules.max_fragments or _UNLIMITED
    frames, per = rules.frames or _UNLIMITED, rules.per

    def counted(self: Any) -> bool:
        """Count a frame; False (and the socket refused) past FRAME_RATE."""
        n = self._wsauth_frames + 1
        self._wsauth_frames = n
        if n >= self._wsauth_window_at:  # FRAME_RATE's count since the window opened
            now = time.monotonic()
            if now < self._wsauth_window_end:
                _refuse(self, close_codes.RATE_LIMITED, "too many frames (FRAME_RATE)")
                return False
            self._wsauth_window_end, self._wsauth_window_at = now + per, n + frames
        return True

    def _onMessageBegin(self: Any, is_binary: bool) -> None:
        self._wsauth_message_at = self._wsauth_frames  # frames before this message
        self.onMessageBegin(is_binary)

    def _onMessageFrameBegin(self: Any, length: int) -> None:
        n = self._wsauth_frames + 1
        if n - self._wsauth_message_at > fragments:
            reason = f"a message in more than {fragments} fragments (MAX_FRAGMENTS)"
            _refuse(self, close_codes.MESSAGE_TOO_BIG, reason)
        elif n < self._wsauth_window_at:  # the common case, inline
            self._wsauth_frames = n
            self.onMessageFrameBegin(length)
        elif counted(self):
            self.onMessageFrameBegin(length)

    def _onPing(self: Any, payload: bytes) -> None:
        if counted(self):
            self.onPing(payload)

    def _onPong(self: Any, payload: bytes) -> None:
        if counted(self):
            self.onPong(payload)

    return type(
        f"Guarded{cls.__name__}",
        (cls,),
        {
            "__module__": __name__,
            "_wsauth_guarded": True,
            "_onMessageBegin": _onMessageBegin,
            "_onMessageFrameBegin": _onMessageFrameBegin,
            "_onPing": _onPing,
            "_onPong": _onPong,
        },
    )


_UNLIMITED = 1 << 62
_HOOKS = ("_onMessageBegin", "_onMessageFrameBegin", "_onPing", "_onPong")
_guarded: dict[type, type] = {}


def over_queue(send: Any, transport: Any, message: dict[str, Any]) -> bool:
    """Called by the middleware for a message to a socket whose transport holds unsent
    bytes: True when it must not be sent (the client does not read; refused now or
    before)."""
    protocol = send.args[0]
    if getattr(protocol, "_wsauth_refused", False):
        return True  # until Daphne sees the connection lost
    limit = limits().max_queued
    if limit is None or message.get("type") != "websocket.send":
        return False
    content = message.get("bytes") or message.get("text") or ""
    queued = queued_bytes(transport)
    if queued + len(content) <= limit or protocol.state != protocol.STATE_OPEN:
        return False
    reason = f"{queued} bytes queued for a client that does not read them"
    _refuse(protocol, close_codes.SLOW_CLIENT, f"{reason} (MAX_QUEUED_BYTES {limit})")
    return True


def _protocol(send: Any) -> Any | None:
    """Daphne's (autobahn's) protocol object behind ``send``, or ``None``."""
    if isinstance(send, functools.partial) and send.args:
        candidate = send.args[0]
        needed = (*_HOOKS, "onMessageFrameBegin", "sendCloseFrame", "dropConnection")
        if all(callable(getattr(candidate, name, None)) for name in needed):
            return candidate
    return None


def _tcp(transport: Any) -> Any | None:
    """The Twisted TCP transport under ``transport`` (itself, or below a TLS wrapper)."""
    for _ in range(3):
        if transport is None:
            return None
        if isinstance(getattr(transport, "dataBuffer", None), _BUFFERS) and isinstance(
            getattr(transport, "_tempDataLen", None), int
        ):
            return transport
        transport = getattr(transport, "transport", None)
    return None


def guard(send: Any) -> Any | None:
    """Put the socket behind ``send`` under the limits. Returns the transport whose unsent
    bytes the caller watches (``over_queue``) when ``MAX_QUEUED_BYTES`` is on, else None;
    None, and nothing changed, when ``send`` is not Daphne's."""
    protocol = _protocol(send)
    if protocol is None:
        return None
    rules = limits()
    if rules.max_fragments is not None or rules.frames is not None:
        if not getattr(protocol, "_wsauth_guarded", False):
            cls = type(protocol)
            guarded = _guarded.get(cls)
            if guarded is None:
                guarded = _guarded[cls] = _guarded_class(cls, rules)
            protocol.__class__ = guarded
            # On the instance, not the class: what is read on every frame is then a hit
            # in the instance's dict, not a miss that falls through to the class.
            protocol._wsauth_frames = protocol._wsauth_message_at = 0
            protocol._wsauth_window_at, protocol._wsauth_window_end = 0, 0.0
    if rules.max_queued is None:
        return None
    return _tcp(getattr(protocol, "transport", None))
