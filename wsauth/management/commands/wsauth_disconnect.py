"""``manage.py wsauth_disconnect``: close users' sockets on every process, from a shell."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from wsauth.revoke import disconnect_subject, disconnect_user, disconnect_users


class Command(BaseCommand):
    help = (
        "Close every WebSocket of the given users (by username), OpenID subjects "
        "(--subject) or inactive users (--inactive) on every process, with close code "
        "4403, and refuse their credentials issued before now."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("usernames", nargs="*", metavar="USERNAME")
        parser.add_argument("--subject", action="append", default=[], help="an OIDC 'sub'")
        parser.add_argument("--issuer", help="the subjects' issuer (default: WSAUTH ISSUER)")
        parser.add_argument(
            "--inactive",
            action="store_true",
            help="every user with is_active False: run it after a bulk deactivation "
            "(QuerySet.update sends no signal, so nothing else closes their sockets)",
        )
        parser.add_argument("--reason", default="disconnected by an administrator")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["usernames"] and not options["subject"] and not options["inactive"]:
            raise CommandError("name at least one USERNAME, --subject or --inactive")
        model = get_user_model()
        users = []
        for username in options["usernames"]:
            try:
                users.append(model._default_manager.get_by_natural_key(username))
            except model.DoesNotExist as exc:
                raise CommandError(f"no user {username!r}") from exc
        for user in users:
            disconnect_user(user, reason=options["reason"])
            self.stdout.write(f"disconnected user {user.get_username()}")
        for subject in options["subject"]:
            disconnect_subject(subject, options["issuer"], reason=options["reason"])
            self.stdout.write(f"disconnected subject {subject}")
        if options["inactive"]:
            if not any(f.name == "is_active" for f in model._meta.get_fields()):
                raise CommandError(f"{model.__name__} has no is_active field")
            inactive = model._default_manager.filter(is_active=False).iterator(chunk_size=500)
            count = disconnect_users(inactive, reason=options["reason"])
            self.stdout.write(f"disconnected {count} inactive users")
