"""The frame counters of wsauth.contrib.daphne_limits, driven the way autobahn's Twisted
adapter calls them, over arbitrary sequences of frames (the live tests:
tests/test_frames_live.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsauth.contrib import daphne_limits
from wsauth.contrib.daphne_limits import Limits, _guarded_class


class FakeProtocol:
    """What the guarded methods touch of autobahn's protocol; records what got through."""

    inside_message = False
    transport = None
    client_addr = ("127.0.0.1", 1)
    path = b"/ws/x/"

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.closed: int | None = None

    def onMessageBegin(self, is_binary: bool) -> None:
        self.seen.append("begin")

    def onMessageFrameBegin(self, length: int) -> None:
        self.seen.append("frame")

    def onPing(self, payload: bytes) -> None:
        self.seen.append("ping")

    def onPong(self, payload: bytes) -> None:
        self.seen.append("pong")

    def sendCloseFrame(self, code: int, reasonUtf8: bytes, isReply: bool) -> None:
        self.closed = code

    def dropConnection(self, abort: bool = False) -> None:
        pass


def guarded(rules: Limits) -> Any:
    protocol = FakeProtocol()
    protocol.__class__ = _guarded_class(FakeProtocol, rules)
    protocol._wsauth_frames = protocol._wsauth_message_at = protocol._wsauth_window_at = 0
    protocol._wsauth_window_end = 0.0
    return protocol


def feed(protocol: Any, frames: list[tuple[str, bool]]) -> int:
    """Frames as autobahn delivers them: ("data", fin) or ("ping", _). How many were
    delivered before the socket was refused."""
    for delivered, (kind, fin) in enumerate(frames):
        if protocol.closed is not None:
            return delivered - 1
        if kind == "ping":
            protocol._onPing(b"p")
        else:
            if not protocol.inside_message:
                protocol._onMessageBegin(False)
                protocol.inside_message = True
            protocol._onMessageFrameBegin(1)
            if fin:
                protocol.inside_message = False
    return len(frames) if protocol.closed is None else len(frames) - 1


FRAMES = st.lists(st.tuples(st.sampled_from(["data", "ping"]), st.booleans()), max_size=60)


@given(FRAMES, st.integers(min_value=1, max_value=8))
def test_a_message_is_refused_exactly_past_max_fragments(frames, limit) -> None:
    protocol = guarded(Limits(max_queued=None, max_fragments=limit, frames=None, per=1.0))
    feed(protocol, frames)
    # The model: frames since the message began (pings inside it too), at each data frame.
    expected, inside, since = None, False, 0
    for kind, fin in frames:
        if kind == "ping":
            since += 1 if inside else 0
            continue
        since = since + 1 if inside else 1
        if since > limit:
            expected = 4009
            break
        inside = not fin
    assert protocol.closed == expected


@pytest.mark.parametrize("count", [1, 3, 50])
def test_frames_are_refused_past_the_rate_within_its_window(monkeypatch, count) -> None:
    clock = [100.0]
    monkeypatch.setattr(daphne_limits.time, "monotonic", lambda: clock[0])
    protocol = guarded(Limits(max_queued=None, max_fragments=None, frames=count, per=1.0))
    burst = [("ping", True)] * (3 * count)
    delivered = feed(protocol, burst)
    assert protocol.closed == 4429
    assert count <= delivered <= 2 * count  # a burst may reach twice the count
    # A client within the rate is never refused, however long it goes on.
    protocol = guarded(Limits(max_queued=None, max_fragments=None, frames=count, per=1.0))
    for _ in range(20):
        assert feed(protocol, [("data", True)] * count) == count
        clock[0] += 1.0
    assert protocol.closed is None
    assert protocol.seen.count("frame") == 20 * count
