"""The demo project's settings and HTTP app; ``/ws/echo/`` is a plain echo consumer with
no authentication at all: the floor every other stack is compared with."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from bench.consumers import PlainEchoConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter([path("ws/echo/", PlainEchoConsumer.as_asgi())]),
    }
)
