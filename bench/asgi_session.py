"""The demo project's settings; ``/ws/echo/`` behind Channels' own session
``AuthMiddlewareStack`` (cookie, session row, user row): the usual alternative."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from bench.consumers import SessionEchoConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AuthMiddlewareStack(
            URLRouter([path("ws/echo/", SessionEchoConsumer.as_asgi())])
        ),
    }
)
