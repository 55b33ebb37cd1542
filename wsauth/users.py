"""Verified claims to a Django user, cached per process for ``USER_CACHE_TTL`` seconds."""

from __future__ import annotations

import time
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.utils.module_loading import import_string

from .conf import get_conf, on_reset


class UserRefused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_by_identity: dict[tuple[str, str], tuple[float, Any]] = {}
_by_pk: dict[Any, tuple[float, Any]] = {}
_MAX_ENTRIES = 50_000


@on_reset
def clear_cache() -> None:
    _by_identity.clear()
    _by_pk.clear()


def forget_user(pk: Any) -> None:
    """Drop a user from the cache (deactivation, revocation). Called from threads too
    (``post_save`` of a user created in ``database_sync_to_async``) while the event loop
    fills the cache: it walks a snapshot (``list`` of a dict's items runs no Python code,
    so no other thread's insertion lands mid-copy)."""
    _by_pk.pop(pk, None)
    for key, (_, user) in list(_by_identity.items()):
        if user.pk == pk:
            _by_identity.pop(key, None)


def _remember(cache: dict[Any, tuple[float, Any]], key: Any, user: Any, ttl: float) -> None:
    if len(cache) >= _MAX_ENTRIES:
        cache.clear()
    cache[key] = (time.monotonic() + ttl, user)


def _cached(cache: dict[Any, tuple[float, Any]], key: Any) -> Any:
    entry = cache.get(key)
    if entry is not None and entry[0] > time.monotonic():
        return entry[1]
    return None


def display_name(user: Any, claims: dict[str, Any] | None) -> str:
    """The token's ``name``, else ``preferred_username``, else the user's name."""
    for key in ("name", "preferred_username"):
        value = (claims or {}).get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    full = user.get_full_name() if hasattr(user, "get_full_name") else ""
    return full or user.get_username()


def _lookup_sync(claims: dict[str, Any]) -> Any:
    conf = get_conf()
    backend = import_string(conf.user_backend)()
    return backend.user_for_claims(claims, create=conf.create_users)


async def user_for_claims(claims: dict[str, Any]) -> Any:
    """The active user for verified claims, or raise ``UserRefused``."""
    key = (str(claims.get("iss")), str(claims.get("sub")))
    user = _cached(_by_identity, key)
    if user is None:
        user = await database_sync_to_async(_lookup_sync)(claims)
        if user is None:
            raise UserRefused("unknown_user", "no user for this subject and user creation is off")
        _remember(_by_identity, key, user, get_conf().user_cache_ttl)
    if not user.is_active:
        raise UserRefused("inactive_user", "the user is disabled")
    return user


def _active_sync(pk: Any) -> bool:
    model = get_user_model()
    users = model._default_manager.filter(pk=pk)
    if any(f.name == "is_active" for f in model._meta.get_fields()):
        users = users.filter(is_active=True)
    return bool(users.exists())


async def require_active(user: Any) -> None:
    """Ask the database, not the cache: a deactivation by ``QuerySet.update`` (a directory
    sync) sends no signal, so a cached user may be stale. Raises ``UserRefused``."""
    if not await database_sync_to_async(_active_sync)(user.pk):
        forget_user(user.pk)
        raise UserRefused("inactive_user", "the user is disabled")


def _get_by_pk_sync(pk: Any) -> Any:
    return get_user_model()._default_manager.filter(pk=pk).first()


async def user_by_pk(pk: Any) -> Any:
    user = _cached(_by_pk, pk)
    if user is None:
        user = await database_sync_to_async(_get_by_pk_sync)(pk)
        if user is None:
            raise UserRefused("unknown_user", "the ticket's user no longer exists")
        _remember(_by_pk, pk, user, get_conf().user_cache_ttl)
    if not user.is_active:
        raise UserRefused("inactive_user", "the user is disabled")
    return user
