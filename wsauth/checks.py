"""System checks: ``manage.py check`` explains a dangerous or broken configuration."""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from . import store
from .admission.policies import parse_rate
from .conf import DEFAULTS, get_conf
from .origins import OriginError, parse_origin

_SYMMETRIC = ("HS256", "HS384", "HS512")


@register(Tags.security, "wsauth")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    conf = get_conf()
    errors: list[Any] = []
    raw = getattr(settings, "WSAUTH", {})
    if not isinstance(raw, dict):
        return [Error("WSAUTH must be a dict.", hint="WSAUTH = {...}", id="wsauth.E000")]
    for name in sorted(set(raw) - set(DEFAULTS)):
        errors.append(
            Error(
                f"WSAUTH has an unknown setting {name!r}.",
                hint="Check the spelling against the README's settings table.",
                id="wsauth.E001",
            )
        )
    if not conf.issuer:
        errors.append(
            Error(
                "No OpenID Connect issuer is configured for WebSocket tokens.",
                hint="Set WSAUTH['ISSUER'] to the issuer URL exactly as tokens carry it in "
                "'iss', e.g. 'https://login.example.com/realms/main'.",
                id="wsauth.E002",
            )
        )
    if conf.verify_audience and not conf.audience:
        errors.append(
            Error(
                "No audience is configured: tokens issued to any client would be accepted.",
                hint="Set WSAUTH['AUDIENCE'] (or OIDC_RP_CLIENT_ID) to the 'aud' your access "
                "tokens carry; set WSAUTH['VERIFY_AUDIENCE'] = False only if your issuer "
                "puts no audience in access tokens.",
                id="wsauth.E003",
            )
        )
    bad = sorted(a for a in conf.algorithms if a.lower() == "none")
    if bad:
        errors.append(
            Error(
                "WSAUTH['ALGORITHMS'] allows unsigned tokens ('none').",
                hint="Remove 'none' from WSAUTH['ALGORITHMS'].",
                id="wsauth.E004",
            )
        )
    symmetric = sorted(a for a in conf.algorithms if a.upper() in _SYMMETRIC)
    if symmetric:
        errors.append(
            Error(
                f"WSAUTH['ALGORITHMS'] lists HMAC algorithms {symmetric} next to a public key "
                "set: a token signed with the public key as HMAC secret could pass.",
                hint="Use asymmetric algorithms (the default: RS256, ES256, EdDSA, ...). If "
                "OIDC_RP_SIGN_ALGO is 'HS256', set WSAUTH['ALGORITHMS'] explicitly.",
                id="wsauth.E005",
            )
        )
    if not conf.algorithms:
        errors.append(
            Error("WSAUTH['ALGORITHMS'] is empty.", hint="Leave the default.", id="wsauth.E006")
        )
    if conf.jwks_unknown_kid_cooldown < 5:
        errors.append(
            Error(
                "WSAUTH['JWKS_UNKNOWN_KID_COOLDOWN'] is below 5 seconds: a flood of random "
                "key ids would make this server hammer the issuer.",
                hint="Use 5 seconds or more (default 10).",
                id="wsauth.E007",
            )
        )
    if conf.typ_policy not in ("default", "strict"):
        errors.append(
            Error(
                f"WSAUTH['TYP_POLICY'] is {conf.typ_policy!r}.",
                hint="Use 'default' (at+jwt, JWT or no typ) or 'strict' (at+jwt only).",
                id="wsauth.E008",
            )
        )
    if not 1 <= conf.ticket_ttl <= 300:
        errors.append(
            Error(
                f"WSAUTH['TICKET_TTL'] is {conf.ticket_ttl} seconds.",
                hint="A ticket should live a few seconds: use 1 to 300 (default 30).",
                id="wsauth.E009",
            )
        )
    for value in conf.allowed_origins:
        try:
            parse_origin(value, allow_wildcard=True)
        except OriginError as exc:
            errors.append(
                Error(
                    f"WSAUTH['ALLOWED_ORIGINS'] has an invalid origin: {exc}",
                    hint="Write origins as 'https://host[:port]' or 'https://*.example.com'.",
                    id="wsauth.E010",
                )
            )
    rates = ("HANDSHAKE_RATE", "USER_HANDSHAKE_RATE", "FAILED_AUTH_RATE", "MESSAGE_RATE")
    for name in (*rates, "FRAME_RATE"):
        try:
            parse_rate(conf.raw[name])
        except (ValueError, TypeError, KeyError) as exc:
            errors.append(
                Error(
                    f"WSAUTH['{name}'] is not a rate: {exc}",
                    hint="Write a rate as 'COUNT/second', 'COUNT/minute', 'COUNT/hour', "
                    "'COUNT/SECONDS', or None for no limit.",
                    id="wsauth.E012",
                )
            )
    for value in conf.trusted_proxies:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            errors.append(
                Error(
                    f"WSAUTH['TRUSTED_PROXIES'] has {value!r}, which is no address or network.",
                    hint="List your proxies' addresses or CIDR networks, e.g. '10.0.0.0/8'.",
                    id="wsauth.E013",
                )
            )
    for alias_name in ("REVOCATION_CACHE", "RATE_LIMIT_CACHE"):
        alias = conf.raw[alias_name]
        if alias and alias not in getattr(settings, "CACHES", {}):
            errors.append(
                Error(
                    f"WSAUTH['{alias_name}'] names the cache {alias!r}, which is not in CACHES.",
                    hint=f"Add it to CACHES, or drop {alias_name} to use TICKET_CACHE.",
                    id="wsauth.E014",
                )
            )
    if not 5 <= conf.socket_lease <= 300:
        errors.append(
            Error(
                f"WSAUTH['SOCKET_LEASE'] is {conf.socket_lease:g} seconds.",
                hint="Use 5 to 300 seconds (default 30): a dead process's socket places "
                "lapse after one lease, and each process renews its own every lease/3.",
                id="wsauth.E017",
            )
        )
    if not 32 <= conf.ipv6_prefix <= 128:
        errors.append(
            Error(
                f"WSAUTH['IPV6_PREFIX'] is {conf.ipv6_prefix}.",
                hint="Use 32 to 128 (default 64: one host holds a /64; 128 counts each "
                "address alone).",
                id="wsauth.E018",
            )
        )
    errors.extend(_check_server_adapters(conf))
    errors.extend(_check_metrics(raw.get("METRICS")))
    errors.extend(_check_frames(conf))
    errors.extend(_check_sessions(conf))
    errors.extend(_check_stores(conf))
    return errors


def _check_server_adapters(conf: Any) -> list[Any]:
    from django.utils.module_loading import import_string

    from .edge import DEFAULT_ADAPTERS, ServerAdapter

    if conf.server_adapters is None:
        return []
    if not conf.server_adapters:
        return [
            Warning(
                "WSAUTH['SERVER_ADAPTERS'] is empty: every server keeps the upgrade "
                "request's token or ticket for each socket's life.",
                hint="Remove SERVER_ADAPTERS to use the built-in adapters "
                f"({', '.join(DEFAULT_ADAPTERS)}).",
                id="wsauth.W004",
            )
        ]
    errors: list[Any] = []
    for path in conf.server_adapters:
        try:
            adapter = import_string(path)
        except ImportError as exc:
            problem = f"cannot be imported ({exc})"
        else:
            if isinstance(adapter, type) and issubclass(adapter, ServerAdapter):
                continue
            problem = "is not a wsauth.edge.ServerAdapter subclass"
        errors.append(
            Error(
                f"WSAUTH['SERVER_ADAPTERS'] entry {path!r} {problem}.",
                hint="List dotted paths of ServerAdapter subclasses, e.g. "
                f"{DEFAULT_ADAPTERS[0]!r}, or remove the setting for the built-in ones.",
                id="wsauth.E019",
            )
        )
    return errors


def _check_frames(conf: Any) -> list[Any]:
    errors: list[Any] = []
    for name in ("MAX_QUEUED_BYTES", "MAX_FRAGMENTS"):
        value = conf.raw[name]
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            errors.append(
                Error(
                    f"WSAUTH['{name}'] is {value!r}.",
                    hint=f"Set {name} to a positive whole number (defaults: MAX_QUEUED_BYTES "
                    "1048576, MAX_FRAGMENTS 64), or None to lift the limit.",
                    id="wsauth.E023",
                )
            )
    try:
        frames, messages = parse_rate(conf.frame_rate), parse_rate(conf.message_rate)
    except (ValueError, TypeError):
        return errors  # E012
    if frames and messages and frames[0] / frames[1] < messages[0] / messages[1]:
        errors.append(
            Warning(
                f"WSAUTH['FRAME_RATE'] ({conf.frame_rate}) allows fewer frames than "
                f"MESSAGE_RATE ({conf.message_rate}) allows messages: every message is at "
                "least one frame, so clients are closed (4429) below MESSAGE_RATE.",
                hint="Raise FRAME_RATE to at least twice MESSAGE_RATE (pings and "
                "fragments are frames too), or lower MESSAGE_RATE.",
                id="wsauth.W006",
            )
        )
    return errors


def _check_metrics(value: Any) -> list[Any]:
    from . import metrics

    if value not in (None, True, False):
        return [
            Error(
                f"WSAUTH['METRICS'] is {value!r}.",
                hint="Use None (the default: on when prometheus_client is installed), True "
                "(required) or False (off).",
                id="wsauth.E022",
            )
        ]
    if value is True and not metrics.available():
        return [
            Error(
                "WSAUTH['METRICS'] is True but prometheus_client is not installed.",
                hint="pip install 'django-wsauth[metrics]', or set WSAUTH['METRICS'] to None "
                "(metrics when installed) or False.",
                id="wsauth.E021",
            )
        ]
    return []


def _check_sessions(conf: Any) -> list[Any]:
    engine = getattr(settings, "SESSION_ENGINE", "")
    if engine != "django.contrib.sessions.backends.signed_cookies":
        return []
    return [
        Warning(
            "Sessions are signed cookies: a back-channel logout cannot end them, and a "
            "session revoked by disconnect_user is refused tickets only while its marker "
            "lasts (REVOCATION_TTL).",
            hint="Use a server-side SESSION_ENGINE (db, cache, cached_db, file), which "
            "wsauth.sessions indexes and can end.",
            id="wsauth.W007",
        )
    ]


def _store_aliases(conf: Any) -> dict[str, str]:
    """Store alias: the setting that names it (``"REDIS"``: ``WSAUTH["REDIS"]``)."""
    if conf.redis is not None:
        return {"REDIS": "REDIS"}
    found: dict[str, str] = {}
    for setting, alias in (
        ("TICKET_CACHE", conf.ticket_cache),
        ("REVOCATION_CACHE", conf.revocation_cache),
        ("RATE_LIMIT_CACHE", conf.rate_limit_cache),
    ):
        found.setdefault(alias, setting)
    return found


def _check_stores(conf: Any) -> list[Any]:
    errors: list[Any] = []
    caches = getattr(settings, "CACHES", {})
    ticket_cache = caches.get(conf.ticket_cache)
    if ticket_cache is None:
        errors.append(
            Error(
                f"WSAUTH['TICKET_CACHE'] names the cache {conf.ticket_cache!r}, which is not "
                "in CACHES.",
                hint="Add it to CACHES or point TICKET_CACHE at an existing alias.",
                id="wsauth.E011",
            )
        )
        return errors
    layers = getattr(settings, "CHANNEL_LAYERS", {})
    layer_backend = str(layers.get("default", {}).get("BACKEND", ""))
    multi_process = "redis" in layer_backend.lower()
    for alias, setting in _store_aliases(conf).items():
        if alias != "REDIS" and alias not in caches:
            continue  # E011/E014
        try:
            spec = store.spec_of(alias)
        except ImproperlyConfigured as exc:
            errors.append(
                Error(
                    f"wsauth cannot keep its shared state in WSAUTH['{setting}']: {exc}",
                    hint="Use Redis or Valkey through Django's RedisCache or django-redis "
                    "(DefaultClient, SentinelClient), or set WSAUTH['REDIS'] (a URL, "
                    "Sentinel or Cluster); see the README's Redis deployments table.",
                    id="wsauth.E016",
                )
            )
            continue
        if spec is None and (multi_process or not settings.DEBUG):
            errors.append(
                Warning(
                    f"WSAUTH['{setting}'] is a LocMemCache: tickets, limits, socket places "
                    "and revocation markers stay in each process. A ticket issued by one "
                    "process fails on another, and every limit counts per process.",
                    hint="Point WSAUTH['TICKET_CACHE'] at a Redis cache "
                    "(django.core.cache.backends.redis.RedisCache or django-redis), or "
                    "set WSAUTH['REDIS'].",
                    id="wsauth.W001",
                )
            )
    if layer_backend and "InMemoryChannelLayer" in layer_backend and not settings.DEBUG:
        errors.append(
            Warning(
                "The channel layer is in memory while DEBUG is off: group messages do not "
                "cross processes, and it slows down with many sockets.",
                hint="Use channels_redis.core.RedisChannelLayer with "
                "{'address': REDIS_URL, 'socket_timeout': 10}.",
                id="wsauth.W002",
            )
        )
    return errors


#: The store's script uses ``GETDEL`` (Redis 6.2) and ``EXPIRE ... NX`` (7.0).
MIN_REDIS = (7, 0)


@register(Tags.caches, "wsauth", deploy=True)
def check_redis_version(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """``check --deploy``: every Redis behind wsauth's store is 7.0 or newer (an older
    one fails every script at run time, with Redis's own error)."""
    conf = get_conf()
    known = getattr(settings, "CACHES", {})
    found: list[Any] = []
    for alias, setting in _store_aliases(conf).items():
        if alias != "REDIS" and alias not in known:
            continue  # E011/E014
        try:
            spec = store.spec_of(alias)
        except ImproperlyConfigured:
            continue  # E016
        if spec is not None:
            found.extend(_check_redis(store.by_alias(alias), spec.where(), setting))
    return found


def _check_redis(shared: Any, where: str, setting: str) -> list[Any]:
    try:
        version = shared.version_sync()
    except Exception as exc:
        return [
            Warning(
                f"Cannot reach the Redis at {where} (WSAUTH['{setting}']) to check its "
                f"version: {exc}",
                hint="Start Redis or fix the cache's LOCATION: handshakes with tickets are "
                "refused while it is down.",
                id="wsauth.W003",
            )
        ]
    parts = tuple(int(p) for p in str(version).split(".")[:2] if p.isdigit())
    if parts < MIN_REDIS:
        return [
            Error(
                f"The Redis at {where} (WSAUTH['{setting}']) is {version}; wsauth needs "
                "Redis 7.0 or newer (GETDEL, EXPIRE ... NX in its store scripts). Valkey "
                "7.2+ reports 7.2.4 and works.",
                hint=f"Upgrade Redis to 7.0+, or point WSAUTH['{setting}'] at a newer one.",
                id="wsauth.E015",
            )
        ]
    return []
