"""Django sessions as WebSocket credentials: when a session logged in, through which
OpenID session, and how a revocation or a back-channel logout reaches it.

A session buys tickets (``POST /wsauth/ticket/``). A revocation refuses credentials issued
before it; a session's credential was issued at its login, so the login time is kept in
the session (``LOGIN_KEY``), with the provider's ``iss``, ``sub`` and ``sid`` when the
login was an OpenID one (``OIDCBackend``). A session that logged in before a revocation
then buys no ticket, however recently it asks.

``LoginSession`` indexes the sessions by user and by OpenID session, as Spring's
``SessionRegistry`` and Keycloak's adapters do, so that:

- a back-channel logout ends the Django sessions it names (by ``sid``, or every session
  of the ``sub``);
- a revocation (``sockets_revoked``) marks the user's sessions revoked in the database,
  which outlives the store's markers (``REVOCATION_TTL``, a day; a session lives weeks).

Only server-side session engines can be ended or indexed (database, cache, cached_db,
file); signed-cookie sessions are still refused by the markers while they last.
"""

from __future__ import annotations

import datetime
import logging
import math
import time
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from .conf import get_conf

logger = logging.getLogger("wsauth")

#: The session key of the login record: ``{"at": epoch s, "iss", "sub", "sid"}``.
LOGIN_KEY = "wsauth_login"
#: Set on the user by ``OIDCBackend`` for the ``user_logged_in`` receiver.
_OIDC_ATTRIBUTE = "_wsauth_oidc_login"
_SIGNED_COOKIES = "django.contrib.sessions.backends.signed_cookies"


@dataclass(frozen=True, slots=True)
class Login:
    """A session's login: when (None: before wsauth recorded logins) and, for an OpenID
    login, the provider's session."""

    at: float | None = None
    issuer: str | None = None
    subject: str | None = None
    sid: str | None = None

    @classmethod
    def of(cls, record: Any) -> Login:
        if not isinstance(record, dict):
            return cls()
        at = record.get("at")
        texts = {k: v if isinstance(v, str) and v else None for k, v in record.items()}
        return cls(
            at=float(at) if isinstance(at, int | float) and math.isfinite(at) else None,
            issuer=texts.get("iss"),
            subject=texts.get("sub"),
            sid=texts.get("sid"),
        )

    def claims(self) -> dict[str, Any] | None:
        """The OpenID session as claims, for the revocation markers and groups."""
        if not (self.subject or self.sid):
            return None
        return {"iss": self.issuer, "sub": self.subject, "sid": self.sid}


def note_oidc_login(request: Any, user: Any, claims: dict[str, Any]) -> None:
    """Called by ``OIDCBackend`` with the verified ID token's claims. The login that
    follows records them; a re-authentication of the session's own user (no login)
    records them now."""
    sid = claims.get("sid")
    oidc = {
        "iss": str(claims.get("iss") or get_conf().issuer or ""),
        "sub": str(claims.get("sub") or ""),
        "sid": sid if isinstance(sid, str) else "",
    }
    setattr(user, _OIDC_ATTRIBUTE, oidc)
    current = getattr(request, "user", None)
    if current is not None and current.is_authenticated and current.pk == user.pk:
        record_login(request, user, oidc)


def record_login(request: Any, user: Any, oidc: dict[str, str] | None = None) -> None:
    """Keep the login's time (and OpenID session) in the session, and index it."""
    session = getattr(request, "session", None)
    if session is None:
        return
    now = time.time()
    session[LOGIN_KEY] = {"at": now, **(oidc or {})}
    key = session.session_key
    if not key or len(key) > 40 or settings.SESSION_ENGINE == _SIGNED_COOKIES:
        return
    from .models import LoginSession

    moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
    LoginSession.objects.filter(expires_at__lt=moment).delete()  # sessions past their age
    LoginSession.objects.update_or_create(
        session_key=key,
        defaults={
            "user": user,
            "issuer": (oidc or {}).get("iss", ""),
            "subject": (oidc or {}).get("sub", ""),
            "sid": (oidc or {}).get("sid", ""),
            "logged_in_at": moment,
            "expires_at": session.get_expiry_date(),
            "revoked_at": None,
        },
    )


def on_logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if request is not None:
        record_login(request, user, getattr(user, _OIDC_ATTRIBUTE, None))


def on_logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    key = getattr(getattr(request, "session", None), "session_key", None)
    if key:
        from .models import LoginSession

        LoginSession.objects.filter(session_key=key).delete()


def on_revoked(
    sender: Any,
    user: Any = None,
    issuer: str | None = None,
    subject: str | None = None,
    sid: str | None = None,
    **kwargs: Any,
) -> None:
    """``revoke.sockets_revoked``: the sessions it covers, logged in before now, stay
    refused in the database after the store's marker expires."""
    from .models import LoginSession

    match = Q()
    if user is not None:
        match |= Q(user=user)
    if sid:
        match |= Q(issuer=issuer or "", sid=sid)
    elif subject:
        match |= Q(issuer=issuer or "", subject=subject)
    if match:
        now = timezone.now()
        LoginSession.objects.filter(match, logged_in_at__lte=now, revoked_at=None).update(
            revoked_at=now
        )


async def check(request: Any, user: Any) -> Login:
    """The session's login, or ``revoke.Revoked`` when a revocation since covers it."""
    from . import revoke
    from .models import LoginSession

    login = Login.of(await request.session.aget(LOGIN_KEY))
    if not get_conf().revocation_check:
        return login
    key = request.session.session_key
    revoked = LoginSession.objects.filter(session_key=key, revoked_at__isnull=False)
    if key and await revoked.aexists():
        raise revoke.Revoked("revoked", "the session was revoked")
    await revoke.check(user, login.claims(), login.at)
    return login


async def aend_current(request: Any) -> None:
    """End the request's session (a revoked one): its cookie opens nothing any more."""
    from .models import LoginSession

    key = request.session.session_key
    if key:
        await LoginSession.objects.filter(session_key=key).adelete()
    await request.session.aflush()


def end_sessions(
    *, issuer: str, sid: str | None = None, subject: str | None = None, user: Any = None
) -> int:
    """Blocking: end the Django sessions of an OpenID session (``sid``), or every session
    of a subject (its user's, however they logged in). Returns how many."""
    from .models import LoginSession

    if sid:
        rows = LoginSession.objects.filter(issuer=issuer, sid=sid)
    elif user is not None:
        rows = LoginSession.objects.filter(user=user)
    elif subject:
        rows = LoginSession.objects.filter(issuer=issuer, subject=subject)
    else:
        return 0
    keys = list(rows.values_list("session_key", flat=True))
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    for key in keys:
        store.delete(key)
    rows.delete()
    if keys:
        logger.info("wsauth: ended %d Django sessions on a back-channel logout", len(keys))
    return len(keys)
