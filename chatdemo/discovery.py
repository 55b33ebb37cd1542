"""Endpoints of an external OpenID provider for mozilla-django-oidc, read at start-up.

Each endpoint can be given in the environment (OIDC_OP_AUTHORIZATION_ENDPOINT, ...);
the rest come from the discovery document. An unreachable provider leaves them empty:
the browser login is then unavailable, and WebSocket tokens still verify (wsauth fetches
keys on its own, lazily).
"""

from __future__ import annotations

import json
import os
import urllib.request

_ENV = {
    "authorization_endpoint": "OIDC_OP_AUTHORIZATION_ENDPOINT",
    "token_endpoint": "OIDC_OP_TOKEN_ENDPOINT",
    "userinfo_endpoint": "OIDC_OP_USER_ENDPOINT",
    "jwks_uri": "OIDC_OP_JWKS_ENDPOINT",
}


def discover(issuer: str, timeout: float = 3.0) -> dict[str, str]:
    found = {key: os.environ[env] for key, env in _ENV.items() if os.environ.get(env)}
    if len(found) == len(_ENV) or not issuer.startswith(("http://", "https://")):
        return found
    url = issuer + "/.well-known/openid-configuration"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            document = json.load(response)
    except (OSError, ValueError):
        return found
    if not isinstance(document, dict):
        return found
    return {
        **{k: v for k in _ENV if isinstance(v := document.get(k), str)},
        **found,
    }
