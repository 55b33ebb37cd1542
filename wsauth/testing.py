"""Helpers for testing consumers behind wsauth, in a few lines and without HTTP.

    from wsauth.testing import TestIssuer

    @pytest.mark.django_db(transaction=True)
    async def test_chat():
        issuer = TestIssuer()
        with issuer.activate():
            ws = await issuer.connect(application, "/ws/chat/lobby/", name="Ann")
            await ws.send_to(text_data='{"message": "hi"}')
            assert (await ws.receive_json_from())["user"] == "Ann"
            await ws.disconnect()

``activate()`` points ``WSAUTH`` at the test issuer and installs its public keys in the key
cache, so tokens it mints verify exactly as production tokens do, through the real
middleware. Everything here refuses to run outside a test environment.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jwt
from channels.testing import WebsocketCommunicator
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core import mail
from django.test import override_settings
from jwt.algorithms import RSAAlgorithm

from . import conf as wsauth_conf
from .jwks import get_jwks_cache


def _require_test_environment() -> None:
    # Django's test runner and pytest-django call setup_test_environment, which creates
    # mail.outbox; a running server never does.
    if not hasattr(mail, "outbox"):
        raise RuntimeError(
            "wsauth.testing mints trusted tokens and works only in tests "
            "(django.test.utils.setup_test_environment() has not run)"
        )


class TestIssuer:
    """An in-memory OpenID issuer: an RSA key, a kid, and tokens signed with them."""

    __test__ = False  # not a pytest test class

    def __init__(
        self, issuer: str = "https://issuer.wsauth.test", audience: str = "wsauth-test"
    ) -> None:
        _require_test_environment()
        self.issuer = issuer
        self.audience = audience
        self.kid = uuid.uuid4().hex[:12]
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        jwk = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def token(self, sub: str = "test-user", lifetime: int = 300, **claims: Any) -> str:
        """A signed access token; extra keyword arguments become claims."""
        _require_test_environment()
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
            **claims,
        }
        return jwt.encode(
            payload, self._key, algorithm="RS256", headers={"kid": self.kid, "typ": "at+jwt"}
        )

    @contextmanager
    def activate(self, **wsauth: Any) -> Iterator[TestIssuer]:
        """Point WSAUTH at this issuer (plus any overrides) and install its keys."""
        _require_test_environment()
        from django.conf import settings

        current = getattr(settings, "WSAUTH", {}) or {}
        with override_settings(
            WSAUTH={
                **current,
                "ISSUER": self.issuer,
                "AUDIENCE": self.audience,
                "JWKS_URL": None,
                **wsauth,
            }
        ):
            get_jwks_cache().install(self.jwks())
            try:
                yield self
            finally:
                wsauth_conf.reset()

    def communicator(
        self,
        application: Any,
        path: str,
        *,
        token: str | None = None,
        protocols: tuple[str, ...] = ("chat",),
        origin: str | None = None,
        **claims: Any,
    ) -> WebsocketCommunicator:
        """A communicator offering ``protocols`` and this issuer's token as subprotocols."""
        token = token or self.token(**claims)
        headers = [(b"origin", origin.encode())] if origin else None
        return WebsocketCommunicator(
            application,
            path,
            headers=headers,
            subprotocols=[*protocols, wsauth_conf.get_conf().subprotocol_prefix + token],
        )

    async def connect(self, application: Any, path: str, **kwargs: Any) -> WebsocketCommunicator:
        """Open an authenticated socket, failing loudly if the handshake is refused."""
        communicator = self.communicator(application, path, **kwargs)
        connected, detail = await communicator.connect(timeout=5)
        if not connected:
            raise AssertionError(f"handshake refused (close code {detail}); see the wsauth log")
        return communicator
