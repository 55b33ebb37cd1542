"""The admin's Live connections page in process: pages, the user filter, permissions,
and what happens when the store is down. (In Chromium, across two processes:
tests/test_browser.py.)"""

from __future__ import annotations

import re
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from wsauth import store
from wsauth.admission.places import all_sockets_sync, describe, places_key

pytestmark = pytest.mark.django_db
URL = "/admin/wsauth/livesocket/"


def place(user: Any, path: str = "/ws/chat/lobby/", method: str = "ticket") -> str:
    limits = store.get("limits")
    member = describe(user.pk, method, "https://chat.example.com", path, 2_000_000_000.0)
    request = store.Place(limits.make_key(places_key(user.pk)), member, 30, None)
    async_to_sync(limits.admit)(None, request, ())
    return member


@pytest.fixture
def people() -> list[Any]:
    model = get_user_model()
    users = [model.objects.create_user(f"user{i}", password="pw") for i in range(3)]
    for count, user in zip((40, 15, 5), users, strict=True):
        for _ in range(count):
            place(user)
    yield users
    store.get("limits")._places.clear()  # type: ignore[attr-defined]


@pytest.fixture
def admin_client() -> Client:
    model = get_user_model()
    model.objects.create_superuser("root", password="rootroot")
    client = Client()
    client.login(username="root", password="rootroot")
    return client


def rows(html: str) -> list[str]:
    return re.findall(r'data-user="([^"]+)"', html)


def test_pages_of_fifty_newest_first(people, admin_client) -> None:
    first = admin_client.get(URL)
    assert first.status_code == 200
    html = first.content.decode()
    assert len(rows(html)) == 50 and 'id="total-sockets">60<' in html
    assert 'id="total-users">3<' in html and 'id="total-processes">1<' in html
    assert "page 1 of 2 (60 sockets)" in html
    second = admin_client.get(URL, {"p": 2}).content.decode()
    assert len(rows(second)) == 10
    everything = all_sockets_sync()
    newest = max(everything, key=lambda s: (s["since"], s["socket"]))
    assert f'data-socket="{newest["id"]}"' in html  # newest first


def test_filter_by_user_keeps_its_query_in_the_pages(people, admin_client) -> None:
    html = admin_client.get(URL, {"user": "user1"}).content.decode()
    assert set(rows(html)) == {"user1"} and len(rows(html)) == 15
    assert 'id="live-pages"' not in html
    html = admin_client.get(URL, {"user": "user"}).content.decode()
    assert 'href="?user=user&amp;p=2"' in html
    html = admin_client.get(URL, {"user": "nobody"}).content.decode()
    assert rows(html) == [] and "No open sockets for “nobody”" in html


def test_viewers_without_the_disconnect_permission_see_no_buttons(people) -> None:
    model = get_user_model()
    viewer = model.objects.create_user("viewer", password="pw", is_staff=True)
    client = Client()
    client.login(username="viewer", password="pw")
    assert client.get(URL).status_code == 403  # not even the view permission yet
    viewer.user_permissions.add(Permission.objects.get(codename="view_livesocket"))
    html = client.get(URL).content.decode()
    assert len(rows(html)) == 50 and "disconnect-socket" not in html
    target = people[0]
    answer = client.post(URL + "disconnect/", {"user": target.pk, "socket": "x/1"})
    assert answer.status_code == 403


def test_disconnect_a_socket_and_a_user(people, admin_client, monkeypatch) -> None:
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr("wsauth.admin.disconnect_socket", lambda *a, **k: sent.append(a))
    monkeypatch.setattr("wsauth.admin.disconnect_user", lambda *a, **k: sent.append(a))
    target = people[2]
    socket = next(s["id"] for s in all_sockets_sync() if s["user"] == target.pk)
    answer = admin_client.post(
        URL + "disconnect/", {"user": target.pk, "socket": socket, "query": "user2"}, follow=True
    )
    assert answer.redirect_chain[-1][0] == URL + "?user=user2"
    assert f"Disconnected socket {socket} of user2." in answer.content.decode()
    answer = admin_client.post(URL + "disconnect/", {"user": target.pk}, follow=True)
    assert "Disconnected every socket of user2 (every process)." in answer.content.decode()
    assert sent == [(socket, target.pk), (target,)]
    assert admin_client.get(URL + "disconnect/").status_code == 405  # POST only (CSRF)


def test_the_real_disconnect_path_runs_from_the_page(people, admin_client) -> None:
    target = people[1]
    socket = next(s["id"] for s in all_sockets_sync() if s["user"] == target.pk)
    answer = admin_client.post(
        URL + "disconnect/", {"user": target.pk, "socket": socket}, follow=True
    )  # through revoke.disconnect_socket and the channel layer
    assert f"Disconnected socket {socket} of user1." in answer.content.decode()
    assert "Could not" not in answer.content.decode()


def test_a_store_that_is_down_is_said_not_hidden(admin_client, settings) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",  # nothing listens there
        }
    }
    html = admin_client.get(URL).content.decode()
    assert 'id="live-error"' in html and "cannot be read" in html
    assert 'id="total-sockets">0<' in html


def test_the_admin_index_lists_the_page(admin_client) -> None:
    html = admin_client.get("/admin/").content.decode()
    assert URL in html and "Live connections" in html
