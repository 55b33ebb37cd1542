from django.urls import path, re_path

from wsauth.consumers import EchoConsumer

from .consumers import ChatConsumer

websocket_urlpatterns = [
    path("ws/echo/", EchoConsumer.as_asgi()),
    # First-message authentication: no credential in the handshake, wsauth.auth first.
    path("ws/echo/inband/", EchoConsumer.as_asgi(first_message_auth=True)),
    re_path(r"^ws/chat/(?P<room>[A-Za-z0-9_-]{1,64})/$", ChatConsumer.as_asgi()),
]
