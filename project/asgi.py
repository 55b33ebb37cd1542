import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chatdemo.routing import websocket_urlpatterns  # noqa: E402
from wsauth.middleware import WSAuthMiddlewareStack  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": WSAuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
