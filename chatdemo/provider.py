"""The embedded development OpenID provider, built on django-oauth-toolkit.

Used when OIDC_ISSUER is unset: discovery, JWKS, the authorization-code flow with PKCE,
and RFC 9068-style JWT access tokens signed with a key generated into var/ (never in git).
Development only: a system check refuses it when DEBUG is off.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from django.conf import settings
from oauth2_provider.oauth2_validators import OAuth2Validator


def _kid() -> str:
    from oauth2_provider.utils import jwk_from_pem

    return str(jwk_from_pem(settings.OAUTH2_PROVIDER["OIDC_RSA_PRIVATE_KEY"]).thumbprint())


def user_claims(user: Any) -> dict[str, str]:
    return {
        "name": user.get_full_name() or user.get_username(),
        "preferred_username": user.get_username(),
        "email": user.email,
    }


def access_token_generator(request: Any, refresh_token: bool = False) -> str:
    """DOT's ACCESS_TOKEN_GENERATOR: a signed JWT access token (typ at+jwt) that any
    resource server, wsauth included, verifies against the provider's JWKS."""
    now = int(time.time())
    conf = settings.OAUTH2_PROVIDER
    claims = {
        "iss": conf["OIDC_ISS_ENDPOINT"],
        "sub": str(request.user.pk),
        "aud": settings.DEMO_AUDIENCE,
        "client_id": request.client_id,
        "scope": " ".join(request.scopes or []),
        "iat": now,
        "nbf": now,
        "exp": now + int(conf["ACCESS_TOKEN_EXPIRE_SECONDS"]),
        "jti": uuid.uuid4().hex,
        **user_claims(request.user),
    }
    return jwt.encode(
        claims,
        conf["OIDC_RSA_PRIVATE_KEY"],
        algorithm="RS256",
        headers={"typ": "at+jwt", "kid": _kid()},
    )


class DemoValidator(OAuth2Validator):
    """Adds the profile and e-mail claims to ID tokens and userinfo."""

    oidc_claim_scope = {
        **OAuth2Validator.oidc_claim_scope,
        "name": "profile",
        "preferred_username": "profile",
        "email": "email",
    }

    def get_additional_claims(self, request: Any) -> dict[str, str]:
        return user_claims(request.user)
