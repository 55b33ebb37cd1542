"""Settings of the demo project. Everything deployment-specific comes from the environment
(see the README): OIDC_ISSUER, OIDC_AUDIENCE, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, REDIS_URL,
DJANGO_SECRET_KEY, DJANGO_DEBUG, DJANGO_ALLOWED_HOSTS."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("DJANGO_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(exist_ok=True)


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


DEBUG = _env_bool("DJANGO_DEBUG", True)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or (
    "django-insecure-demo-key-only-for-local-development" if DEBUG else ""
)
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "mozilla_django_oidc",
    "wsauth",
    "chatdemo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB_PATH", str(VAR_DIR / "db.sqlite3")),
        # IMMEDIATE: two processes creating users at once wait for the write lock
        # instead of failing with "database is locked" (Django 5.1+).
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
    }
}

REDIS_URL = os.environ.get("REDIS_URL", "")
# Sentinel: "host:port,host:port" of the sentinels, and the primary's service name.
REDIS_SENTINELS = [
    (h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1]))
    for h in os.environ.get("REDIS_SENTINELS", "").split(",")
    if h.strip()
]
REDIS_SENTINEL_MASTER = os.environ.get("REDIS_SENTINEL_MASTER", "mymaster")
# Cluster: one node's URL. channels-redis's pub/sub layer is the one that works there.
REDIS_CLUSTER = os.environ.get("REDIS_CLUSTER", "")
WSAUTH_REDIS: Any = None
if REDIS_URL or REDIS_SENTINELS or REDIS_CLUSTER:
    # socket_timeout 10: redis-py 8's default (5 s) equals channels-redis's blocking read
    # timeout and kills idle consumers (channels_redis#422); None reopens a connection on
    # every socket close.
    # retry: after a Redis restart, pooled connections fail once ("Connection closed by
    # server"); retrying on a fresh connection lets the service recover by itself.
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    _where: dict[str, Any] = {"address": REDIS_URL or REDIS_CLUSTER}
    if REDIS_SENTINELS:
        _where = {"sentinels": REDIS_SENTINELS, "master_name": REDIS_SENTINEL_MASTER}
        WSAUTH_REDIS = {"SENTINELS": REDIS_SENTINELS, "SERVICE_NAME": REDIS_SENTINEL_MASTER}
    elif REDIS_CLUSTER:
        WSAUTH_REDIS = {"CLUSTER": REDIS_CLUSTER}
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        **_where,
                        "socket_timeout": 10,
                        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
                        "retry_on_error": [RedisConnectionError],
                        # redis-py 8 refuses a 101st concurrent command instead of
                        # waiting: many sockets closing at once each leave their groups.
                        "max_connections": 1000,
                    }
                ],
                # Each process's inbox holds `capacity` pending messages and group_send
                # drops the rest (an INFO line only): 100, the default, loses a burst.
                "capacity": 5000,
            },
        }
    }
    if REDIS_CLUSTER:  # its pub/sub layer takes only the address and the channel options
        CHANNEL_LAYERS["default"] = {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_CLUSTER}]},
        }
    if WSAUTH_REDIS is None:
        CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": REDIS_URL,
                "KEY_PREFIX": "chatdemo",
            }
        }
    else:  # Django's own cache needs no sharing here; wsauth's store is WSAUTH["REDIS"]
        CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# The identity provider. With OIDC_ISSUER unset the embedded development provider
# (django-oauth-toolkit, chatdemo/provider.py) is served by this same project under /o/.
DEMO_BASE_URL = os.environ.get("DEMO_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
# An audit log line per accepted, refused and closed socket (chatdemo/audit.py).
DEMO_AUDIT = _env_bool("DEMO_AUDIT", False)
OIDC_ISSUER = os.environ.get("OIDC_ISSUER", "").rstrip("/")
DEMO_EMBEDDED_PROVIDER = not OIDC_ISSUER
OIDC_RP_CLIENT_ID = os.environ.get("OIDC_CLIENT_ID", "chatdemo")
OIDC_RP_CLIENT_SECRET = os.environ.get(
    "OIDC_CLIENT_SECRET", "chatdemo-development-secret" if DEMO_EMBEDDED_PROVIDER else ""
)
DEMO_AUDIENCE = os.environ.get("OIDC_AUDIENCE") or OIDC_RP_CLIENT_ID
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_RP_SCOPES = "openid email profile"
OIDC_USE_PKCE = True
OIDC_STORE_ACCESS_TOKEN = True  # the chat page's subprotocol method needs it
OIDC_TIMEOUT = 5
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

if DEMO_EMBEDDED_PROVIDER:
    from chatdemo.keys import signing_key_pem

    OIDC_ISSUER = DEMO_BASE_URL + "/o"
    INSTALLED_APPS.append("oauth2_provider")
    OAUTH2_PROVIDER = {
        "OIDC_ENABLED": True,
        "OIDC_ISS_ENDPOINT": OIDC_ISSUER,
        "OIDC_RSA_PRIVATE_KEY": signing_key_pem(VAR_DIR / "oidc-signing-key.pem"),
        "PKCE_REQUIRED": True,
        "ACCESS_TOKEN_GENERATOR": "chatdemo.provider.access_token_generator",
        "ACCESS_TOKEN_EXPIRE_SECONDS": int(os.environ.get("DEMO_TOKEN_LIFETIME", "3600")),
        "OAUTH2_VALIDATOR_CLASS": "chatdemo.provider.DemoValidator",
        "SCOPES": {"openid": "OpenID Connect", "profile": "Your name", "email": "Your e-mail"},
    }
    OIDC_OP_AUTHORIZATION_ENDPOINT = OIDC_ISSUER + "/authorize/"
    OIDC_OP_TOKEN_ENDPOINT = OIDC_ISSUER + "/token/"
    OIDC_OP_USER_ENDPOINT = OIDC_ISSUER + "/userinfo/"
    OIDC_OP_JWKS_ENDPOINT = OIDC_ISSUER + "/.well-known/jwks.json"
    OIDC_OP_LOGOUT_ENDPOINT = OIDC_ISSUER + "/logout/"
    LOGIN_URL = "/accounts/login/"  # the provider's own login page
else:
    # An external provider (Keycloak, Auth0, Entra...): endpoints from the environment,
    # else from its discovery document. Without them the browser login is off, tokens
    # still work on WebSockets.
    from chatdemo.discovery import discover

    _endpoints = discover(OIDC_ISSUER)
    OIDC_OP_AUTHORIZATION_ENDPOINT = _endpoints.get("authorization_endpoint", "")
    OIDC_OP_TOKEN_ENDPOINT = _endpoints.get("token_endpoint", "")
    OIDC_OP_USER_ENDPOINT = _endpoints.get("userinfo_endpoint", "")
    OIDC_OP_JWKS_ENDPOINT = _endpoints.get("jwks_uri", "")
    LOGIN_URL = "/oidc/authenticate/"

WSAUTH: dict[str, Any] = {
    "ISSUER": OIDC_ISSUER,
    "AUDIENCE": DEMO_AUDIENCE,
    **({"REDIS": WSAUTH_REDIS} if WSAUTH_REDIS else {}),
    # Any other wsauth setting, as JSON: WSAUTH_OVERRIDES='{"EXPIRING_LEAD": 30}'.
    **json.loads(os.environ.get("WSAUTH_OVERRIDES") or "{}"),
}

AUTHENTICATION_BACKENDS = [
    "chatdemo.auth.DemoOIDCBackend",  # wsauth.backends.OIDCBackend + the refresh token
    "django.contrib.auth.backends.ModelBackend",
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "wsauth": {
            "handlers": ["console"],
            "level": os.environ.get("WSAUTH_LOG_LEVEL", "INFO"),
            "propagate": False,
        },
        "chatdemo": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
