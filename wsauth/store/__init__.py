"""The shared store: one per role (tickets, revocation, limits), usually one Redis.

``get("tickets")`` is the store of ``WSAUTH["TICKET_CACHE"]``, ``get("revocation")`` of
``REVOCATION_CACHE`` and ``get("limits")`` of ``RATE_LIMIT_CACHE``, unless
``WSAUTH["REDIS"]`` names one Redis for all three. Two roles on the same cache alias
share one store object, so the admission can read their keys in one request.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured

from .. import metrics
from ..conf import get_conf, on_reset
from .base import Admission, Place, Store
from .connect import RedisSpec, from_cache, from_setting, prefixer
from .local import LocalStore
from .redisstore import RedisStore

__all__ = ["Admission", "Place", "RedisSpec", "Store", "get", "spec_of"]

logger = logging.getLogger("wsauth")

ROLES = ("tickets", "revocation", "limits")

_lock = threading.Lock()
_stores: dict[str, Store] = {}  # by cache alias, or "REDIS"


def _alias(role: str) -> str:
    conf = get_conf()
    if conf.redis is not None:
        return "REDIS"
    return {
        "tickets": conf.ticket_cache,
        "revocation": conf.revocation_cache,
        "limits": conf.rate_limit_cache,
    }[role]


def spec_of(alias: str) -> RedisSpec | None:
    """The connection of a store alias (a cache alias, or ``"REDIS"``); None: local
    memory. Raises ``ImproperlyConfigured`` with the fix."""
    if alias == "REDIS":
        return from_setting(get_conf().redis)
    config = getattr(settings, "CACHES", {}).get(alias)
    if config is None:
        raise ImproperlyConfigured(f"wsauth's store names the cache {alias!r}, not in CACHES.")
    return from_cache(alias, config)


def _make(alias: str) -> Store:
    spec = spec_of(alias)
    if alias == "REDIS":
        raw = get_conf().redis
        prefix = raw.get("KEY_PREFIX", "") if isinstance(raw, dict) else ""
        make_key = prefixer(str(prefix))
    else:  # the cache's own key function: its KEY_PREFIX and VERSION (cached: pure)
        make_key = functools.lru_cache(maxsize=16384)(caches.create_connection(alias).make_key)
    if spec is None:
        return LocalStore(make_key)
    return metrics.instrument(RedisStore(spec, make_key))


def get(role: str) -> Store:
    """The store for ``role`` (one of ``ROLES``)."""
    return by_alias(_alias(role))


def by_alias(alias: str) -> Store:
    """The store of a cache alias (``WSAUTH["REDIS"]``, when set, serves every alias)."""
    if get_conf().redis is not None:
        alias = "REDIS"
    store = _stores.get(alias)
    if store is None:
        with _lock:
            store = _stores.get(alias)
            if store is None:
                store = _stores[alias] = _make(alias)
    return store


def same(role: str, other: str) -> bool:
    return get(role) is get(other)


@on_reset
def _drop() -> None:
    with _lock:
        _stores.clear()


def describe(store: Any) -> str:
    return store.spec.where() if isinstance(store, RedisStore) else "local memory"
