"""The demo's browser-login backend: wsauth's (iss, sub) mapping, plus the refresh token.

mozilla-django-oidc stores the access token in the session but not the refresh token;
the room page needs fresh access tokens to refresh its socket in-band before expiry.
"""

from __future__ import annotations

from typing import Any

from wsauth.backends import OIDCBackend


class DemoOIDCBackend(OIDCBackend):
    def get_token(self, payload: dict[str, Any]) -> dict[str, Any]:
        token_info: dict[str, Any] = super().get_token(payload)
        request = getattr(self, "request", None)
        if request is not None and token_info.get("refresh_token"):
            request.session["oidc_refresh_token"] = token_info["refresh_token"]
        return token_info
