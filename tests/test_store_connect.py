"""wsauth.store.connect: the store's connection read from a project's CACHES entry or
WSAUTH["REDIS"] (Django's RedisCache, django-redis DefaultClient/SentinelClient, URL,
Sentinel, Cluster), every unusable form refused with the fix, and real clients made
from the spec."""

from __future__ import annotations

import asyncio

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured

from tests.daphne import REDIS_URL
from wsauth.store.connect import DEFAULT_OPTIONS, RedisSpec, from_cache, from_setting, prefixer

DJANGO = "django.core.cache.backends.redis.RedisCache"
DJANGO_REDIS = "django_redis.cache.RedisCache"


def test_locmem_is_local_memory():
    assert (
        from_cache("default", {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}) is None
    )


def test_djangos_redis_cache_uses_the_first_server_and_its_options():
    spec = from_cache(
        "c",
        {
            "BACKEND": DJANGO,
            "LOCATION": "redis://primary:6379/2, redis://replica:6379/2",
            "OPTIONS": {
                "socket_timeout": 1,
                "serializer": object,
                "pool_class": object,
                "parser_class": object,
            },
        },
    )
    assert spec == RedisSpec("url", url="redis://primary:6379/2", options={"socket_timeout": 1})
    listed = from_cache("c", {"BACKEND": DJANGO, "LOCATION": ["redis://a:1/0", "redis://b:1/0"]})
    assert listed.url == "redis://a:1/0"


@pytest.mark.parametrize("location", [None, "", " , ", [], 5])
def test_a_cache_without_location(location):
    with pytest.raises(ImproperlyConfigured, match="has no LOCATION"):
        from_cache("c", {"BACKEND": DJANGO, "LOCATION": location})


def test_django_redis_default_client_options():
    spec = from_cache(
        "c",
        {
            "BACKEND": DJANGO_REDIS,
            "LOCATION": "redis://h:6380/1",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.HerdClient",
                "PASSWORD": "pw",
                "SOCKET_TIMEOUT": 2,
                "SOCKET_CONNECT_TIMEOUT": None,
                "CONNECTION_POOL_KWARGS": {"max_connections": 5},
            },
        },
    )
    assert spec.kind == "url" and spec.url == "redis://h:6380/1"
    assert dict(spec.options) == {"max_connections": 5, "password": "pw", "socket_timeout": 2}
    assert "pw" not in spec.where()


def test_django_redis_sentinel_client():
    spec = from_cache(
        "c",
        {
            "BACKEND": DJANGO_REDIS,
            "LOCATION": "redis://:s%40cret@mymaster/3",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.SentinelClient",
                "SENTINELS": [("s1", "26379"), ("s2", 26380)],
                "SENTINEL_KWARGS": {"password": "sentinel-pw"},
            },
        },
    )
    assert (spec.kind, spec.service, spec.db, spec.sentinels) == (
        "sentinel",
        "mymaster",
        3,
        (("s1", 26379), ("s2", 26380)),
    )
    assert spec.options["password"] == "s@cret"
    assert dict(spec.sentinel_options) == {"password": "sentinel-pw"}
    assert spec.where() == "Sentinel 'mymaster' via s1:26379, s2:26380"


@pytest.mark.parametrize(
    ("location", "sentinels", "match"),
    [
        ("redis:///0", [("s", 1)], "redis://<service name>/<db>"),
        ("redis://m/0", [], "SENTINELS is empty"),
        ("redis://m/0", None, "list of \\(host, port\\) pairs"),
        ("redis://m/0", [("s", "port")], "list of \\(host, port\\) pairs"),
    ],
)
def test_bad_django_redis_sentinel_settings(location, sentinels, match):
    options = {"CLIENT_CLASS": "django_redis.client.SentinelClient", "SENTINELS": sentinels}
    with pytest.raises(ImproperlyConfigured, match=match):
        from_cache("c", {"BACKEND": DJANGO_REDIS, "LOCATION": location, "OPTIONS": options})


def test_django_redis_sharding_is_refused_with_the_fix():
    options = {"CLIENT_CLASS": "django_redis.client.ShardClient"}
    with pytest.raises(ImproperlyConfigured, match=r"ShardClient.*DefaultClient or SentinelClient"):
        from_cache("c", {"BACKEND": DJANGO_REDIS, "LOCATION": "redis://a/0", "OPTIONS": options})


@pytest.mark.parametrize(
    "backend",
    [
        "django.core.cache.backends.db.DatabaseCache",
        "django.core.cache.backends.memcached.PyMemcacheCache",
        "",
    ],
)
def test_unshareable_caches_are_refused_with_the_fix(backend):
    with pytest.raises(ImproperlyConfigured, match=r"TICKET_CACHE.*WSAUTH\[.REDIS.\]"):
        from_cache("c", {"BACKEND": backend, "LOCATION": "x"})


def test_from_setting_forms():
    assert from_setting("redis://h/1") == RedisSpec("url", url="redis://h/1")
    assert from_setting(
        {"URL": "rediss://h/0", "OPTIONS": {"ssl_cert_reqs": "required"}}
    ).options == {"ssl_cert_reqs": "required"}
    cluster = from_setting({"CLUSTER": "redis://node-1:7000", "KEY_PREFIX": "p"})
    assert (cluster.kind, cluster.where()) == ("cluster", "Cluster node-1:7000")
    sentinel = from_setting(
        {"SENTINELS": [["a", 26379]], "SERVICE_NAME": "svc", "DB": 2, "SENTINEL_OPTIONS": {"x": 1}}
    )
    assert (sentinel.kind, sentinel.db, sentinel.sentinels, dict(sentinel.sentinel_options)) == (
        "sentinel",
        2,
        (("a", 26379),),
        {"x": 1},
    )


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (5, "must be a URL or a dict"),
        ({"URL": "redis://h", "HOST": "h"}, "unknown keys \\['HOST'\\]"),
        ({"SENTINELS": [("a", 1)]}, "SENTINELS needs SERVICE_NAME"),
        ({}, "needs URL, SENTINELS with SERVICE_NAME, or CLUSTER"),
    ],
)
def test_bad_redis_settings(value, match):
    with pytest.raises(ImproperlyConfigured, match=match):
        from_setting(value)


def test_where_never_shows_a_password():
    spec = RedisSpec("url", url="redis://user:hunter2@db.internal:6390/0")
    assert spec.where() == "db.internal:6390"
    assert "hunter2" not in spec.where()
    assert RedisSpec("url", url="unix:///run/redis.sock").where() == "/run/redis.sock:6379"


def test_prefixer():
    assert prefixer("")("k") == "k"
    assert prefixer("app")("k") == "app:k"


def test_clients_from_a_url_reach_redis_with_the_default_timeouts():
    spec = from_setting(REDIS_URL)
    client = spec.sync_client()
    try:
        assert client.ping()
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == DEFAULT_OPTIONS["socket_timeout"]
    finally:
        client.close()
    overridden = spec.sync_client(socket_timeout=1)
    assert overridden.connection_pool.connection_kwargs["socket_timeout"] == 1
    overridden.close()

    async def ping() -> bool:
        client = spec.async_client()
        try:
            return await client.ping()
        finally:
            await client.aclose()

    assert asyncio.run(ping())


def test_sentinel_clients_are_made_for_the_service():
    spec = from_setting({"SENTINELS": [("127.0.0.1", 1)], "SERVICE_NAME": "svc", "DB": 4})
    client = spec.sync_client()
    assert isinstance(client.connection_pool, redis.sentinel.SentinelConnectionPool)
    assert client.connection_pool.service_name == "svc"
    client.close()

    async def make() -> str:
        aclient = spec.async_client()
        try:
            return aclient.connection_pool.service_name
        finally:
            await aclient.aclose()

    assert asyncio.run(make()) == "svc"
