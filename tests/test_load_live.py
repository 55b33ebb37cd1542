"""A bounded load test over loopback: two real Daphne processes of the demo project sharing
Redis, hundreds of sockets authenticated by the token subprotocol, every echo and every
chat message delivered once and in order.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.daphne import REDIS_URL, DaphneServer, flush_redis, migrated_project_env
from tests.issuer import Issuer

PREFIX = "authorization_bearer_"
ECHO_SOCKETS = 200
ECHO_MESSAGES = 20
CHAT_SOCKETS = 50
CHAT_MESSAGES = 6  # 300 messages, 15,000 deliveries: CPU-bound on a 2-core machine
#: Handshakes in flight at once (Twisted's listen backlog is 50 per process).
CONNECT_CONCURRENCY = 25
RECV_TIMEOUT = 20.0

pytestmark = pytest.mark.timeout(90)


def raise_fd_limit(wanted: int = 4096) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class Stack:
    """One issuer and two Daphne processes of the demo project sharing Redis, for the
    whole module (starting them costs seconds; each test uses fresh users and rooms)."""

    def __init__(self, issuer: Issuer, a: DaphneServer, b: DaphneServer) -> None:
        self.issuer, self.a, self.b = issuer, a, b
        self._marks = {a: 0, b: 0}

    def mark_logs(self) -> None:
        self._marks = {server: len(server.log()) for server in (self.a, self.b)}

    def new_log(self, server: DaphneServer) -> str:
        return server.log()[self._marks[server] :]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    raise_fd_limit()  # before Daphne starts: the children inherit the limit
    tmp: Path = tmp_path_factory.mktemp("load")
    issuer = Issuer().start()
    env = migrated_project_env(tmp, issuer, REDIS_URL)
    a = DaphneServer(env, tmp / "a.log").start()
    b = DaphneServer(env, tmp / "b.log").start()
    yield Stack(issuer, a, b)
    a.stop()
    b.stop()
    issuer.stop()
    flush_redis()


@pytest.fixture
def two_servers(stack: Stack) -> tuple[DaphneServer, DaphneServer]:
    stack.mark_logs()  # each test checks only the log lines it caused
    return stack.a, stack.b


@pytest.fixture
def issuer(stack: Stack) -> Issuer:
    return stack.issuer


def is_control(frame: str | bytes) -> bool:
    return isinstance(frame, str) and re.match(r'\s*\{\s*"type"\s*:\s*"wsauth\.', frame) is not None


async def recv_app(ws: ClientConnection, timeout: float = RECV_TIMEOUT) -> str:
    """The next application frame (``wsauth.*`` control frames are skipped)."""
    while True:
        async with asyncio.timeout(timeout):  # cheaper than wait_for: no task per frame
            frame = await ws.recv()
        if not is_control(frame):
            assert isinstance(frame, str)
            return frame


async def open_sockets(urls: list[str], protocols: list[list[str]]) -> list[ClientConnection]:
    """Open every socket, a bounded number of handshakes at a time."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(url: str, offered: list[str]) -> ClientConnection:
        async with gate:
            ws = await connect(
                url,
                subprotocols=offered,  # type: ignore[arg-type]
                open_timeout=15,
                ping_interval=None,
                compression=None,
                max_queue=None,
            )
        # The application protocol when one is offered, else the token protocol itself.
        assert ws.subprotocol == offered[0]
        return ws

    return await asyncio.gather(*(one(u, p) for u, p in zip(urls, protocols, strict=True)))


async def create_users(server: DaphneServer, tokens: list[str]) -> None:
    """First logins on one process only. Each creates a user; creations racing on two
    processes sharing the demo's SQLite file fail with "database is locked" (HTTP 500),
    which is not what this test is about."""
    sockets = await open_sockets(
        [server.ws + "/ws/echo/"] * len(tokens), [[PREFIX + t] for t in tokens]
    )
    await close_all(sockets)


def check_logs(stack: Stack, *servers: DaphneServer) -> None:
    for server in servers:
        log = stack.new_log(server)
        assert "Traceback" not in log, log[-4000:]
        assert " ERROR " not in log, log[-4000:]
        assert "refused handshake" not in log, log[-4000:]


async def close_all(sockets: list[ClientConnection], at_once: int = CONNECT_CONCURRENCY) -> None:
    """Close every socket, ``at_once`` closing handshakes in flight at a time."""
    gate = asyncio.Semaphore(at_once)

    async def one(ws: ClientConnection) -> None:
        async with gate:
            await ws.close()

    await asyncio.gather(*(one(ws) for ws in sockets), return_exceptions=True)


async def test_echo_load_across_two_processes(stack, issuer, two_servers):
    a, b = two_servers
    started = time.monotonic()
    tokens = [
        issuer.token(sub=f"load-{i}", name=f"Load User {i}", preferred_username=f"load{i}")
        for i in range(ECHO_SOCKETS)
    ]
    urls = [(a if i % 2 == 0 else b).ws + "/ws/echo/" for i in range(ECHO_SOCKETS)]
    # Both forms: an application protocol next to the token, and the token alone.
    protocols = [
        ["chat", PREFIX + tokens[i]] if i % 4 < 2 else [PREFIX + tokens[i]]
        for i in range(ECHO_SOCKETS)
    ]
    await create_users(a, tokens)
    warmed = time.monotonic()
    sockets = await open_sockets(urls, protocols)
    connected = time.monotonic()
    try:

        async def converse(i: int, ws: ClientConnection) -> list[str]:
            assert await recv_app(ws) == f"Hello Load User {i}"
            for j in range(ECHO_MESSAGES):  # pipelined: all sent before any echo is read
                await ws.send(f"socket {i} message {j}")
            return [await recv_app(ws) for _ in range(ECHO_MESSAGES)]

        echoes = await asyncio.gather(*(converse(i, ws) for i, ws in enumerate(sockets)))
        for i, got in enumerate(echoes):
            assert got == [
                f'I\'m not very smart, all I can do is repeat: "socket {i} message {j}"'
                for j in range(ECHO_MESSAGES)
            ], f"socket {i}"
        # Nothing extra is waiting on any socket (no duplicates).
        extra = await asyncio.gather(
            *(asyncio.wait_for(ws.recv(), 0.3) for ws in sockets), return_exceptions=True
        )
        assert all(isinstance(e, TimeoutError) for e in extra), [
            e for e in extra if not isinstance(e, TimeoutError)
        ][:3]
    finally:
        await close_all(sockets)
    finished = time.monotonic()
    print(
        f"\necho: {ECHO_SOCKETS} first logins in {warmed - started:.1f}s, "
        f"{ECHO_SOCKETS} sockets connected in {connected - warmed:.1f}s, "
        f"{ECHO_SOCKETS * ECHO_MESSAGES} echoes in {finished - connected:.1f}s"
    )
    check_logs(stack, a, b)


async def chat(
    sockets: list[ClientConnection], room: str, window: int | None, quiet: float
) -> list[list[tuple[str, int, int]]]:
    """Every socket sends ``CHAT_MESSAGES`` messages to the room and listens until it has
    them all (or ``quiet`` seconds pass without a frame). With ``window``, at most that many
    messages are in flight in the whole room: a message is in flight from its send until
    its sender sees it come back. Returns ``(user, sender, seq)`` per socket, as received."""
    total = len(sockets) * CHAT_MESSAGES
    own: list[asyncio.Queue[int]] = [asyncio.Queue() for _ in sockets]
    slots = asyncio.Semaphore(window) if window else None

    async def listen(i: int, ws: ClientConnection) -> list[tuple[str, int, int]]:
        received: list[tuple[str, int, int]] = []
        while len(received) < total:
            try:
                frame = await recv_app(ws, quiet)
            except TimeoutError:
                break
            event: dict[str, Any] = json.loads(frame)
            assert event["type"] == "message", event
            assert event["room"] == room
            sender, seq = (int(x) for x in event["message"].split(":"))
            received.append((event["user"], sender, seq))
            if sender == i:
                own[i].put_nowait(seq)
        return received

    async def talk(i: int, ws: ClientConnection) -> None:
        for j in range(CHAT_MESSAGES):
            message = json.dumps({"message": f"{i}:{j}"})
            if slots is None:
                await ws.send(message)
                continue
            async with slots:
                await ws.send(message)
                assert await asyncio.wait_for(own[i].get(), RECV_TIMEOUT) == j

    listeners = [asyncio.create_task(listen(i, ws)) for i, ws in enumerate(sockets)]
    await asyncio.gather(*(talk(i, ws) for i, ws in enumerate(sockets)))
    return await asyncio.gather(*listeners)


def check_chat(results: list[list[tuple[str, int, int]]]) -> None:
    """Each socket got every message once, and each sender's messages in order."""
    senders = len(results)
    total = senders * CHAT_MESSAGES
    counts = [len(received) for received in results]
    assert counts == [total] * senders, f"messages received per socket: {counts}, of {total}"
    for i, received in enumerate(results):
        assert len(set(received)) == total, f"socket {i}: duplicates"
        for sender in range(senders):
            mine = [(user, seq) for user, s, seq in received if s == sender]
            assert mine == [(f"Chatter {sender}", j) for j in range(CHAT_MESSAGES)], (
                f"socket {i} saw sender {sender} as {mine}"
            )


async def open_room(
    issuer: Issuer, a: DaphneServer, b: DaphneServer, count: int
) -> tuple[str, list[ClientConnection]]:
    room = "load-" + uuid.uuid4().hex[:8]
    tokens = [issuer.token(sub=f"{room}-{i}", name=f"Chatter {i}") for i in range(count)]
    await create_users(a, tokens)
    urls = [(a if i % 2 == 0 else b).ws + f"/ws/chat/{room}/" for i in range(count)]
    # Every socket joins the room's group before its handshake completes.
    return room, await open_sockets(urls, [["chat", PREFIX + t] for t in tokens])


#: Messages in flight in the room at once. A group message is one entry in each process's
#: channels-redis inbox, whose capacity is 100 by default (see the burst test).
CHAT_WINDOW = 20


async def test_chat_room_across_two_processes(stack, issuer, two_servers):
    a, b = two_servers
    started = time.monotonic()
    room, sockets = await open_room(issuer, a, b, CHAT_SOCKETS)
    connected = time.monotonic()
    try:
        results = await chat(sockets, room, window=CHAT_WINDOW, quiet=RECV_TIMEOUT)
        check_chat(results)
        extra = await asyncio.gather(
            *(asyncio.wait_for(ws.recv(), 0.3) for ws in sockets), return_exceptions=True
        )
        assert all(isinstance(e, TimeoutError) for e in extra)
    finally:
        await close_all(sockets)
    finished = time.monotonic()
    total = CHAT_SOCKETS * CHAT_MESSAGES
    print(
        f"\nchat: {CHAT_SOCKETS} sockets connected in {connected - started:.1f}s, "
        f"{total} messages x {CHAT_SOCKETS} deliveries in {finished - connected:.1f}s"
    )
    check_logs(stack, a, b)


async def test_chat_burst_loses_nothing(stack, issuer, two_servers):
    a, b = two_servers
    room, sockets = await open_room(issuer, a, b, 20)
    try:
        check_chat(await chat(sockets, room, window=None, quiet=3.0))
    finally:
        await close_all(sockets)


async def test_mass_disconnect_is_clean(stack, issuer, two_servers):
    # Found by this file: leaving the revocation groups concurrently exhausted the
    # channels-redis pool (MaxConnectionsError, a traceback per socket, and the
    # consumer's own disconnect() skipped).
    a, _ = two_servers
    tokens = [issuer.token(sub=f"drop-{i}", name=f"Drop {i}") for i in range(ECHO_SOCKETS)]
    sockets = await open_sockets(
        [a.ws + "/ws/echo/"] * ECHO_SOCKETS, [[PREFIX + t] for t in tokens]
    )
    for ws in sockets:
        assert (await recv_app(ws)).startswith("Hello Drop ")
    await close_all(sockets, at_once=len(sockets))  # a proxy restart, a network drop...
    await asyncio.sleep(1.0)
    check_logs(stack, a)
