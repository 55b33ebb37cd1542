"""wsauth.models: allowed origins as rows (parsing, normalising, uniqueness, the active
set), one OIDC identity per (issuer, subject), and the table-less live-connections model."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from wsauth.models import AllowedOrigin, LiveSocket, OIDCIdentity
from wsauth.origins import OriginError

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("value", "fields", "text"),
    [
        (
            "https://Chat.Example.TEST",
            ("https", "chat.example.test", 443, False),
            "https://chat.example.test",
        ),
        ("http://localhost:8000", ("http", "localhost", 8000, False), "http://localhost:8000"),
        ("https://*.example.test", ("https", "example.test", 443, True), "https://*.example.test"),
    ],
)
def test_from_string_normalises(value, fields, text):
    origin = AllowedOrigin.from_string(value, note="n")
    assert (origin.scheme, origin.host, origin.port, origin.include_subdomains) == fields
    assert origin.note == "n"
    origin.save()
    assert str(AllowedOrigin.objects.get(pk=origin.pk)) == text


@pytest.mark.parametrize(
    "value", ["chat.example.test", "ftp://x.test", "https://x.test/path", "null"]
)
def test_from_string_refuses_what_is_not_an_origin(value):
    with pytest.raises(OriginError):
        AllowedOrigin.from_string(value)


def test_clean_normalises_fields_typed_in_the_admin():
    origin = AllowedOrigin(scheme="https", host="CHAT.Example.test", port=443)
    origin.clean()
    assert (origin.scheme, origin.host, origin.port) == ("https", "chat.example.test", 443)


def test_clean_refuses_a_bad_host():
    with pytest.raises(ValidationError):
        AllowedOrigin(scheme="https", host="bad host", port=443).clean()


def test_the_same_origin_twice_is_refused():
    AllowedOrigin.from_string("https://a.test").save()
    with pytest.raises(IntegrityError), transaction.atomic():
        AllowedOrigin.from_string("https://a.test").save()
    AllowedOrigin.from_string("https://*.a.test").save()  # the wildcard is another row


def test_active_and_ordering():
    for value in ("https://b.test", "http://a.test", "https://a.test"):
        AllowedOrigin.from_string(value).save()
    AllowedOrigin.objects.filter(host="b.test").update(is_active=False)
    assert [str(o) for o in AllowedOrigin.objects.active()] == ["http://a.test", "https://a.test"]


def test_one_identity_per_issuer_and_subject():
    user = get_user_model().objects.create(username="ident")
    identity = OIDCIdentity.objects.create(user=user, issuer="https://i.test", subject="s")
    assert str(identity) == "s @ https://i.test"
    OIDCIdentity.objects.create(user=user, issuer="https://other.test", subject="s")
    with pytest.raises(IntegrityError), transaction.atomic():
        OIDCIdentity.objects.create(user=user, issuer="https://i.test", subject="s")
    user.delete()
    assert not OIDCIdentity.objects.exists()  # cascades with the user


def test_live_socket_has_no_table_and_its_permissions():
    assert LiveSocket._meta.managed is False
    assert LiveSocket._meta.db_table not in connection.introspection.table_names()
    codenames = {p[0] for p in LiveSocket._meta.permissions}
    assert codenames == {"disconnect_livesocket"}
    assert LiveSocket._meta.default_permissions == ("view",)
