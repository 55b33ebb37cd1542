"""The demo project's application with the memory probe installed (tests/memprobe.py),
and the same application behind ``send`` wrappers, by path prefix:

- ``/wrapped/...``: a middleware in front that wraps ``send`` in a closure, as Sentry's
  and OpenTelemetry's ASGI middleware do;
- ``/opaque/...``: one that hands the application a ``send`` from which the server's
  cannot be reached (messages go through a queue to a forwarding task);
- ``/edge/opaque/...``: that one with ``wsauth.edge.ServerEdge`` outermost.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.memprobe import install

install()

from project.asgi import application as project_application  # noqa: E402
from wsauth.edge import ServerEdge  # noqa: E402


def wrapping(app: Any) -> Any:
    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        async def wrapped_send(message: dict[str, Any]) -> None:
            await send(message)

        return await app(scope, receive, wrapped_send)

    return middleware


def opaque(app: Any) -> Any:
    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def forward() -> None:
            while True:
                message, done = await queue.get()
                try:
                    await send(message)
                finally:
                    done.set_result(None)

        forwarder = asyncio.ensure_future(forward())

        async def queued_send(message: dict[str, Any]) -> None:
            done = asyncio.get_running_loop().create_future()
            await queue.put((message, done))
            await done

        try:
            return await app(scope, receive, queued_send)
        finally:
            forwarder.cancel()

    return middleware


_ROUTES = {
    "/wrapped/": wrapping(project_application),
    "/opaque/": opaque(project_application),
    "/edge/opaque/": ServerEdge(opaque(project_application)),
}


async def application(scope: dict[str, Any], receive: Any, send: Any) -> Any:
    path = scope.get("path", "")
    for prefix, app in _ROUTES.items():
        if path.startswith(prefix):
            scope = {**scope, "path": path[len(prefix) - 1 :]}
            return await app(scope, receive, send)
    return await project_application(scope, receive, send)
