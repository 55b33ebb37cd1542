"""System checks: ``manage.py check`` explains a dangerous or broken configuration."""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from .conf import DEFAULTS, get_conf
from .limits import parse_rate
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
    for name in ("HANDSHAKE_RATE", "FAILED_AUTH_RATE", "MESSAGE_RATE"):
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
    errors.extend(_check_stores(conf))
    return errors


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
    local_backend = ticket_cache.get("BACKEND", "")
    if local_backend.endswith(("LocMemCache", "DummyCache")) and (
        multi_process or not settings.DEBUG
    ):
        errors.append(
            Warning(
                f"Tickets are kept in a {local_backend.rsplit('.', 1)[-1]}, which other "
                "processes cannot see: a ticket issued by one Daphne process fails on another.",
                hint="Point WSAUTH['TICKET_CACHE'] at a shared cache, e.g. "
                "django.core.cache.backends.redis.RedisCache.",
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
    """``check --deploy``: every Redis behind wsauth's caches is 7.0 or newer (an older
    one fails every ticket and limit command at run time, with Redis's own error)."""
    from django.core.cache.backends.redis import RedisCache

    from . import stores

    conf = get_conf()
    known = getattr(settings, "CACHES", {})
    found: list[Any] = []
    seen: set[str] = set()
    settings_of = {"TICKET_CACHE": conf.ticket_cache}
    settings_of["REVOCATION_CACHE"] = conf.revocation_cache
    settings_of["RATE_LIMIT_CACHE"] = conf.rate_limit_cache
    for setting, alias in settings_of.items():
        if alias not in known:
            continue  # E011/E014
        instance = stores.cache(alias)
        if not isinstance(instance, RedisCache):
            continue
        for url in instance._servers:  # type: ignore[attr-defined]
            if url in seen:
                continue
            seen.add(url)
            found.extend(_check_redis(url, alias, setting))
    return found


def _check_redis(url: str, alias: str, setting: str) -> list[Any]:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2, protocol=2)
    kwargs = client.connection_pool.connection_kwargs
    where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"  # no password in it
    try:
        version = str(client.info("server")["redis_version"])
    except Exception as exc:
        return [
            Warning(
                f"Cannot reach the Redis at {where} (cache {alias!r}) to check its version: {exc}",
                hint="Start Redis or fix the cache's LOCATION: handshakes with tickets are "
                "refused while it is down.",
                id="wsauth.W003",
            )
        ]
    finally:
        client.close()
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < MIN_REDIS:
        return [
            Error(
                f"The Redis at {where} (cache {alias!r}, WSAUTH['{setting}']) is {version}; "
                "wsauth needs Redis 7.0 or newer (GETDEL, EXPIRE ... NX in its store script).",
                hint=f"Upgrade Redis to 7.0+, or point WSAUTH['{setting}'] at a cache on a "
                "newer Redis.",
                id="wsauth.E015",
            )
        ]
    return []
