"""Revocation in-process: the admin action, deactivation, the signal, the async API.
(Across real processes: tests/test_revocation_live.py.)"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from django.contrib.auth import get_user_model
from django.test import AsyncClient
from django.urls import path

from chatdemo.routing import websocket_urlpatterns
from wsauth import revoke, store
from wsauth.consumers import EchoConsumer
from wsauth.middleware import WSAuthMiddlewareStack
from wsauth.testing import TestIssuer

pytestmark = pytest.mark.django_db(transaction=True)
application = WSAuthMiddlewareStack(URLRouter(websocket_urlpatterns))


async def closed_code(ws: Any) -> int:
    output = await ws.receive_output(timeout=2)
    assert output["type"] == "websocket.close", output
    return int(output["code"])


async def user_of(sub: str) -> Any:
    model = get_user_model()
    return await model.objects.aget(oidc_identities__subject=sub)


async def test_adisconnect_user_closes_only_their_sockets_and_signals() -> None:
    issuer = TestIssuer()
    seen: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs)

    revoke.sockets_revoked.connect(receiver)
    try:
        with issuer.activate():
            mine = [await issuer.connect(application, "/ws/echo/", sub="ann") for _ in range(2)]
            other = await issuer.connect(application, "/ws/echo/", sub="ben")
            for ws in (*mine, other):
                await ws.receive_from()  # Hello
            ann = await user_of("ann")
            await revoke.adisconnect_user(ann, reason="test")
            for ws in mine:
                assert await closed_code(ws) == 4403
            await other.send_to(text_data="still here")
            assert "still here" in await other.receive_from()
            await other.disconnect()
            # The revoked token opens nothing new.
            refused = issuer.communicator(application, "/ws/echo/", token=issuer.token(sub="ann"))
            connected, _ = await refused.connect(timeout=5)
            assert not connected
    finally:
        revoke.sockets_revoked.disconnect(receiver)
    assert [(s["user"].pk, s["reason"]) for s in seen] == [(ann.pk, "test")]


async def test_deactivating_a_user_disconnects_them() -> None:
    issuer = TestIssuer()
    with issuer.activate():
        ws = await issuer.connect(application, "/ws/echo/", sub="cat")
        await ws.receive_from()
        user = await user_of("cat")
        user.first_name = "Cat"
        await user.asave()  # an ordinary save of an active user closes nothing
        assert await ws.receive_nothing(timeout=0.3)
        user.is_active = False
        await user.asave()
        assert await closed_code(ws) == 4403


async def test_admin_action_disconnects_selected_users() -> None:
    issuer = TestIssuer()
    with issuer.activate():
        ws = await issuer.connect(application, "/ws/echo/", sub="dan")
        await ws.receive_from()
        dan = await user_of("dan")
        admin = await sync_to_async(get_user_model().objects.create_superuser)(
            "root", "root@example.test", "pw"
        )
        client = AsyncClient()
        await client.aforce_login(admin)
        response = await client.post(
            "/admin/auth/user/",
            {"action": "disconnect_sockets", "_selected_action": [str(dan.pk)]},
            follow=True,
        )
        assert response.status_code == 200
        assert b"Disconnected the WebSockets of 1 user" in response.content
        assert await closed_code(ws) == 4403


async def test_refresh_with_a_revoked_session_token_is_refused() -> None:
    issuer = TestIssuer()
    with issuer.activate():
        ws = await issuer.connect(application, "/ws/echo/", sub="eve", sid="s-2")
        await ws.receive_from()
        await revoke.adisconnect_session("s-1", issuer.issuer, reason="logout")
        await ws.send_to(text_data="alive")  # another session: untouched
        assert "alive" in await ws.receive_from()
        await ws.send_json_to(
            {"type": "wsauth.refresh", "token": issuer.token(sub="eve", sid="s-1")}
        )
        assert await closed_code(ws) == 4403


class _Socket:
    """Stands in for a consumer in the registry: records what it was told."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def wsauth_revoke(self, event: dict[str, Any]) -> None:
        self.events.append(event)


async def test_registry_reaches_open_members_and_forgets_gone_ones() -> None:
    """A disconnected socket and one collected without a disconnect are both forgotten,
    and a group with nobody left is dropped."""
    registry = revoke._Registry()
    kept, left, lost = _Socket(), _Socket(), _Socket()
    for member in (kept, left, lost):
        registry.add(member, ["g.user", "g.sid"])
    registry.add(_Socket(), ["g.other"])  # unreferenced at once: collected
    registry.discard(left, ("g.user", "g.sid"))
    del lost, member  # the loop variable held it too
    gc.collect()
    assert await registry.deliver({"groups": ["g.user", "g.sid"], "reason": "test"}) == 1
    assert kept.events == [{"groups": ["g.user", "g.sid"], "reason": "test"}]
    assert left.events == []
    assert [ref() for ref in registry.members["g.user"] if ref() is not None] == [kept]
    registry.discard(kept, ("g.user", "g.sid"))  # purges the dead references too
    assert registry.members == {}


class _SlowConnect(EchoConsumer):
    """An application whose connect() does its own work before accept(): the socket is
    registered for revocation only then, after the handshake checked the markers."""

    entered: asyncio.Event
    gate: asyncio.Event

    async def connect(self) -> None:
        type(self).entered.set()
        await type(self).gate.wait()
        await super().connect()


slow_application = WSAuthMiddlewareStack(URLRouter([path("ws/slow/", _SlowConnect.as_asgi())]))


async def _revoked_while_connecting(
    issuer: TestIssuer, sub: str, revoke_sub: str, rejoin: bool = False
) -> bool:
    """Open a socket of ``sub``; while its connect() waits, revoke ``revoke_sub``. Returns
    whether the socket opened. ``rejoin``: the listener (re)joins the broadcast group
    after the handshake's check, as after a channel-layer outage."""
    _SlowConnect.entered, _SlowConnect.gate = asyncio.Event(), asyncio.Event()
    comm = issuer.communicator(slow_application, "/ws/slow/", token=issuer.token(sub=sub))
    opening = asyncio.create_task(comm.connect(timeout=5))
    await asyncio.wait_for(_SlowConnect.entered.wait(), 5)
    if rejoin:  # started by the middleware at the handshake; its copy not current yet
        listener = revoke._listeners.get()
        assert listener is not None
        listener.joined_at, listener.current = time.time(), False
    await revoke.adisconnect_user(await user_of(revoke_sub), reason="test")
    _SlowConnect.gate.set()
    connected, _ = await opening
    await comm.disconnect()
    return bool(connected)


async def test_a_revocation_during_connect_refuses_the_socket_from_the_log(monkeypatch) -> None:
    """The revocation reached this process after the handshake read the markers and
    before the socket was registered: the process's log of recent revocations says so,
    without asking the store again."""
    issuer = TestIssuer()
    with issuer.activate():
        first = await issuer.connect(application, "/ws/echo/", sub="dan")  # the listener
        await first.receive_from()
        await user_of("dan")
        async with with_store_reads(monkeypatch) as reads:
            assert not await _revoked_while_connecting(issuer, "dan-2", "dan-2")
            assert await _revoked_while_connecting(issuer, "eve", "dan")  # someone else
        # The markers come from this process's copy, pushed by the broadcast: no store
        # read at the handshakes' checks, none at registration.
        assert len(reads) == 0
        await first.disconnect()


class with_store_reads:
    """Record the revocation markers read from the store while in the block."""

    def __init__(self, monkeypatch: Any) -> None:
        self.monkeypatch, self.reads = monkeypatch, list[Any]()

    async def __aenter__(self) -> list[Any]:
        markers = store.get("revocation")
        real_admit, real_get_many = markers.admit, markers.get_many

        async def admit(counter: Any, place: Any, keys: Any = ()) -> Any:
            if keys:
                self.reads.append(keys)
            return await real_admit(counter, place, keys)

        async def get_many(keys: Any) -> Any:
            self.reads.append(keys)
            return await real_get_many(keys)

        self.monkeypatch.setattr(markers, "admit", admit)
        self.monkeypatch.setattr(markers, "get_many", get_many)
        return self.reads

    async def __aexit__(self, *exc: Any) -> None:
        self.monkeypatch.undo()


async def test_a_revocation_the_listener_may_have_missed_is_found_in_the_store(monkeypatch):
    """The listener (re)joined the broadcast group after the handshake's check: the log
    cannot know what was sent before, so the markers newer than the check decide."""
    issuer = TestIssuer()
    with issuer.activate():
        listener = revoke._listeners.peek()  # a fresh process's state
        if listener is not None:
            listener.task.cancel()
        revoke._listeners.clear()
        async with with_store_reads(monkeypatch) as reads:
            assert not await _revoked_while_connecting(issuer, "fay", "fay", rejoin=True)
        # At registration the copy is not current: the store is asked (the handshake's
        # own check was answered by whichever was current then).
        assert 1 <= len(reads) <= 2
        async with with_store_reads(monkeypatch) as reads:  # no marker of gus
            assert await _revoked_while_connecting(issuer, "gus", "fay", rejoin=True)
        assert 1 <= len(reads) <= 2


async def test_the_log_counts_only_revocations_since_the_check() -> None:
    registry = revoke._Registry()
    await registry.deliver({"groups": ["g.user"], "reason": "old"})
    since = time.time()
    assert not registry.revoked_since(["g.user"], since + 0.001)  # before the check
    await registry.deliver({"groups": ["g.sid"], "reason": "new"})
    assert registry.revoked_since(["g.user", "g.sid"], since)
    assert not registry.revoked_since(["g.other"], since)
