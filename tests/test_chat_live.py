"""The demo chat on a live Daphne with Redis: sockets the server closes while the room's
messages keep flowing. Until the client's close reply, group messages still arrive for a
closing socket; a send into it raises autobahn's Disconnected inside Daphne, which ends
the consumer before disconnect(), so it never leaves its groups. (Measured with the
send-after-close guard of AuthenticatedJsonWebsocketConsumer removed: 39 of 80 sockets
closed at expiry died that way; this test failed 4 runs out of 4.)"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis
import websockets

from wsauth.consumers import UNSUPPORTED_DATA

PREFIX = "authorization_bearer_"
RECEIVERS = 20


async def room_emptied(redis_url: str, group: str, within: float) -> None:
    """Wait until every consumer left ``group`` in channels-redis; fail with who stayed."""
    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + within
        while client.zcard(f"asgi:group:{group}"):
            assert time.monotonic() < deadline, client.zrange(f"asgi:group:{group}", 0, -1)
            await asyncio.sleep(0.2)
    finally:
        client.close()


async def flood_room(url: str, token: str, stop: asyncio.Event, pause: float) -> int:
    """Send to the room until ``stop``, reading what the room sends back (a client that
    does not read is closed at MAX_QUEUED_BYTES); how many were sent."""
    async with websockets.connect(url, subprotocols=["chat", PREFIX + token]) as ws:

        async def drain() -> None:
            async for _ in ws:
                pass

        draining = asyncio.create_task(drain())
        sent = 0
        while not stop.is_set():
            await ws.send(json.dumps({"message": f"m{sent}"}))
            sent += 1
            await asyncio.sleep(pause)
        draining.cancel()
        return sent


async def test_sockets_closed_by_the_server_mid_flow_leave_the_room(
    issuer, project, daphne, redis_url
):
    overrides = {"EXPIRING_LEAD": 0.5, "MESSAGE_RATE": None, "FRAME_RATE": None}
    server = daphne(project(redis_url, WSAUTH_OVERRIDES=json.dumps(overrides)))
    url = server.ws + "/ws/chat/flow/"
    stop = asyncio.Event()

    async def flood() -> int:
        # About 500 messages a second in the room: more overloads a CI machine running under
        # coverage, and consumers with a backlog are killed by Daphne's close timeout.
        return await flood_room(url, issuer.token(), stop, pause=0.004)

    async def receiver(token: str) -> int | None:
        async with websockets.connect(url, subprotocols=["chat", PREFIX + token]) as ws:
            try:
                while True:  # messages until the server closes at the token's expiry
                    await ws.recv()
            except websockets.ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None

    # Each second's expiries close together: five seconds, five chances to meet a delivery.
    first = int(time.time()) + 3
    tokens = [issuer.token(sub=f"r{i}", exp=first + i % 5) for i in range(RECEIVERS)]
    flooding = [asyncio.create_task(flood()) for _ in range(2)]
    codes = await asyncio.wait_for(asyncio.gather(*(receiver(t) for t in tokens)), 30)
    stop.set()
    assert all(await asyncio.gather(*flooding))
    assert codes == [4001] * RECEIVERS  # closed by the server, at expiry

    await room_emptied(redis_url, "chat.flow", within=20)
    log = server.log()
    assert "Exception inside application" not in log, log[-3000:]
    assert log.count("closing socket code=4001") == RECEIVERS


async def test_sockets_the_clients_close_mid_flow_leave_the_room(
    issuer, project, daphne, redis_url
):
    """The client closes first: Daphne marks the connection closed at its close frame but
    sends websocket.disconnect only once TCP is gone; a group message sent in between
    raised autobahn's Disconnected and ended the consumer inside its groups (measured with
    the consumer alone: 8 of 200 clean closes at 500 messages/s). The middleware's send
    drops it instead (wsauth.edge.closed_under)."""
    overrides = {"MESSAGE_RATE": None, "FRAME_RATE": None}  # the flood is ours
    server = daphne(project(redis_url, WSAUTH_OVERRIDES=json.dumps(overrides)))
    url = server.ws + "/ws/chat/leaving/"
    stop = asyncio.Event()

    async def flood() -> int:  # about 500 messages a second in the room
        return await flood_room(url, issuer.token(), stop, pause=0.004)

    async def member(i: int) -> None:
        token = issuer.token(sub=f"leaver{i}")
        async with websockets.connect(url, subprotocols=["chat", PREFIX + token]) as ws:
            await ws.recv()
            await asyncio.sleep(0.01 * (i % 5))  # mid-flow, at staggered moments
        # (the clean close: the client's close frame, then its side of TCP)

    flooding = [asyncio.create_task(flood()) for _ in range(2)]
    await asyncio.sleep(0.3)
    for start in range(0, 120, 20):
        await asyncio.wait_for(asyncio.gather(*(member(i) for i in range(start, start + 20))), 30)
    stop.set()
    assert all(await asyncio.gather(*flooding))

    await room_emptied(redis_url, "chat.leaving", within=15)
    log = server.log()
    assert "Exception inside application" not in log, log[-3000:]


def test_bad_frames_over_daphne(issuer, project, daphne):
    """Daphne sends only 1000 and 3000-4999 (a 1003 would raise in the consumer's send):
    the JSON consumer's close codes reach a real client."""
    from websockets.sync.client import connect

    server = daphne(project())
    url = server.ws + "/ws/chat/frames/"
    with connect(url, subprotocols=["chat", PREFIX + issuer.token()]) as ws:
        ws.send("not json")
        assert json.loads(ws.recv(timeout=5))["error"] == "bad_message"  # stays open
        ws.send(b"\x00binary")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd.code == UNSUPPORTED_DATA == 4003
    assert "Exception inside application" not in server.log()
