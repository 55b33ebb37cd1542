"""wsauth.admin: the allowed-origins admin (the one ``origin`` field, parsed and
normalised; enable/disable), the identities list, the user action and its registration.
(The Live connections page: tests/test_live_page.py.)"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from wsauth.admin import AllowedOriginForm, add_user_admin_action, disconnect_sockets
from wsauth.models import AllowedOrigin, OIDCIdentity

pytestmark = pytest.mark.django_db
URL = "/admin/wsauth/allowedorigin/"


def test_adding_an_origin_through_the_admin_normalises_it(admin_client):
    response = admin_client.post(
        f"{URL}add/", {"origin": "HTTPS://Chat.Example.TEST:443", "is_active": "on", "note": "chat"}
    )
    assert response.status_code == 302, response.content[:2000]
    origin = AllowedOrigin.objects.get()
    assert (origin.scheme, origin.host, origin.port, origin.include_subdomains) == (
        "https",
        "chat.example.test",
        443,
        False,
    )
    assert str(origin) == "https://chat.example.test"


def test_a_wildcard_origin(admin_client):
    admin_client.post(f"{URL}add/", {"origin": "https://*.example.test", "is_active": "on"})
    assert AllowedOrigin.objects.get().include_subdomains is True


@pytest.mark.parametrize(
    "value", ["chat.example.test", "https://x.test/path", "javascript:alert(1)"]
)
def test_a_bad_origin_is_an_error_on_the_form(admin_client, value):
    response = admin_client.post(f"{URL}add/", {"origin": value, "is_active": "on"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["origin"]
    assert not AllowedOrigin.objects.exists()


def test_the_change_form_shows_the_origin_as_one_string():
    origin = AllowedOrigin.from_string("http://localhost:8000")
    origin.save()
    assert AllowedOriginForm(instance=origin).initial["origin"] == "http://localhost:8000"


def test_enable_and_disable_actions(admin_client):
    for value in ("https://a.test", "https://b.test"):
        AllowedOrigin.from_string(value).save()
    pks = [str(pk) for pk in AllowedOrigin.objects.values_list("pk", flat=True)]
    admin_client.post(URL, {"action": "disable", "_selected_action": pks})
    assert not AllowedOrigin.objects.active().exists()
    admin_client.post(URL, {"action": "enable", "_selected_action": pks[:1]})
    assert [str(o) for o in AllowedOrigin.objects.active()] == ["https://a.test"]


def test_identities_are_listed_and_searchable(admin_client):
    user = get_user_model().objects.create(username="ident-user")
    OIDCIdentity.objects.create(user=user, issuer="https://i.test", subject="sub-42")
    response = admin_client.get("/admin/wsauth/oidcidentity/", {"q": "sub-42"})
    assert response.status_code == 200
    assert b"sub-42" in response.content


def test_the_user_action_reports_a_revocation_store_that_is_down(admin_client, settings):
    from wsauth import conf as wsauth_conf

    user = get_user_model().objects.create(username="target")
    settings.CACHES = {
        **settings.CACHES,
        "down": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        },
    }
    settings.WSAUTH = {**settings.WSAUTH, "REVOCATION_CACHE": "down"}
    wsauth_conf.reset()
    response = admin_client.post(
        "/admin/auth/user/",
        {"action": "disconnect_sockets", "_selected_action": [str(user.pk)]},
        follow=True,
    )
    sent = [str(m) for m in response.context["messages"]]
    assert any("could not disconnect target" in m for m in sent), sent


def test_the_action_is_added_once_to_a_user_admin_registered_on_any_site():
    site = admin.AdminSite(name="other")
    add_user_admin_action(site)  # no user admin there yet: nothing to do
    site.register(get_user_model(), UserAdmin)
    add_user_admin_action(site)
    add_user_admin_action(site)
    assert list(site._registry[get_user_model()].actions).count(disconnect_sockets) == 1
