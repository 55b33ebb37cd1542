"""Blocking helpers over the shared store (``wsauth.store``), for code in threads.

- The default executor (``min(32, cores + 4)`` threads) is shared with everything else,
  so a burst of handshakes once queued the JWKS fetch behind its own store calls until
  every handshake timed out. Blocking store calls get their own pool here.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from . import store

T = TypeVar("T")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="wsauth-store")
    return _executor


async def run(function: Callable[..., T], *args: Any) -> T:
    """Run a blocking call off the event loop, on wsauth's own threads."""
    return await asyncio.get_running_loop().run_in_executor(_pool(), function, *args)


def first_use(alias: str, namespace: str, value: str, ttl: float) -> bool:
    """Blocking: True the first time ``value`` is seen in ``namespace`` within ``ttl``
    seconds, on any process (SET NX). For replay caches (``jti``); the store keeps only a
    digest of the value."""
    digest = hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()
    shared = store.by_alias(alias)
    return shared.add_sync(shared.make_key(f"wsauth:{namespace}:{digest}"), int(ttl) + 1)
