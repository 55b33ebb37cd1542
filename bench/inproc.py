"""wsauth inside the benchmark process: Django settings pointing at the local issuer."""

from __future__ import annotations

from typing import Any

from .context import ALGORITHMS
from .issuer import AUDIENCE, Issuer


def setup(issuer: Issuer, **wsauth: Any) -> Any:
    """Configure Django once (further calls replace WSAUTH); return wsauth's Conf."""
    import django
    from django.conf import settings

    values = {
        "ISSUER": issuer.issuer,
        "JWKS_URL": issuer.jwks_url,
        "AUDIENCE": AUDIENCE,
        "ALGORITHMS": ALGORITHMS,
        **wsauth,
    }
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
            DATABASES={},
            CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
            USE_TZ=True,
            WSAUTH=values,
        )
        django.setup()
    else:
        settings.WSAUTH = values
    from wsauth import conf

    conf.reset()
    return conf.get_conf()
