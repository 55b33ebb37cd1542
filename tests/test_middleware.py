"""The middleware in-process: scope contents, subprotocol selection rules, refusals."""

from __future__ import annotations

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.testing import WebsocketCommunicator

from wsauth import conf as wsauth_conf
from wsauth.authenticators import Handshake, Refused
from wsauth.middleware import WSAuthMiddlewareStack

pytestmark = pytest.mark.django_db(transaction=True)
PREFIX = "authorization_bearer_"
seen: dict = {}


class Recorder(AsyncWebsocketConsumer):
    async def connect(self):
        seen["scope"] = self.scope
        await self.accept(self.scope["subprotocols"][-1] if self.scope["subprotocols"] else None)


class PlainConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.accept()  # a consumer that knows nothing of subprotocols


async def open_socket(app, subprotocols, query=""):
    comm = WebsocketCommunicator(app, "/ws/x/" + query, subprotocols=subprotocols)
    connected, sub = await comm.connect(timeout=5)
    return comm, connected, sub


async def test_scope_keys(issuer, wsauth_settings):
    token = issuer.token(sub="scope-sub")
    comm, connected, sub = await open_socket(
        WSAuthMiddlewareStack(Recorder.as_asgi()), ["a", "b", PREFIX + token]
    )
    assert connected
    scope = seen["scope"]
    assert scope["user"].is_authenticated
    assert scope["subprotocols"] == ["a", "b"]  # the token is taken out
    info = scope["wsauth"]
    assert info["method"] == "subprotocol"
    assert info["claims"]["sub"] == "scope-sub"
    assert info["expires_at"] == info["claims"]["exp"]
    assert info["subprotocol"] == "a"
    assert sub == "b"  # an offered application protocol chosen by the app is kept
    await comm.disconnect()


async def test_the_servers_scope_is_left_as_it_came_and_the_application_gets_a_copy(
    issuer, wsauth_settings
):
    """Nothing in the handshake path changes what the server owns: wsproto and hypercorn
    check the selected subprotocol against their own lists, so emptying them in place
    broke the token-only form there. The application gets wsauth's copy, without the
    token; the server's adapter forgets it after the accept (tests/test_server_memory_live.py)."""
    token = issuer.token(sub="strip-sub")
    outer: dict = {}

    class Watcher(Recorder):
        async def connect(self):  # the server's lists, as the accept will find them
            outer["at_accept"] = (list(outer["subs"]), list(outer["headers"]))
            await super().connect()

    inner = WSAuthMiddlewareStack(Watcher.as_asgi())

    async def server(scope, receive, send):  # stands for the server's frame and scope
        outer["scope"], outer["headers"], outer["subs"] = (
            scope,
            scope["headers"],
            scope["subprotocols"],
        )
        return await inner(scope, receive, send)

    header = f"chat, {PREFIX}{token}, other".encode()
    offers = ["chat", PREFIX + token, "other"]
    comm = WebsocketCommunicator(
        server,
        "/ws/x/",
        headers=[(b"host", b"x"), (b"sec-websocket-protocol", header)],
        subprotocols=offers,
    )
    comm.scope["headers"] = list(comm.scope["headers"])  # a server's own, mutable list
    connected, _ = await comm.connect(timeout=5)
    assert connected and seen["scope"]["user"].username
    subs, headers = outer["at_accept"]
    assert subs == offers and (b"sec-websocket-protocol", header) in headers
    mine = seen["scope"]
    assert token not in repr(mine["headers"]) and token not in repr(mine["subprotocols"])
    assert dict(mine["headers"])[b"sec-websocket-protocol"] == b"chat, other"
    assert mine["subprotocols"] == ["chat", "other"]
    assert mine["headers"] is not outer["headers"] and mine["subprotocols"] is not outer["subs"]
    await comm.disconnect()


async def test_ticket_handshake_scope_has_the_offers_as_parsed(issuer, wsauth_settings):
    """No token to take out: the consumer still gets the offers stripped, blanks dropped."""
    from django.contrib.auth import get_user_model

    from wsauth import tickets

    user = await get_user_model().objects.acreate(username="ticket-scope")
    ticket, _ = await tickets.issue({"uid": user.pk})
    comm, connected, _ = await open_socket(
        WSAuthMiddlewareStack(Recorder.as_asgi()), [" chat ", ""], query=f"?ticket={ticket}"
    )
    assert connected and seen["scope"]["wsauth"]["method"] == "ticket"
    assert seen["scope"]["subprotocols"] == ["chat"]
    await comm.disconnect()


async def test_tickets_of_one_token_share_its_claims(issuer, wsauth_settings):
    """Each ticket's record is unpickled afresh; the sockets of one token's tickets keep
    one claims dict between them, and only claims equal in every value are shared."""
    from django.contrib.auth import get_user_model

    from wsauth import tickets
    from wsauth.tokens import validate_access_token

    user = await get_user_model().objects.acreate(username="ticket-claims")
    first = (await validate_access_token(issuer.token(sub="tc", jti="j1"))).claims
    other = (await validate_access_token(issuer.token(sub="tc", jti="j2"))).claims
    same_key = {**first, "scope": "openid admin"}  # same iss/sub/jti/iat/exp, not equal

    async def claims_of(claims):
        ticket, _ = await tickets.issue({"uid": user.pk, "claims": claims})
        comm, connected, _ = await open_socket(
            WSAuthMiddlewareStack(Recorder.as_asgi()), ["chat"], query=f"?ticket={ticket}"
        )
        assert connected
        got = seen["scope"]["wsauth"]["claims"]
        await comm.disconnect()
        return got

    a, b, c, d = [await claims_of(x) for x in (first, first, other, same_key)]
    assert a == first and a is b
    assert c == other and c is not a
    assert d == same_key and d is not a and d["scope"] == "openid admin"


async def test_plain_consumer_gets_the_subprotocol_selected(issuer, wsauth_settings):
    token = issuer.token()
    app = WSAuthMiddlewareStack(PlainConsumer.as_asgi())
    comm, connected, sub = await open_socket(app, ["chat", PREFIX + token])
    assert connected and sub == "chat"
    await comm.disconnect()
    comm, connected, sub = await open_socket(app, [PREFIX + token])
    assert connected and sub == PREFIX + token
    await comm.disconnect()


async def test_token_only_form_can_be_forbidden(issuer, wsauth_settings):
    wsauth_settings.WSAUTH = {**wsauth_settings.WSAUTH, "ALLOW_TOKEN_ONLY_SUBPROTOCOL": False}
    wsauth_conf.reset()
    token = issuer.token()
    app = WSAuthMiddlewareStack(PlainConsumer.as_asgi())
    comm, connected, _ = await open_socket(app, [PREFIX + token])
    assert not connected
    comm, connected, sub = await open_socket(app, ["chat", PREFIX + token])
    assert connected and sub == "chat"
    await comm.disconnect()


async def test_refused_handshake_never_reaches_the_consumer(issuer, wsauth_settings):
    seen.clear()
    _, connected, _ = await open_socket(
        WSAuthMiddlewareStack(Recorder.as_asgi()), ["chat", PREFIX + "garbage"]
    )
    assert not connected
    assert "scope" not in seen


def test_handshake_parse_rules(settings):
    conf = wsauth_conf.get_conf()
    scope = {
        "subprotocols": [" chat ", "", PREFIX + "tok"],
        "query_string": b"ticket=abc&x=1",
        "headers": [(b"origin", b"https://a.example")],
    }
    h = Handshake.parse(scope, conf)
    assert (h.app_protocols, h.token, h.origin) == (["chat"], "tok", "https://a.example")
    assert h.query["ticket"] == ["abc"]
    with pytest.raises(Refused):
        Handshake.parse({"subprotocols": [PREFIX + "a", PREFIX + "b"]}, conf)
    with pytest.raises(Refused):
        Handshake.parse({"headers": [(b"origin", b"https://a"), (b"Origin", b"https://b")]}, conf)
    with pytest.raises(Refused):
        Handshake.parse({"query_string": b"\xff"}, conf)


async def test_the_handshake_timeout_bounds_what_waits_and_passes_through_the_rest():
    """``_bounded`` arms the timer only once the handshake waits for something: what
    runs to its end at once returns at once, what waits is still cut off, and
    exceptions and cancellations reach the coroutine and its caller as with ``await``."""
    import asyncio

    from wsauth.middleware import _bounded

    async def at_once():
        return "done"

    async def waits(seconds):
        await asyncio.sleep(seconds)
        return "waited"

    async def fails(wait_first):
        if wait_first:
            await asyncio.sleep(0)
        raise ValueError("bad")

    cleaned = []

    async def cancelled_inside():
        try:
            await asyncio.sleep(10)
        finally:
            cleaned.append(True)

    assert await _bounded(at_once(), 0.01) == "done"
    assert await _bounded(waits(0.01), 5) == "waited"
    with pytest.raises(TimeoutError):
        await _bounded(waits(5), 0.05)
    for wait_first in (False, True):
        with pytest.raises(ValueError, match="bad"):
            await _bounded(fails(wait_first), 5)
    with pytest.raises(TimeoutError):
        await _bounded(cancelled_inside(), 0.05)
    assert cleaned == [True]
    task = asyncio.ensure_future(_bounded(cancelled_inside(), None))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True, True]
