"""wsauth.testing: what users' own tests look like."""

from __future__ import annotations

import subprocess
import sys

import pytest
from channels.routing import URLRouter

from chatdemo.routing import websocket_urlpatterns
from tests.daphne import ROOT
from wsauth.middleware import WSAuthMiddlewareStack
from wsauth.testing import TestIssuer

pytestmark = pytest.mark.django_db(transaction=True)
application = WSAuthMiddlewareStack(URLRouter(websocket_urlpatterns))


async def test_echo_in_a_few_lines():
    issuer = TestIssuer()
    with issuer.activate():
        ws = await issuer.connect(application, "/ws/echo/", name="Ann")
        assert await ws.receive_from() == "Hello Ann"
        await ws.send_to(text_data="hi")
        assert "hi" in await ws.receive_from()
        await ws.disconnect()


async def test_chat_through_the_channel_layer():
    issuer = TestIssuer()
    with issuer.activate():
        ann = await issuer.connect(application, "/ws/chat/t/", sub="ann", name="Ann")
        ben = await issuer.connect(application, "/ws/chat/t/", sub="ben", name="Ben")
        await ann.send_json_to({"message": "hello"})
        for ws in (ann, ben):
            event = await ws.receive_json_from()
            assert (event["user"], event["message"]) == ("Ann", "hello")
        await ann.disconnect()
        await ben.disconnect()


async def test_tokens_of_another_issuer_are_refused():
    mine, other = TestIssuer(), TestIssuer(issuer="https://other.test")
    with mine.activate():
        with pytest.raises(AssertionError, match="refused"):
            await mine.connect(application, "/ws/echo/", token=other.token())


def test_refuses_outside_tests():
    code = "from wsauth.testing import TestIssuer; TestIssuer()"
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); " + code],
        cwd=ROOT,
        env={"DJANGO_SETTINGS_MODULE": "tests.settings", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "works only in tests" in result.stderr
