"""A socket's consumer keeps its attributes inline, however many open at once.

CPython 3.11 and 3.12 store an instance's attributes inline only for names its class
knew when the instance was made; a name first set later, once many instances exist,
gives each instance a dict of its own (about 500 B). A burst of handshakes makes every
consumer before the first one accepts, so the consumer sets every attribute of a socket's
life in ``__init__``."""

from __future__ import annotations

import asyncio
import gc
import sys

import pytest
from channels.routing import URLRouter
from django.urls import path

from wsauth.consumers import EchoConsumer
from wsauth.middleware import WSAuthMiddlewareStack
from wsauth.testing import TestIssuer

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        sys.implementation.name != "cpython" or sys.version_info >= (3, 13),
        reason="the inline-attribute rule measured on CPython 3.11 and 3.12",
    ),
]


def _has_own_dict(instance: object) -> bool:
    # Inline attributes are referents of the instance; a materialized dict is one referent.
    return any(isinstance(ref, dict) and "scope" in ref for ref in gc.get_referents(instance))


async def test_a_burst_of_sockets_keeps_consumer_attributes_inline() -> None:
    class BurstEcho(EchoConsumer):  # a class of its own: its attribute names start empty
        pass

    application = WSAuthMiddlewareStack(URLRouter([path("ws/burst/", BurstEcho.as_asgi())]))
    issuer = TestIssuer()
    with issuer.activate():
        sockets = await asyncio.gather(
            *(issuer.connect(application, "/ws/burst/", sub=f"u{i}") for i in range(40))
        )
        for ws in sockets:  # a frame each: the message-rate attributes are set too
            assert (await ws.receive_from()).startswith("Hello ")
            await ws.send_to(text_data="hi")
            assert "hi" in await ws.receive_from()
        consumers = [o for o in gc.get_objects() if type(o) is BurstEcho]
        assert len(consumers) == 40
        assert [c for c in consumers if _has_own_dict(c)] == []
        for ws in sockets:
            await ws.disconnect()
