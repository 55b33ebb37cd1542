"""wsauth.users: verified claims to an active Django user through the configured
backend, the per-process cache and its bounds, and the display name."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from wsauth import conf as wsauth_conf
from wsauth import users
from wsauth.users import UserRefused, display_name, user_by_pk, user_for_claims

pytestmark = pytest.mark.django_db(transaction=True)
ISS = "https://issuer.users.test"


@pytest.fixture(autouse=True)
def fresh(settings):
    settings.WSAUTH = {**settings.WSAUTH, "ISSUER": ISS}
    wsauth_conf.reset()
    yield settings
    wsauth_conf.reset()


def claims(sub: str, **extra):
    return {"iss": ISS, "sub": sub, **extra}


@pytest.mark.parametrize(
    ("token_claims", "expected"),
    [
        ({"name": " Ann Lee ", "preferred_username": "ann"}, "Ann Lee"),
        ({"name": "   ", "preferred_username": "ann"}, "ann"),
        ({"name": 5, "preferred_username": "ann"}, "ann"),
        ({}, "Full Name"),
        (None, "Full Name"),
    ],
)
def test_display_name_order(token_claims, expected):
    user = get_user_model()(username="u1", first_name="Full", last_name="Name")
    assert display_name(user, token_claims) == expected


def test_display_name_falls_back_to_the_username():
    assert display_name(get_user_model()(username="plain"), None) == "plain"
    assert display_name(AnonymousUser(), {}) == ""


async def test_a_user_is_created_then_found_from_the_cache():
    first = await user_for_claims(claims("s-1"))
    assert first.is_active
    assert await user_for_claims(claims("s-1")) is first  # the same object: no query
    users.clear_cache()
    again = await user_for_claims(claims("s-1"))
    assert again is not first and again.pk == first.pk


async def test_the_cache_expires(settings):
    settings.WSAUTH = {**settings.WSAUTH, "USER_CACHE_TTL": 0}
    wsauth_conf.reset()
    first = await user_for_claims(claims("s-2"))
    await get_user_model().objects.filter(pk=first.pk).aupdate(is_active=False)
    with pytest.raises(UserRefused) as info:
        await user_for_claims(claims("s-2"))
    assert info.value.reason == "inactive_user"


async def test_no_user_and_creation_off(settings):
    settings.WSAUTH = {**settings.WSAUTH, "CREATE_USERS": False}
    wsauth_conf.reset()
    with pytest.raises(UserRefused) as info:
        await user_for_claims(claims("nobody"))
    assert info.value.reason == "unknown_user"


async def test_forget_user_drops_both_caches():
    user = await user_for_claims(claims("s-3"))
    await user_by_pk(user.pk)
    users.forget_user(user.pk)
    assert user.pk not in users._by_pk
    assert (ISS, "s-3") not in users._by_identity


async def test_user_by_pk():
    user = await user_for_claims(claims("s-4"))
    assert (await user_by_pk(user.pk)).pk == user.pk
    with pytest.raises(UserRefused, match="no longer exists"):
        await user_by_pk(10**9)
    await get_user_model().objects.filter(pk=user.pk).aupdate(is_active=False)
    users.forget_user(user.pk)
    with pytest.raises(UserRefused, match="disabled"):
        await user_by_pk(user.pk)


def test_a_full_cache_starts_over(monkeypatch):
    monkeypatch.setattr(users, "_MAX_ENTRIES", 3)
    cache: dict = {}
    for n in range(3):
        users._remember(cache, n, object(), 60)
    assert len(cache) == 3
    users._remember(cache, "new", object(), 60)
    assert list(cache) == ["new"]  # bounded: cleared, never grown past the bound


def test_forgetting_a_user_while_another_thread_fills_the_cache():
    """The post_save of a user created in database_sync_to_async forgets it on that
    thread while the event loop's thread adds entries (seen once in CI: "dictionary
    changed size during iteration" refused a handshake). An insertion during the walk
    is simulated by a user whose ``pk`` adds one, as the other thread can at any
    attribute read."""
    users.clear_cache()

    class Inserting:
        def __init__(self, n: int) -> None:
            self.n = n

        @property
        def pk(self) -> int:
            users._by_identity[("iss", f"new-{self.n}")] = (float("inf"), Inserting(-1))
            return self.n

    for n in range(5):
        users._by_identity[("iss", f"sub-{n}")] = (float("inf"), Inserting(n))
    users.forget_user(3)
    assert ("iss", "sub-3") not in users._by_identity
    assert {("iss", f"sub-{n}") for n in (0, 1, 2, 4)} <= set(users._by_identity)
    users.clear_cache()
