"""Admission in process, through the real middleware, on local memory and on Redis: the
defaults never refuse a legitimate client, failures are throttled as failures, socket
places live on leases, one refusal is counted once."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import pytest
from channels.routing import URLRouter

from chatdemo.routing import websocket_urlpatterns
from wsauth import admission, close_codes, revoke, store
from wsauth import conf as wsauth_conf
from wsauth.admission import places
from wsauth.conf import DEFAULTS
from wsauth.middleware import WSAuthMiddlewareStack
from wsauth.testing import TestIssuer

application = WSAuthMiddlewareStack(URLRouter(websocket_urlpatterns))

#: The shipped defaults of every limit (tests/settings.py turns them off for other tests).
DEFAULT_LIMITS = {
    name: DEFAULTS[name]
    for name in (
        "FAILED_AUTH_RATE",
        "HANDSHAKE_RATE",
        "USER_HANDSHAKE_RATE",
        "MAX_SOCKETS_PER_USER",
    )
}


@pytest.fixture(params=["locmem", "redis"])
def backend(request, settings, redis_url) -> str:
    """wsauth's store on local memory (one process) or on Redis (shared)."""
    settings.CACHES = {
        **settings.CACHES,
        "default": {
            "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "redis": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": redis_url,
            },
        }[request.param],
    }
    wsauth_conf.reset()
    yield request.param
    wsauth_conf.reset()


def communicator(issuer: TestIssuer, token: str | None, client: str = "203.0.113.5", **kw: Any):
    if token is None:
        from channels.testing import WebsocketCommunicator

        comm = WebsocketCommunicator(application, "/ws/echo/", subprotocols=["chat"], **kw)
    else:
        comm = issuer.communicator(application, "/ws/echo/", token=token, **kw)
    comm.scope["client"] = (client, 40000)
    return comm


async def outcome(comm: Any, keep: bool = False) -> Any:
    """ "ok" (greeted), 4429 (accepted, then closed to back off) or 403 (refused)."""
    connected, _ = await comm.connect(timeout=5)
    if not connected:
        return 403
    first = await comm.receive_output(timeout=5)
    if first["type"] == "websocket.close":
        return first.get("code")
    assert first.get("text", "").startswith("Hello ")
    if not keep:
        await comm.disconnect()
    return "ok"


def forged(issuer: TestIssuer, sub: str) -> str:
    return issuer.token(sub=sub)[:-6] + "AAAAAA"  # a signature that does not verify


@pytest.mark.django_db(transaction=True)
async def test_a_mixed_suite_from_one_address_gets_every_valid_token_in(backend, caplog):
    """A QA machine: 120 forged and 60 valid tokens interleaved, default limits."""
    issuer = TestIssuer()
    with issuer.activate(**DEFAULT_LIMITS), caplog.at_level(logging.WARNING, "wsauth"):
        results: dict[str, list[Any]] = {"valid": [], "forged": []}
        for i in range(180):
            kind = "valid" if i % 3 == 0 else "forged"
            sub = f"qa-{i % 7}"
            token = issuer.token(sub=sub) if kind == "valid" else forged(issuer, sub)
            results[kind].append(await outcome(communicator(issuer, token)))
    assert results["valid"] == ["ok"] * 60
    limit = int(DEFAULTS["FAILED_AUTH_RATE"].split("/")[0])
    assert results["forged"] == [403] * limit + [4429] * (120 - limit)
    # One line when the limit is reached, not one per suppressed refusal.
    assert caplog.text.count("reason=too_many_failures") == 1


@pytest.mark.django_db(transaction=True)
async def test_a_foreign_page_cannot_lock_its_visitor_out(backend):
    """31 credential-less sockets and refused origins from the visitor's browser: the
    visitor's own valid handshake is still admitted."""
    issuer = TestIssuer()
    with issuer.activate(**DEFAULT_LIMITS, ALLOWED_ORIGINS=["https://chat.example.test"]):
        evil = "https://evil.example.test"
        for _ in range(31):
            assert await outcome(communicator(issuer, None)) in (403, 4429)
            assert await outcome(communicator(issuer, issuer.token(), origin=evil)) in (403, 4429)
        visitor = communicator(
            issuer, issuer.token(sub="visitor"), origin="https://chat.example.test"
        )
        assert await outcome(visitor) == "ok"


@pytest.mark.django_db(transaction=True)
async def test_a_reconnect_storm_of_1000_users_behind_one_address(backend):
    issuer = TestIssuer()
    with issuer.activate(**DEFAULT_LIMITS):
        run = uuid.uuid4().hex[:6]
        started = time.monotonic()
        results = [
            await outcome(communicator(issuer, issuer.token(sub=f"nat-{run}-{i}")))
            for i in range(1000)
        ]
        assert time.monotonic() - started < 60  # within the window the defaults count in
    assert results == ["ok"] * 1000


@pytest.mark.django_db(transaction=True)
async def test_a_service_account_opens_500_sockets(backend):
    issuer = TestIssuer()
    with issuer.activate(**DEFAULT_LIMITS):
        token = issuer.token(sub="service-" + uuid.uuid4().hex[:6])
        sockets = [communicator(issuer, token) for _ in range(500)]
        results = [await outcome(comm, keep=True) for comm in sockets]
        try:
            assert results == ["ok"] * 500
            await admission.sync_now()  # the registry is written in batches
            found = await admission.sockets_of(await pk_of(token))
            assert len(found) == 500  # the registry sees every one
        finally:
            await asyncio.gather(*(comm.disconnect() for comm in sockets))


async def pk_of(token: str) -> Any:
    from wsauth.tokens import validate_access_token
    from wsauth.users import user_for_claims

    return (await user_for_claims((await validate_access_token(token)).claims)).pk


@pytest.mark.django_db(transaction=True)
async def test_a_revoked_handshake_counts_as_one_failure(backend):
    issuer = TestIssuer()
    with issuer.activate(FAILED_AUTH_RATE="2/minute"):
        token = issuer.token(sub="revoked-once", iat=int(time.time()) - 5)
        assert await outcome(communicator(issuer, token, client="198.51.100.7")) == "ok"
        from django.contrib.auth import get_user_model

        user = await get_user_model().objects.aget(pk=await pk_of(token))
        await revoke.adisconnect_user(user, reason="test")
        assert await outcome(communicator(issuer, token, client="198.51.100.7")) == 403
        assert await outcome(communicator(issuer, token, client="198.51.100.7")) == 403
        assert await outcome(communicator(issuer, token, client="198.51.100.7")) == 4429


@pytest.mark.django_db(transaction=True)
async def test_a_per_user_cap_holds_and_frees_on_close(backend):
    issuer = TestIssuer()
    with issuer.activate(MAX_SOCKETS_PER_USER=2):
        token = issuer.token(sub="capped-" + uuid.uuid4().hex[:6])
        a, b = communicator(issuer, token), communicator(issuer, token)
        assert [await outcome(a, keep=True), await outcome(b, keep=True)] == ["ok", "ok"]
        assert await outcome(communicator(issuer, token)) == close_codes.RATE_LIMITED
        await a.disconnect()
        assert await outcome(communicator(issuer, token)) == "ok"
        await b.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_dead_processs_places_lapse_within_one_lease(backend):
    """A place whose process stopped renewing it (killed) is free after one lease; a
    place a live process renews is held past its lease."""
    from django.contrib.auth import get_user_model

    # Exact mode: each step is the store's own answer (batched mode: test_limits_live).
    with TestIssuer().activate(MAX_SOCKETS_PER_USER=1, SOCKET_LEASE=1.5, LIMITS_SYNC_INTERVAL=0):
        user = await get_user_model().objects.acreate(username="lease-" + uuid.uuid4().hex[:6])
        attempt = admission.Attempt("192.0.2.1", "192.0.2.1", "/ws/echo/", None)
        kept = await admission.admit(attempt, user, None, None, method="ticket", expires_at=None)
        assert kept is not None
        await asyncio.sleep(2.2)  # the heartbeat (every lease/3) renewed it meanwhile
        with pytest.raises(admission.Limited):
            await admission.admit(attempt, user, None, None, method="ticket", expires_at=None)
        places._keeper.get().forget(kept)  # the process dies: nobody renews, nobody releases
        await asyncio.sleep(1.7)
        again = await admission.admit(attempt, user, None, None, method="ticket", expires_at=None)
        assert again is not None
        await again.release()


@pytest.mark.django_db(transaction=True)
async def test_the_registry_says_which_sockets_a_user_has(backend):
    issuer = TestIssuer()
    with issuer.activate():
        token = issuer.token(sub="seen-" + uuid.uuid4().hex[:6])
        comm = communicator(issuer, token, origin=None)
        assert await outcome(comm, keep=True) == "ok"
        pk = await pk_of(token)
        await admission.sync_now()
        [socket] = await admission.sockets_of(pk)
        assert socket["process"] == places.process_id()
        assert socket["method"] == "subprotocol" and socket["path"] == "/ws/echo/"
        assert socket["since"] <= time.time() and socket["lease_ends"] > time.time()
        assert token not in str(socket)
        await comm.disconnect()
        await asyncio.sleep(0.05)
        await admission.sync_now()
        assert await admission.sockets_of(pk) == []


async def test_limits_fail_open_and_revocation_fails_closed_when_the_store_is_down(settings):
    settings.CACHES = {
        **settings.CACHES,
        "dead": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        },
    }

    class User:
        pk = 7

    attempt = admission.Attempt("192.0.2.9", "192.0.2.9", "/", None)
    with TestIssuer().activate(
        RATE_LIMIT_CACHE="dead", REVOCATION_CACHE="default", LIMITS_SYNC_INTERVAL=0
    ):
        assert store.get("limits") is not store.get("revocation")
        assert (
            await admission.admit(attempt, User(), None, None, method="x", expires_at=None) is None
        )
    with TestIssuer().activate(RATE_LIMIT_CACHE="dead", REVOCATION_CACHE="default"):
        # Batched: admitted on this process's own count; the sync fails and says so.
        place = await admission.admit(attempt, User(), None, None, method="x", expires_at=None)
        assert place is not None
        await admission.sync_now()
        await place.release()
    with TestIssuer().activate(TICKET_CACHE="dead"):
        with pytest.raises(revoke.Revoked) as info:
            await admission.admit(attempt, User(), None, None, method="x", expires_at=None)
        assert info.value.reason == "revocation_store_unavailable"
