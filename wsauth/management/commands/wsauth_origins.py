"""``manage.py wsauth_origins add|remove|list``: the admin's origin list for scripts."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from wsauth.models import AllowedOrigin
from wsauth.origins import OriginError, parse_origin


class Command(BaseCommand):
    help = "Manage the origins allowed to open WebSockets (takes effect within seconds)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="allow origins (or re-enable them)")
        add.add_argument("origins", nargs="+", metavar="ORIGIN")
        add.add_argument("--note", default="")
        remove = sub.add_parser("remove", help="remove origins")
        remove.add_argument("origins", nargs="+", metavar="ORIGIN")
        sub.add_parser("list", help="list allowed origins, one a line")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "list":
            for row in AllowedOrigin.objects.active():
                self.stdout.write(str(row))
            return
        parsed = []
        for value in options["origins"]:
            try:
                parsed.append(parse_origin(value, allow_wildcard=True))
            except OriginError as exc:
                raise CommandError(str(exc)) from exc
        for origin in parsed:
            lookup = {
                "scheme": origin.scheme,
                "host": origin.host,
                "port": origin.port,
                "include_subdomains": origin.wildcard,
            }
            if action == "add":
                row, created = AllowedOrigin.objects.get_or_create(
                    **lookup, defaults={"note": options["note"]}
                )
                if not created and not row.is_active:
                    row.is_active = True
                    row.save(update_fields=["is_active", "updated"])
                self.stdout.write(f"{'added' if created else 'allowed'} {origin}")
            else:
                deleted, _ = AllowedOrigin.objects.filter(**lookup).delete()
                if not deleted:
                    raise CommandError(f"{origin} is not an allowed origin")
                self.stdout.write(f"removed {origin}")
