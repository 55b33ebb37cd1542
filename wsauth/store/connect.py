"""Where the store lives, read from the settings users already have.

wsauth reaches Redis with the connection parameters of the cache the project configured
(its ``LOCATION`` and ``OPTIONS``: password, ``rediss://`` TLS, pool and timeouts,
Sentinel), or of ``WSAUTH["REDIS"]`` (which also describes a Cluster, which no Django
cache backend can use). It reads the public settings, never a cache object's private
attributes, and makes its own clients from them with redis-py: one asyncio client per
event loop, one blocking client per process. A configuration it cannot share across
processes raises ``ImproperlyConfigured`` with the fix; ``manage.py check`` reports it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

DJANGO_REDIS = "django.core.cache.backends.redis.RedisCache"
DJANGO_REDIS_PKG = "django_redis.cache.RedisCache"
LOCMEM = "django.core.cache.backends.locmem.LocMemCache"

#: redis-py's defaults where the project set none: a failed read must not hang a
#: handshake past its budget; the asyncio pool waits instead of refusing a 101st command.
DEFAULT_OPTIONS: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 3}
ASYNC_POOL: dict[str, Any] = {"max_connections": 1000}

_DJANGO_POOL_ONLY = ("serializer", "pool_class", "parser_class")
_DJANGO_REDIS_NAMES = {
    "PASSWORD": "password",
    "SOCKET_TIMEOUT": "socket_timeout",
    "SOCKET_CONNECT_TIMEOUT": "socket_connect_timeout",
}


@dataclass(frozen=True)
class RedisSpec:
    """How to connect: ``kind`` is ``url``, ``sentinel`` or ``cluster``."""

    kind: str
    url: str = ""
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)
    sentinel_options: Mapping[str, Any] = field(default_factory=dict)

    def where(self) -> str:
        """For messages: hosts and ports, never a password."""
        if self.kind == "sentinel":
            hosts = ", ".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"Sentinel {self.service!r} via {hosts}"
        parts = urlsplit(self.url)
        host = parts.hostname or parts.path or "?"
        return f"{'Cluster ' if self.kind == 'cluster' else ''}{host}:{parts.port or 6379}"

    def _options(self) -> dict[str, Any]:
        return {**DEFAULT_OPTIONS, **self.options}

    def async_client(self) -> Any:
        import redis.asyncio
        import redis.asyncio.cluster
        import redis.asyncio.sentinel

        options = self._options()
        if self.kind == "cluster":
            return redis.asyncio.cluster.RedisCluster.from_url(self.url, **options)
        if self.kind == "sentinel":
            sentinel = redis.asyncio.sentinel.Sentinel(
                list(self.sentinels), sentinel_kwargs=dict(self.sentinel_options), **options
            )
            return sentinel.master_for(self.service, db=self.db, **ASYNC_POOL)
        return redis.asyncio.Redis.from_url(self.url, **ASYNC_POOL, **options)

    def sync_client(self, **override: Any) -> Any:
        import redis
        import redis.cluster
        import redis.sentinel

        options = {**self._options(), **override}
        if self.kind == "cluster":
            return redis.cluster.RedisCluster.from_url(self.url, **options)
        if self.kind == "sentinel":
            sentinel = redis.sentinel.Sentinel(
                list(self.sentinels), sentinel_kwargs=dict(self.sentinel_options), **options
            )
            return sentinel.master_for(self.service, db=self.db)
        return redis.Redis.from_url(self.url, **options)


def _first_location(location: Any, where: str) -> str:
    """The primary's URL: Django and django-redis write to the first server listed."""
    if isinstance(location, str):
        servers = [s.strip() for s in location.split(",") if s.strip()]
    elif isinstance(location, list | tuple):
        servers = [str(s) for s in location]
    else:
        servers = []
    if not servers:
        raise ImproperlyConfigured(f"{where} has no LOCATION: give the Redis URL.")
    return servers[0]


def _pairs(value: Any, where: str) -> tuple[tuple[str, int], ...]:
    try:
        pairs = tuple((str(h), int(p)) for h, p in value)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(
            f"{where}: SENTINELS must be a list of (host, port) pairs."
        ) from exc
    if not pairs:
        raise ImproperlyConfigured(f"{where}: SENTINELS is empty.")
    return pairs


def _sentinel_from_url(
    url: str, sentinels: Any, options: dict[str, Any], extra: Any, where: str
) -> RedisSpec:
    """django-redis's form: ``redis://<service name>/<db>`` next to ``SENTINELS``."""
    parts = urlsplit(url)
    service = unquote(parts.hostname or "")
    if not service:
        raise ImproperlyConfigured(f"{where}: LOCATION must be redis://<service name>/<db>.")
    db = int(parts.path.strip("/") or 0)
    if parts.password and "password" not in options:
        options["password"] = unquote(parts.password)
    return RedisSpec(
        "sentinel",
        sentinels=_pairs(sentinels, where),
        service=service,
        db=db,
        options=options,
        sentinel_options=dict(extra or {}),
    )


def from_cache(alias: str, config: Mapping[str, Any]) -> RedisSpec | None:
    """The spec of the cache ``alias`` (its ``CACHES`` entry); None: local memory."""
    where = f"CACHES[{alias!r}]"
    backend = str(config.get("BACKEND", ""))
    options = dict(config.get("OPTIONS") or {})
    if backend == LOCMEM:
        return None
    if backend == DJANGO_REDIS:
        for name in _DJANGO_POOL_ONLY:
            options.pop(name, None)
        return RedisSpec("url", url=_first_location(config.get("LOCATION"), where), options=options)
    if backend == DJANGO_REDIS_PKG:
        client_class = str(options.pop("CLIENT_CLASS", "django_redis.client.DefaultClient"))
        kwargs = dict(options.pop("CONNECTION_POOL_KWARGS", None) or {})
        for name, kwarg in _DJANGO_REDIS_NAMES.items():
            if options.get(name) is not None:
                kwargs[kwarg] = options[name]
        url = _first_location(config.get("LOCATION"), where)
        short = client_class.rsplit(".", 1)[-1]
        if short in ("DefaultClient", "HerdClient"):
            return RedisSpec("url", url=url, options=kwargs)
        if short == "SentinelClient":
            return _sentinel_from_url(
                url, options.get("SENTINELS"), kwargs, options.get("SENTINEL_KWARGS"), where
            )
        raise ImproperlyConfigured(
            f"{where} uses django-redis's {short}, which spreads keys over servers by its own "
            "hashing: a ticket, a counter or a socket place would live on one server only. "
            "Use DefaultClient or SentinelClient, or describe the store in WSAUTH['REDIS']."
        )
    raise ImproperlyConfigured(
        f"{where} is a {backend.rsplit('.', 1)[-1] or 'cache'}, which wsauth cannot share "
        "across processes (it needs atomic counters, sorted sets and GETDEL). Point "
        "WSAUTH['TICKET_CACHE'] at django.core.cache.backends.redis.RedisCache or "
        "django_redis.cache.RedisCache, or set WSAUTH['REDIS']."
    )


def from_setting(value: Any) -> RedisSpec:
    """The spec of ``WSAUTH["REDIS"]``: a URL, or a dict with ``URL``, ``SENTINELS`` and
    ``SERVICE_NAME``, or ``CLUSTER``; each with optional ``OPTIONS`` (redis-py keyword
    arguments: password, ssl_*, socket_timeout...)."""
    where = "WSAUTH['REDIS']"
    if isinstance(value, str):
        return RedisSpec("url", url=value)
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(f"{where} must be a URL or a dict.")
    unknown = set(value) - {
        "URL",
        "SENTINELS",
        "SERVICE_NAME",
        "DB",
        "CLUSTER",
        "OPTIONS",
        "SENTINEL_OPTIONS",
        "KEY_PREFIX",
    }
    if unknown:
        raise ImproperlyConfigured(f"{where} has unknown keys {sorted(unknown)}.")
    options = dict(value.get("OPTIONS") or {})
    if value.get("CLUSTER"):
        return RedisSpec("cluster", url=str(value["CLUSTER"]), options=options)
    if value.get("SENTINELS") is not None:
        if not value.get("SERVICE_NAME"):
            raise ImproperlyConfigured(f"{where}: SENTINELS needs SERVICE_NAME (e.g. 'mymaster').")
        return RedisSpec(
            "sentinel",
            sentinels=_pairs(value["SENTINELS"], where),
            service=str(value["SERVICE_NAME"]),
            db=int(value.get("DB") or 0),
            options=options,
            sentinel_options=dict(value.get("SENTINEL_OPTIONS") or {}),
        )
    if value.get("URL"):
        return RedisSpec("url", url=str(value["URL"]), options=options)
    raise ImproperlyConfigured(f"{where} needs URL, SENTINELS with SERVICE_NAME, or CLUSTER.")


def prefixer(prefix: str) -> Callable[[str], str]:
    return (lambda key: f"{prefix}:{key}") if prefix else (lambda key: key)
