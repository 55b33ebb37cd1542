"""What only the server sees, on a real Daphne, with clients that misbehave at the frame
level (tests/rawws.py): a reader that never reads (MAX_QUEUED_BYTES, 4008), messages in
endless fragments (MAX_FRAGMENTS, 4009), floods of frames that are no messages
(FRAME_RATE, 4429), before authentication as after. Ordinary clients, fragmenting ones
included, pass."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.daphne import DaphneServer, migrated_project_env, with_overrides
from tests.issuer import Issuer
from tests.rawws import CONTINUATION, PING, TEXT, RawSocket, frame
from wsauth.contrib.daphne_limits import guard, queued_bytes

PREFIX = "authorization_bearer_"


class Stack:
    def __init__(self, issuer: Issuer, server: DaphneServer, busy: DaphneServer) -> None:
        self.issuer, self.server, self.busy = issuer, server, busy


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("frames")
    issuer = Issuer().start()
    env = migrated_project_env(tmp, issuer)
    server = DaphneServer(env, tmp / "daphne.log").start()
    # A busy room: one member may send far more than MESSAGE_RATE's default.
    rates = {"MESSAGE_RATE": "5000/second", "FRAME_RATE": "10000/second"}
    busy = DaphneServer(with_overrides(env, **rates), tmp / "busy.log")
    busy.start()
    yield Stack(issuer, server, busy)
    server.stop()
    busy.stop()
    issuer.stop()


def rss_mib(server: DaphneServer) -> float:
    assert server.proc is not None
    with open(f"/proc/{server.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def logged(server: DaphneServer, text: str, since: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if text in server.log()[since:]:
            return True
        time.sleep(0.05)
    return False


def echo_works(stack: Stack, server: DaphneServer | None = None) -> bool:
    server = server or stack.server
    token = stack.issuer.token()
    with connect(server.ws + "/ws/echo/", subprotocols=["chat", PREFIX + token]) as ws:
        assert ws.recv(timeout=5).startswith("Hello")
        ws.send("ping")
        return "ping" in str(ws.recv(timeout=5))


# -- a client that never reads ----------------------------------------------------------------


def test_a_client_that_never_reads_is_closed_and_its_backlog_dropped(stack: Stack) -> None:
    """300 echoes of 200 KiB to a socket that never reads took Daphne from 87 to 144 MiB,
    and the socket stayed open."""
    server, since = stack.server, len(stack.server.log())
    token = stack.issuer.token()
    silent = RawSocket("127.0.0.1", server.port, "/ws/echo/", ["chat", PREFIX + token], rcvbuf=4096)
    assert silent.status == 101
    before = rss_mib(server)
    payload = b"y" * (200 * 1024)
    sent = 0
    try:
        for _ in range(300):
            silent.send(frame(TEXT, payload))
            sent += 1
            time.sleep(0.01)  # within MESSAGE_RATE
    except OSError:
        pass  # the server gave up on us: aborted, with what it held for us
    assert sent < 300
    assert logged(server, "code=4008", since)
    assert "MAX_QUEUED_BYTES" in server.log()[since:]
    assert rss_mib(server) - before < 16  # was 57 MiB more, and growing
    silent.close()
    assert echo_works(stack)


def test_a_silent_member_of_a_busy_room_is_closed(stack: Stack) -> None:
    server, since = stack.busy, len(stack.busy.log())
    silent = RawSocket(
        "127.0.0.1",
        server.port,
        "/ws/chat/busy/",
        ["chat", PREFIX + stack.issuer.token(sub="silent")],
        rcvbuf=4096,
    )
    assert silent.status == 101
    talker_token = stack.issuer.token(sub="talker", name="Talker")
    with connect(server.ws + "/ws/chat/busy/", subprotocols=["chat", PREFIX + talker_token]) as ws:
        message = json.dumps({"message": "z" * 2000})
        for i in range(20_000):
            ws.send(message)
            assert json.loads(ws.recv(timeout=5))["user"] == "Talker"  # the talker reads
            if i % 100 == 0 and "code=4008" in server.log()[since:]:
                break
        assert "code=4008" in server.log()[since:], "the silent member was never closed"
        ws.send(json.dumps({"message": "still talking"}))
        assert json.loads(ws.recv(timeout=5))["message"] == "still talking"
    silent.close()


# -- fragments and frames ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 0], ids=["one-byte", "empty"])
def test_endless_fragments_before_authentication_are_cut_off(stack: Stack, size: int) -> None:
    """60,000 continuation fragments of a message that never ends, on a first-message
    route with no credential: 0.4 s of the process's CPU, and no limit fired."""
    server, since = stack.server, len(stack.server.log())
    raw = RawSocket("127.0.0.1", server.port, "/ws/echo/inband/")
    assert raw.status == 101
    body = b"x" * size
    flood = frame(TEXT, body, fin=False) + frame(CONTINUATION, body, fin=False) * 59_999
    try:
        raw.send(flood)
    except OSError:
        pass  # closed while we were still sending
    assert raw.close_code() == 4009
    assert logged(server, "MAX_FRAGMENTS", since)
    raw.close()
    assert echo_works(stack)


def test_pings_are_frames_too(stack: Stack) -> None:
    server, since = stack.server, len(stack.server.log())
    raw = RawSocket("127.0.0.1", server.port, "/ws/echo/inband/")
    try:
        raw.send(frame(PING, b"p") * 1000)
    except OSError:
        pass
    code = None
    try:
        while code is None:
            opcode, payload = raw.recv_frame()
            if opcode == 0x8:
                code = int.from_bytes(payload[:2], "big")
    except (ConnectionError, OSError):
        pass
    assert code == 4429
    assert logged(server, "FRAME_RATE", since)
    raw.close()


def test_an_authenticated_flood_of_fragments_is_cut_off_too(stack: Stack) -> None:
    raw = RawSocket(
        "127.0.0.1", stack.server.port, "/ws/echo/", ["chat", PREFIX + stack.issuer.token()]
    )
    assert raw.recv_frame()[1].startswith(b"Hello")
    try:
        raw.send(frame(TEXT, b"a", fin=False) + frame(CONTINUATION, b"", fin=False) * 100)
    except OSError:
        pass
    assert raw.close_code() == 4009
    raw.close()


def test_ordinary_fragmented_messages_pass(stack: Stack) -> None:
    token = stack.issuer.token(name="Frag")
    with connect(stack.server.ws + "/ws/echo/", subprotocols=["chat", PREFIX + token]) as ws:
        assert ws.recv(timeout=5) == "Hello Frag"
        ws.send(["part " * 200] * 32)  # one message in 32 frames (websockets fragments lists)
        assert ("part " * 200) * 32 in str(ws.recv(timeout=5))
        ws.ping()
        for i in range(50):
            ws.send(f"m{i}")
            assert f"m{i}" in str(ws.recv(timeout=5))


def test_other_servers_sockets_are_left_alone() -> None:
    assert guard(lambda message: None) is None
    assert queued_bytes(object()) == 0
