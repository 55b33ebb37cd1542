"""The ASGI types wsauth speaks: asgiref's, and the scope it hands the inner application."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asgiref.typing import WebSocketScope

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser


class WSAuthScope(WebSocketScope):
    """The inner application's scope: the server's, the token taken out of its offers and
    headers, with the user and the socket's auth record (``scope["wsauth"]``)."""

    user: AbstractBaseUser | AnonymousUser
    wsauth: dict[str, Any]
