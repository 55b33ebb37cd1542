"""Finding the consumer a path routes to, before the consumer runs.

The middleware needs to know whether a route opted in to first-message authentication
(``first_message_auth``, a class attribute or an ``as_asgi()`` keyword) before it lets a
handshake without credentials through; everything else is refused at the handshake.
"""

from __future__ import annotations

from typing import Any


def resolve(app: Any, path: str, depth: int = 0) -> Any:
    """The application ``app`` would hand ``path`` to, walking nested ``URLRouter``s and
    middleware that keep their inner app as ``.inner``; ``None`` if nothing matches."""
    if depth > 20:
        return None
    routes = getattr(app, "routes", None)
    if routes is None:
        inner = getattr(app, "inner", None)
        return resolve(inner, path, depth + 1) if inner is not None else app
    path = path.lstrip("/")
    for route in routes:
        try:
            match = route.pattern.match(path)
        except Exception:  # Resolver404 from nested patterns
            match = None
        if match:
            return resolve(route.callback, match[0], depth + 1)
    return None


def wants_first_message_auth(app: Any, path: str) -> bool:
    target = resolve(app, path)
    if target is None:
        return False
    initkwargs = getattr(target, "consumer_initkwargs", {}) or {}
    if "first_message_auth" in initkwargs:
        return bool(initkwargs["first_message_auth"])
    return bool(getattr(getattr(target, "consumer_class", None), "first_message_auth", False))
