"""wsauth.management.commands.wsauth_origins: ``add``, ``remove`` and ``list``, as a
deployment script runs them, and what each leaves in the table."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from wsauth.models import AllowedOrigin

pytestmark = pytest.mark.django_db


def run(*args: str) -> list[str]:
    out = StringIO()
    call_command("wsauth_origins", *args, stdout=out)
    return out.getvalue().splitlines()


def test_add_list_remove():
    assert run("add", "HTTPS://Chat.Example.test", "https://*.apps.test", "--note", "deploy") == [
        "added https://chat.example.test",
        "added https://*.apps.test",
    ]
    assert AllowedOrigin.objects.get(host="chat.example.test").note == "deploy"
    assert run("list") == ["https://*.apps.test", "https://chat.example.test"]  # by host
    assert run("remove", "https://chat.example.test:443") == ["removed https://chat.example.test"]
    assert run("list") == ["https://*.apps.test"]


def test_adding_again_re_enables_and_keeps_the_note():
    run("add", "https://a.test", "--note", "first")
    AllowedOrigin.objects.update(is_active=False)
    assert run("list") == []
    assert run("add", "https://a.test", "--note", "second") == ["allowed https://a.test"]
    row = AllowedOrigin.objects.get()
    assert row.is_active and row.note == "first"


def test_a_bad_origin_changes_nothing():
    with pytest.raises(CommandError, match="scheme must be http or https"):
        run("add", "https://ok.test", "ftp://bad.test")
    assert not AllowedOrigin.objects.exists()  # every value is parsed before any is added


def test_removing_what_is_not_there_is_an_error():
    with pytest.raises(CommandError, match=r"https://missing\.test is not an allowed origin"):
        run("remove", "https://missing.test")


def test_an_action_is_required():
    with pytest.raises(CommandError):
        run()
