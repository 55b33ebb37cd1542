"""wsauth.middleware when a part fails during the handshake (beyond
tests/test_middleware.py): a slow issuer past HANDSHAKE_TIMEOUT, a user backend that
raises, the refusal signal and the method reported; the process keeps serving."""

from __future__ import annotations

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from chatdemo.routing import websocket_urlpatterns
from wsauth import conf as wsauth_conf
from wsauth import signals
from wsauth.middleware import WSAuthMiddlewareStack

pytestmark = pytest.mark.django_db(transaction=True)
application = WSAuthMiddlewareStack(URLRouter(websocket_urlpatterns))


class BrokenBackend:
    """A user backend whose database is gone."""

    def user_for_claims(self, claims, *, create):
        raise ConnectionError("database is down")


@pytest.fixture
def refusals():
    seen = []

    def receiver(sender, **kwargs):
        seen.append(kwargs)

    signals.handshake_refused.connect(receiver)
    yield seen
    signals.handshake_refused.disconnect(receiver)


def offer(token: str) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        application, "/ws/echo/", subprotocols=["chat", "authorization_bearer_" + token]
    )


async def test_a_user_backend_fault_is_refused_cleanly(issuer, wsauth_settings, refusals, caplog):
    wsauth_settings.WSAUTH = {**wsauth_settings.WSAUTH, "USER_BACKEND": f"{__name__}.BrokenBackend"}
    wsauth_conf.reset()
    token = issuer.token()
    connected, _ = await offer(token).connect(timeout=5)
    assert not connected
    assert (
        "reason=server_error" in caplog.text and "ConnectionError: database is down" in caplog.text
    )
    assert token not in caplog.text
    ((refusal,),) = [refusals]
    assert (refusal["reason"], refusal["method"]) == ("server_error", "subprotocol")


async def test_a_slow_issuer_past_the_handshake_timeout(issuer, wsauth_settings, refusals):
    wsauth_settings.WSAUTH = {**wsauth_settings.WSAUTH, "HANDSHAKE_TIMEOUT": 0.2}
    wsauth_conf.reset()
    issuer.delay = 1.0  # the first key fetch outlasts the handshake's budget
    connected, _ = await offer(issuer.token()).connect(timeout=5)
    assert not connected
    assert refusals[0]["reason"] == "timeout"
    issuer.delay = 0.0
    wsauth_settings.WSAUTH = {**wsauth_settings.WSAUTH, "HANDSHAKE_TIMEOUT": 4.0}
    wsauth_conf.reset()
    ws = offer(issuer.token())
    connected, _ = await ws.connect(timeout=5)  # the process keeps serving
    assert connected
    await ws.disconnect()


@pytest.mark.parametrize(
    ("query", "method"),
    [(b"ticket=" + b"a" * 43, "ticket"), (b"access_token=x", "query"), (b"", "none")],
)
async def test_the_refusal_names_the_method_offered(wsauth_settings, refusals, query, method):
    ws = WebsocketCommunicator(application, "/ws/echo/?" + query.decode() if query else "/ws/echo/")
    connected, _ = await ws.connect(timeout=5)
    assert not connected
    assert refusals[0]["method"] == method
