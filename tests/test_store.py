"""wsauth.store (the package): one store per role from the settings, shared between
roles on one cache alias, WSAUTH["REDIS"] serving every role, the cache's own key
function, metrics on Redis stores only, and the errors that name the fix."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from wsauth import conf as wsauth_conf
from wsauth import store
from wsauth.store.local import LocalStore
from wsauth.store.redisstore import RedisStore


@pytest.fixture(autouse=True)
def fresh():
    wsauth_conf.reset()
    yield
    wsauth_conf.reset()


def configure(settings, caches=None, **wsauth):
    if caches is not None:
        settings.CACHES = {**settings.CACHES, **caches}
    settings.WSAUTH = {**settings.WSAUTH, **wsauth}
    wsauth_conf.reset()


def test_roles_on_one_alias_share_one_store():
    assert isinstance(store.get("tickets"), LocalStore)
    assert store.get("tickets") is store.get("revocation") is store.get("limits")
    assert store.same("tickets", "limits")
    assert store.describe(store.get("tickets")) == "local memory"


def test_roles_on_different_aliases(settings, redis_url):
    redis_cache = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": redis_url,
        "KEY_PREFIX": "app",
    }
    configure(settings, {"shared": redis_cache}, REVOCATION_CACHE="shared")
    assert isinstance(store.get("tickets"), LocalStore)
    revocation = store.get("revocation")
    assert isinstance(revocation, RedisStore)
    assert not store.same("tickets", "revocation")
    assert store.by_alias("shared") is revocation
    assert revocation.make_key("k") == "app:1:k"  # the cache's own key function
    assert store.describe(revocation).startswith("127.0.0.1:6379")


def test_wsauth_redis_serves_every_role_and_alias(settings, redis_url):
    configure(settings, REDIS={"URL": redis_url, "KEY_PREFIX": "wsx"})
    one = store.get("tickets")
    assert isinstance(one, RedisStore)
    assert one is store.get("revocation") is store.get("limits") is store.by_alias("anything")
    assert one.make_key("k") == "wsx:k"
    assert store.spec_of("REDIS").url == redis_url


def test_settings_changes_drop_the_stores(settings):
    first = store.get("tickets")
    configure(settings, TICKET_TTL=5)
    assert store.get("tickets") is not first


def test_an_alias_missing_from_caches_names_it(settings):
    configure(settings, TICKET_CACHE="nope")
    with pytest.raises(ImproperlyConfigured, match="names the cache 'nope', not in CACHES"):
        store.get("tickets")


def test_a_cache_that_cannot_be_shared_is_refused(settings):
    configure(
        settings,
        {"db": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "t"}},
        TICKET_CACHE="db",
    )
    with pytest.raises(ImproperlyConfigured, match="DatabaseCache"):
        store.get("tickets")


def test_redis_stores_are_counted_when_metrics_are_on(settings, redis_url):
    pytest.importorskip("prometheus_client")
    configure(settings, REDIS=redis_url, METRICS=True)
    instrumented = store.get("tickets")
    # metrics.instrument wraps the instance's operations, not the class's.
    assert "getdel" in vars(instrumented)
    configure(settings, REDIS=None, METRICS=True)
    assert "getdel" not in vars(store.get("tickets"))  # local memory: nothing to count
