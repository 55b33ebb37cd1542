"""Claims to users: one person (iss, sub) is one user, however they came in."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from wsauth import users
from wsauth.backends import OIDCBackend

pytestmark = pytest.mark.django_db(transaction=True)


async def test_same_subject_same_user(issuer, wsauth_settings):
    claims = issuer.claims(sub="s-1", email=None)
    first = await users.user_for_claims(claims)
    users.clear_cache()
    second = await users.user_for_claims(issuer.claims(sub="s-1", name="Renamed"))
    assert first.pk == second.pk
    assert second.first_name == "Renamed"


async def test_same_sub_other_issuer_is_another_user(issuer, wsauth_settings):
    a = await users.user_for_claims(issuer.claims(sub="s-2"))
    b = await users.user_for_claims(issuer.claims(sub="s-2", iss="https://other.example"))
    assert a.pk != b.pk


async def test_no_email_match_across_subjects(issuer, wsauth_settings):
    a = await users.user_for_claims(issuer.claims(sub="s-3", email="x@example.test"))
    b = await users.user_for_claims(issuer.claims(sub="s-4", email="x@example.test"))
    assert a.pk != b.pk


async def test_username_prefers_preferred_username(issuer, wsauth_settings):
    a = await users.user_for_claims(issuer.claims(sub="s-5", preferred_username="dora"))
    b = await users.user_for_claims(issuer.claims(sub="s-6", preferred_username="dora"))
    assert a.username == "dora"
    assert b.username.startswith("oidc-")


async def test_disabled_user_is_refused(issuer, wsauth_settings):
    user = await users.user_for_claims(issuer.claims(sub="s-7"))
    user.is_active = False
    await user.asave()  # post_save drops the cached user
    with pytest.raises(users.UserRefused) as info:
        await users.user_for_claims(issuer.claims(sub="s-7"))
    assert info.value.reason == "inactive_user"


async def test_no_user_creation_when_disabled(issuer, wsauth_settings):
    wsauth_settings.OIDC_CREATE_USER = False
    with pytest.raises(users.UserRefused):
        await users.user_for_claims(issuer.claims(sub="s-8"))


def test_backend_works_for_browser_login_claims(issuer, wsauth_settings):
    # mozilla-django-oidc passes userinfo claims (no 'iss'): the configured issuer is used.
    backend = OIDCBackend()
    user = backend.user_for_claims({"sub": "s-9", "name": "Eve"}, create=True)
    assert backend.filter_users_by_claims({"sub": "s-9"}).get() == user
    assert get_user_model().objects.filter(oidc_identities__issuer=issuer.issuer).count() == 1


def test_display_name_order(issuer, wsauth_settings):
    user = get_user_model()(username="frank", first_name="Frank", last_name="Zappa")
    assert users.display_name(user, {"name": "N", "preferred_username": "p"}) == "N"
    assert users.display_name(user, {"preferred_username": "p"}) == "p"
    assert users.display_name(user, None) == "Frank Zappa"
    assert users.display_name(get_user_model()(username="g"), {}) == "g"
