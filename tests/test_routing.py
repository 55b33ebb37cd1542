"""wsauth.routing: which consumer a path routes to, through nested URLRouters and
middleware, and whether that route opted in to first-message authentication."""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from django.urls import path, re_path, register_converter

from chatdemo.consumers import ChatConsumer
from wsauth.consumers import EchoConsumer
from wsauth.routing import resolve, wants_first_message_auth


class InbandConsumer(EchoConsumer):
    first_message_auth = True


class Plain:
    """An ASGI app with neither routes nor an inner app: a leaf."""

    async def __call__(self, scope, receive, send):  # pragma: no cover - never called
        raise AssertionError


class Exploding:
    """A path converter that fails with something other than ValueError."""

    regex = "boom"

    def to_python(self, value):
        raise RuntimeError(value)

    def to_url(self, value):  # pragma: no cover - never reversed
        return value


register_converter(Exploding, "wsauth_test_exploding")
plain = Plain()
inner = URLRouter(
    [
        path("echo/", EchoConsumer.as_asgi()),
        path("inband/", EchoConsumer.as_asgi(first_message_auth=True)),
        path("class/", InbandConsumer.as_asgi()),
        path("class-off/", InbandConsumer.as_asgi(first_message_auth=False)),
        re_path(r"^room/(?P<room>\w+)/$", ChatConsumer.as_asgi()),
    ]
)
app = AuthMiddlewareStack(
    URLRouter(
        [
            path("ws/<int:n>/", EchoConsumer.as_asgi()),
            path("ws/<wsauth_test_exploding:x>/", EchoConsumer.as_asgi()),
            path("ws/", inner),
            path("plain/", plain),
        ]
    )
)


def test_resolve_walks_middleware_and_nested_routers():
    target = resolve(app, "/ws/echo/")
    assert target.consumer_class is EchoConsumer
    assert resolve(app, "/ws/room/lobby/").consumer_class is ChatConsumer
    assert resolve(app, "/plain/") is plain
    assert resolve(app, "ws/echo/").consumer_class is EchoConsumer  # leading slash optional


def test_resolve_finds_nothing_for_an_unrouted_path():
    assert resolve(app, "/ws/nowhere/") is None
    assert resolve(app, "/") is None
    assert resolve(app, "/ws/room/not a room/") is None


def test_a_path_converter_that_does_not_match_is_no_match():
    assert resolve(app, "/ws/12/").consumer_class is EchoConsumer
    # A converter that raises is a route that does not match; the next routes are tried.
    assert resolve(app, "/ws/boom/") is None
    assert resolve(app, "/ws/echo/").consumer_class is EchoConsumer


def test_first_message_auth_by_route_option_or_class_attribute():
    assert wants_first_message_auth(app, "/ws/inband/") is True
    assert wants_first_message_auth(app, "/ws/class/") is True
    # The route option wins over the class attribute.
    assert wants_first_message_auth(app, "/ws/class-off/") is False
    assert wants_first_message_auth(app, "/ws/echo/") is False
    assert wants_first_message_auth(app, "/plain/") is False
    assert wants_first_message_auth(app, "/ws/nowhere/") is False


def test_a_cycle_of_inner_apps_ends():
    class Loop:
        def __init__(self):
            self.inner = self

    assert resolve(Loop(), "/x/") is None


def test_a_bare_consumer_is_its_own_target():
    consumer = EchoConsumer.as_asgi(first_message_auth=True)
    assert resolve(consumer, "/anything/") is consumer
    assert wants_first_message_auth(consumer, "/anything/") is True
