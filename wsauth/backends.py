"""mozilla-django-oidc's backend, mapping people by ``(iss, sub)`` instead of e-mail.

The same class serves browser logins (``AUTHENTICATION_BACKENDS``) and WebSocket tokens
(``WSAUTH["USER_BACKEND"]``), so one person is one Django user however they came in.
Access tokens often carry no e-mail, and e-mail addresses change; ``sub`` does not.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from .conf import get_conf
from .models import OIDCIdentity
from .sessions import note_oidc_login

#: Generated usernames start with this; no preferred_username may.
_GENERATED_PREFIX = "oidc-"


class OIDCBackend(OIDCAuthenticationBackend):  # type: ignore[misc]  # (an untyped library)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except ImproperlyConfigured:
            # Without browser login settings, only the user-mapping hooks are needed.
            self.UserModel = get_user_model()

    def get_or_create_user(self, access_token: Any, id_token: Any, payload: Any) -> Any:
        """A browser login: the session records the ID token's ``sid`` (and ``iss``,
        ``sub``), so that a back-channel logout reaches it (``wsauth.sessions``)."""
        user = super().get_or_create_user(access_token, id_token, payload)
        request = getattr(self, "request", None)
        if user is not None and request is not None and isinstance(payload, dict):
            note_oidc_login(request, user, payload)
        return user

    def get_user(self, user_id: Any) -> Any:
        """As Django's ``ModelBackend``: no inactive user (mozilla-django-oidc returns them,
        so a sync view took a session of a deactivated user as logged in)."""
        user = super().get_user(user_id)
        return user if user is not None and self.user_can_authenticate(user) else None

    @staticmethod
    def issuer_of(claims: dict[str, Any]) -> str:
        # Userinfo responses carry no 'iss': they come from the configured issuer.
        return str(claims.get("iss") or get_conf().issuer or "")

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        return bool(claims.get("sub"))

    def describe_user_by_claims(self, claims: dict[str, Any]) -> str:
        return f"sub {claims.get('sub')!r} at {self.issuer_of(claims)!r}"

    def filter_users_by_claims(self, claims: dict[str, Any]) -> Any:
        sub = claims.get("sub")
        if not sub:
            return self.UserModel.objects.none()
        return self.UserModel.objects.filter(
            oidc_identities__issuer=self.issuer_of(claims), oidc_identities__subject=sub
        )

    def get_username(self, claims: dict[str, Any]) -> str:
        """``preferred_username`` as Django will store it (NFKC), when no one has it in any
        case; else a name derived from ``(iss, sub)``. The derived names' prefix is not
        given out as a preferred name, so no one can take another person's in advance."""
        if self.get_settings("OIDC_USERNAME_ALGO", None):
            return str(super().get_username(claims))
        preferred = claims.get("preferred_username")
        if isinstance(preferred, str):
            name = self.UserModel.normalize_username(preferred)
            if (
                name
                and len(name) <= 100
                and not name.lower().startswith(_GENERATED_PREFIX)
                and not self.UserModel.objects.filter(username__iexact=name).exists()
            ):
                return name
        return self.generated_username(claims)

    def generated_username(self, claims: dict[str, Any], salt: str = "") -> str:
        seed = f"{self.issuer_of(claims)}\0{claims['sub']}{salt}"
        digest = hashlib.sha256(seed.encode()).digest()[:20]
        return _GENERATED_PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def create_user(self, claims: dict[str, Any]) -> Any:
        """A new user for a new person: when the chosen username turns out taken (a race,
        a case- or accent-insensitive collation, an ``OIDC_USERNAME_ALGO``), a generated
        one, never the existing account and never a refusal."""
        candidates = dict.fromkeys(
            [
                self.get_username(claims),
                self.generated_username(claims),
                self.generated_username(claims, salt=secrets.token_hex(8)),
            ]
        )
        for username in candidates:
            try:
                with transaction.atomic():
                    user = self.UserModel.objects.create_user(
                        username, email=claims.get("email") or ""
                    )
                    self._copy_names(user, claims)
                    user.save()
                    OIDCIdentity.objects.create(
                        user=user, issuer=self.issuer_of(claims), subject=claims["sub"]
                    )
                return user
            except IntegrityError:
                if self.filter_users_by_claims(claims).exists():
                    raise  # the same person, created by a concurrent handshake
        raise IntegrityError(f"no free username for {self.describe_user_by_claims(claims)}")

    def update_user(self, user: Any, claims: dict[str, Any]) -> Any:
        before = (user.first_name, user.last_name, user.email)
        self._copy_names(user, claims)
        if claims.get("email"):
            user.email = claims["email"]
        if (user.first_name, user.last_name, user.email) != before:
            user.save(update_fields=["first_name", "last_name", "email"])
        return user

    @staticmethod
    def _copy_names(user: Any, claims: dict[str, Any]) -> None:
        given, family, name = (claims.get(k) for k in ("given_name", "family_name", "name"))
        if isinstance(given, str) or isinstance(family, str):
            user.first_name = (given or "")[:150]
            user.last_name = (family or "")[:150]
        elif isinstance(name, str):
            user.first_name, user.last_name = name[:150], ""

    def user_for_claims(self, claims: dict[str, Any], *, create: bool) -> Any:
        """Find (or create) the user for verified claims; ``None`` when there is none."""
        users = list(self.filter_users_by_claims(claims)[:2])
        if len(users) == 1:
            return self.update_user(users[0], claims)
        if users or not create:
            return None
        try:
            return self.create_user(claims)
        except IntegrityError:
            # Another handshake created the same person at the same moment.
            users = list(self.filter_users_by_claims(claims)[:2])
            return users[0] if len(users) == 1 else None
