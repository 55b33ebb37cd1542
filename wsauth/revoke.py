"""Revocation: close a user's or a session's sockets on every process, at once.

Every authenticated socket joins two channel-layer groups: its user's, and (when the
access token carries ``sid``) its OpenID session's. A revocation sends one group message
that each socket's consumer answers by closing with 4403, wherever it runs.

Closing open sockets is half the job: a revoked credential must not open a new one. The
revocation also leaves a marker in the shared cache (``WSAUTH["REVOCATION_CACHE"]``, the
ticket store by default) that handshakes and refreshes consult:

- ``sid`` marker: every token of that session is refused until the marker expires;
- ``sub`` or user marker: credentials issued (``iat``) at or before the revocation are
  refused; credentials issued afterwards (the user logged in again) are accepted.

Between a revocation and its delivery lie one channel-layer hop (milliseconds with
Redis) and, for a process whose store is unreachable, nothing at all: see
``docs/security.md``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.dispatch import Signal

from .conf import get_conf
from .tokens import forget_verified
from .users import forget_user

logger = logging.getLogger("wsauth")

#: Sent on the process that revokes, once per revocation, with ``user`` (or None),
#: ``issuer``, ``subject``, ``sid`` (or None) and ``reason``.
sockets_revoked = Signal()

#: The group message type; consumers handle it in ``wsauth_revoke``.
EVENT = "wsauth.revoke"


def _digest(*parts: Any) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()[:40]


def user_group(pk: Any) -> str:
    return f"wsauth.user.{_digest(pk)}"


def session_group(issuer: str, sid: str) -> str:
    return f"wsauth.sid.{_digest(issuer, sid)}"


def groups_for(user: Any, claims: dict[str, Any] | None) -> list[str]:
    """The groups an authenticated socket joins."""
    groups = [user_group(user.pk)]
    sid = (claims or {}).get("sid")
    if isinstance(sid, str) and sid:
        groups.append(session_group(str(claims.get("iss")), sid))  # type: ignore[union-attr]
    return groups


# -- markers in the shared store ---------------------------------------------------------------


def _key(kind: str, *parts: Any) -> str:
    return f"{get_conf().revocation_key_prefix}{kind}:{_digest(*parts)}"


def _cache() -> Any:
    return caches[get_conf().revocation_cache]


def _mark(kind: str, *parts: Any) -> float:
    now = time.time()
    _cache().set(_key(kind, *parts), now, timeout=get_conf().revocation_ttl)
    return now


class Revoked(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _check_sync(user_pk: Any, claims: dict[str, Any] | None, issued_at: float | None) -> None:
    keys: dict[str, str] = {_key("user", user_pk): "user"}
    iss = sub = sid = None
    if claims:
        iss, sub, sid = claims.get("iss"), claims.get("sub"), claims.get("sid")
        if sub is not None:
            keys[_key("sub", iss, sub)] = "sub"
        if isinstance(sid, str) and sid:
            keys[_key("sid", iss, sid)] = "sid"
    found = _cache().get_many(list(keys))
    for key, revoked_at in found.items():
        kind = keys[key]
        if kind == "sid":
            raise Revoked("session_logged_out", "the token's session has logged out")
        if issued_at is None or issued_at <= float(revoked_at):
            raise Revoked("revoked", f"credentials issued before the {kind}'s revocation")
        if kind == "user":
            # A recently revoked user: other processes may cache them as active for
            # USER_CACHE_TTL more seconds, so ask the database.
            forget_user(user_pk)
            model = get_user_model()
            fields = {f.name for f in model._meta.get_fields()}
            active = model._default_manager.filter(pk=user_pk)
            if "is_active" in fields:
                active = active.filter(is_active=True)
            if not active.exists():
                raise Revoked("inactive_user", "the user is disabled")


async def check(user: Any, claims: dict[str, Any] | None, issued_at: float | None) -> None:
    """Raise ``Revoked`` when a credential is revoked; ``issued_at`` is the token's
    ``iat`` (or, for a session ticket, the ticket's issue time)."""
    conf = get_conf()
    if not conf.revocation_check:
        return
    if issued_at is None and claims:
        iat = claims.get("iat")
        issued_at = float(iat) if isinstance(iat, int | float) else None
    try:
        await sync_to_async(_check_sync, thread_sensitive=False)(user.pk, claims, issued_at)
    except Revoked:
        raise
    except Exception as exc:  # the store is down: fail closed, like the ticket store
        raise Revoked("revocation_store_unavailable", f"cannot check revocation: {exc}") from exc


# -- revoking ---------------------------------------------------------------------------------


async def _send(groups: list[str], reason: str) -> None:
    layer = get_channel_layer()
    if layer is None:
        logger.warning("wsauth: no channel layer configured; open sockets stay open")
        return
    for group in groups:
        await layer.group_send(group, {"type": EVENT, "reason": reason})


def _forget(user: Any = None, issuer: str | None = None, subject: str | None = None) -> None:
    if user is not None:
        forget_user(user.pk)
    if subject is not None:
        forget_verified(lambda t: t.subject == subject and (issuer is None or t.issuer == issuer))


async def adisconnect_user(user: Any, *, reason: str = "revoked") -> None:
    """Close every socket of ``user`` on every process (4403) and refuse credentials
    issued before now."""
    await sync_to_async(_mark, thread_sensitive=False)("user", user.pk)
    _forget(user)
    await _send([user_group(user.pk)], reason)
    logger.info("wsauth: revoked sockets of user pk=%s: %s", user.pk, reason)
    await sync_to_async(_signal)(user, None, None, None, reason)


def disconnect_user(user: Any, *, reason: str = "revoked") -> None:
    """Sync form of ``adisconnect_user`` (views, admin actions, signal handlers)."""
    async_to_sync(adisconnect_user)(user, reason=reason)


def _user_for_subject(issuer: str, subject: str) -> Any:
    from django.utils.module_loading import import_string

    backend = import_string(get_conf().user_backend)()
    return backend.user_for_claims({"iss": issuer, "sub": subject}, create=False)


async def adisconnect_subject(
    subject: str, issuer: str | None = None, *, reason: str = "revoked"
) -> None:
    """Close every socket of the person ``(issuer, subject)`` and refuse their tokens
    issued before now. ``issuer`` defaults to ``WSAUTH["ISSUER"]``."""
    issuer = issuer or get_conf().issuer or ""
    await sync_to_async(_mark, thread_sensitive=False)("sub", issuer, subject)
    user = await sync_to_async(_user_for_subject)(issuer, subject)
    _forget(user, issuer, subject)
    if user is not None:
        await _send([user_group(user.pk)], reason)
    logger.info("wsauth: revoked sockets of sub=%s: %s", subject, reason)
    await sync_to_async(_signal)(user, issuer, subject, None, reason)


def disconnect_subject(subject: str, issuer: str | None = None, *, reason: str = "revoked") -> None:
    async_to_sync(adisconnect_subject)(subject, issuer, reason=reason)


async def adisconnect_session(sid: str, issuer: str | None = None, *, reason: str) -> None:
    """Close the sockets whose token carried ``sid`` and refuse that session's tokens
    until the marker expires (``REVOCATION_TTL``)."""
    issuer = issuer or get_conf().issuer or ""
    await sync_to_async(_mark, thread_sensitive=False)("sid", issuer, sid)
    forget_verified(lambda t: t.claims.get("sid") == sid and t.issuer == issuer)
    await _send([session_group(issuer, sid)], reason)
    logger.info("wsauth: revoked sockets of an OpenID session: %s", reason)
    await sync_to_async(_signal)(None, issuer, None, sid, reason)


def _signal(
    user: Any, issuer: str | None, subject: str | None, sid: str | None, reason: str
) -> None:
    sockets_revoked.send(
        sender=None, user=user, issuer=issuer, subject=subject, sid=sid, reason=reason
    )
