from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register


@register("chatdemo")
def embedded_provider_only_in_debug(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    if getattr(settings, "DEMO_EMBEDDED_PROVIDER", False) and not settings.DEBUG:
        return [
            Error(
                "The embedded development OpenID provider is on while DEBUG is off.",
                hint="Set OIDC_ISSUER (and OIDC_CLIENT_ID, OIDC_CLIENT_SECRET) to a real "
                "provider such as Keycloak, or run with DJANGO_DEBUG=1 for development.",
                id="chatdemo.E001",
            )
        ]
    return []
