"""The demo project's settings and HTTP app; ``/ws/echo/`` is a plain echo consumer with
no authentication at all: the floor every other stack is compared with.
``forgetting_application`` is the same, plus what wsauth does to Daphne's copies of the
upgrade request after the accept (``wsauth.serverstate``): the baseline that tells the
memory a credential's bytes cost on their way through Daphne from wsauth's own."""

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from bench.consumers import PlainEchoConsumer  # noqa: E402
from wsauth.conf import get_conf  # noqa: E402
from wsauth.serverstate import forget_credentials  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter([path("ws/echo/", PlainEchoConsumer.as_asgi())]),
    }
)


async def forgetting_application(scope: Any, receive: Any, send: Any) -> Any:
    if scope["type"] != "websocket":
        return await application(scope, receive, send)

    async def forgetting_send(message: dict[str, Any]) -> None:
        await send(message)
        if message["type"] == "websocket.accept":
            forget_credentials(send, get_conf().subprotocol_prefix)

    return await application(scope, receive, forgetting_send)
