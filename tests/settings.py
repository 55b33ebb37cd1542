"""Settings for in-process tests (pytest-django). Daphne-backed tests run the demo
project's own settings in a subprocess instead (see tests/daphne.py)."""

from project.settings import *  # noqa: F403
from wsauth.conf import DEFAULT_ALGORITHMS

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Keys come from the live test issuer, not the demo provider mozilla-django-oidc points at.
OIDC_OP_JWKS_ENDPOINT = ""
WSAUTH = {
    "ISSUER": "http://127.0.0.1:9/unconfigured",  # tests point this at a live Issuer
    "AUDIENCE": "wsauth-tests",
    # The demo sets OIDC_RP_SIGN_ALGO = "RS256" (a fallback); tests cover every default.
    "ALGORITHMS": DEFAULT_ALGORITHMS,
    # Many tests share one client address: the limit tests turn limits on themselves.
    "HANDSHAKE_RATE": None,
    "FAILED_AUTH_RATE": None,
    "MAX_SOCKETS_PER_USER": None,
}
