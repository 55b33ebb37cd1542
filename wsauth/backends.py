"""mozilla-django-oidc's backend, mapping people by ``(iss, sub)`` instead of e-mail.

The same class serves browser logins (``AUTHENTICATION_BACKENDS``) and WebSocket tokens
(``WSAUTH["USER_BACKEND"]``), so one person is one Django user however they came in.
Access tokens often carry no e-mail, and e-mail addresses change; ``sub`` does not.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from .conf import get_conf
from .models import OIDCIdentity


class OIDCBackend(OIDCAuthenticationBackend):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except ImproperlyConfigured:
            # Without browser login settings, only the user-mapping hooks are needed.
            self.UserModel = get_user_model()

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
        if self.get_settings("OIDC_USERNAME_ALGO", None):
            return str(super().get_username(claims))
        preferred = claims.get("preferred_username")
        if isinstance(preferred, str) and preferred and len(preferred) <= 100:
            if not self.UserModel.objects.filter(username=preferred).exists():
                return preferred
        digest = hashlib.sha256(f"{self.issuer_of(claims)}\0{claims['sub']}".encode()).digest()[:20]
        return "oidc-" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def create_user(self, claims: dict[str, Any]) -> Any:
        with transaction.atomic():
            user = self.UserModel.objects.create_user(
                self.get_username(claims), email=claims.get("email") or ""
            )
            self._copy_names(user, claims)
            user.save()
            OIDCIdentity.objects.create(
                user=user, issuer=self.issuer_of(claims), subject=claims["sub"]
            )
        return user

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
