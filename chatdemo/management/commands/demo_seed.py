"""``manage.py demo_seed``: demo users, the demo OIDC client and the allowed origins."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from wsauth.models import OIDCIdentity

USERS = [
    ("alice", "alicealice", "Alice", "Liddell"),
    ("bob", "bobbob", "Bob", "Builder"),
]

ADMIN = ("admin", "adminadmin")


class Command(BaseCommand):
    help = "Seed the demo: users alice and bob, an administrator, the demo client, origins."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--base-url",
            action="append",
            default=[],
            help="another URL the demo is served at (repeatable); DEMO_BASE_URL is always seeded",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        base_urls = [settings.DEMO_BASE_URL, *options["base_url"]]
        origins = []
        for url in base_urls:
            parts = urlsplit(url)
            origins.append(f"{parts.scheme}://{parts.netloc}")
        call_command("wsauth_origins", "add", *origins, note="demo", stdout=self.stdout)
        if not settings.DEMO_EMBEDDED_PROVIDER:
            self.stdout.write("external provider: no local users or client seeded")
            return
        user_model = get_user_model()
        for username, password, first, last in USERS:
            user, _ = user_model.objects.get_or_create(
                username=username,
                defaults={"first_name": first, "last_name": last, "email": f"{username}@demo.test"},
            )
            user.set_password(password)
            user.save()
            # The provider's 'sub' is the user's pk: link it, so the browser login and
            # WebSocket tokens map to this same user (one person, one user).
            OIDCIdentity.objects.get_or_create(
                issuer=settings.OIDC_ISSUER, subject=str(user.pk), defaults={"user": user}
            )
        # An administrator for /admin/ (allowed origins; disconnecting users' sockets).
        admin, _ = user_model.objects.get_or_create(
            username=ADMIN[0], defaults={"is_staff": True, "is_superuser": True}
        )
        admin.is_staff = admin.is_superuser = True
        admin.set_password(ADMIN[1])
        admin.save()
        from oauth2_provider.models import get_application_model

        application_model = get_application_model()
        redirect_uris = " ".join(u.rstrip("/") + "/oidc/callback/" for u in base_urls)
        app, _ = application_model.objects.update_or_create(
            client_id=settings.OIDC_RP_CLIENT_ID,
            defaults={
                "name": "wsauth chat demo",
                "client_type": application_model.CLIENT_CONFIDENTIAL,
                "authorization_grant_type": application_model.GRANT_AUTHORIZATION_CODE,
                "redirect_uris": redirect_uris,
                "algorithm": application_model.RS256_ALGORITHM,
                "skip_authorization": True,
            },
        )
        app.client_secret = settings.OIDC_RP_CLIENT_SECRET
        app.save()
        self.stdout.write(
            f"seeded users {', '.join(u[0] for u in USERS)}, administrator {ADMIN[0]} "
            f"and client {app.client_id}"
        )
