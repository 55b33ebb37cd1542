"""A local OpenID issuer: discovery and JWKS over real HTTP on 127.0.0.1, with a fetch
counter, and tokens minted with its keys (RSA, EC P-256, Ed25519).

Not ``tests/issuer.py``: this one publishes every key with its ``alg`` at once, encodes
the JWKS document once (no per-fetch work in the measuring process) and pads tokens to a
size. ``new_key`` and ``public_jwk`` match the tests' but are not imported from there,
for the reason given in servers.py."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

AUDIENCE = "wsauth-bench"
ALG_FOR = {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}


def new_key(kind: str) -> Any:
    if kind == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "EC":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "OKP":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(kind)


def public_jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    jwk.update({"use": "sig", "kid": kid, "alg": alg})
    return jwk


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class Issuer:
    """Serves ``{issuer}/.well-known/openid-configuration`` and ``{issuer}/jwks``."""

    def __init__(self, kinds: tuple[str, ...] = ("RSA", "EC", "OKP")) -> None:
        self.keys: dict[str, tuple[Any, str]] = {}
        for kind in kinds:
            self.keys[f"{kind.lower()}-{uuid.uuid4().hex[:8]}"] = (new_key(kind), ALG_FOR[kind])
        self.jwks_fetches = 0
        self.discovery_fetches = 0
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.issuer = self.url + "/realms/bench"
        self.jwks_url = self.issuer + "/jwks"
        self._document = json.dumps(
            {"keys": [public_jwk(k, kid, alg) for kid, (k, alg) in self.keys.items()]}
        ).encode()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> Issuer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset_counts(self) -> None:
        with self._lock:
            self.jwks_fetches = self.discovery_fetches = 0

    def kid(self, alg: str) -> str:
        return next(kid for kid, (_, a) in self.keys.items() if a == alg)

    def jwks(self) -> dict[str, Any]:
        return dict(json.loads(self._document))

    def token(
        self,
        alg: str = "RS256",
        size: int = 0,
        kid: str | None = None,
        lifetime: int = 600,
        **claims: Any,
    ) -> str:
        """A signed access token; ``size`` pads the claims so the token is about that long."""
        real_kid = self.kid(alg)
        private = self.keys[real_kid][0]
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "bench-user",
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
            "name": "Bench User",
            "preferred_username": "bench",
            "scope": "openid profile email",
            **claims,
        }
        header = {"typ": "at+jwt", "kid": kid or real_kid}
        token = jwt.encode(body, private, algorithm=alg, headers=header)
        if size and len(token) < size:
            # base64 grows 4/3: pad the claims with a roles list of the missing length
            missing = (size - len(token)) * 3 // 4 - 12
            body["roles"] = ["r" * 30] * max(0, missing // 33)
            token = jwt.encode(body, private, algorithm=alg, headers=header)
        return token

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/realms/bench/.well-known/openid-configuration":
                    with issuer._lock:
                        issuer.discovery_fetches += 1
                    data = json.dumps(
                        {
                            "issuer": issuer.issuer,
                            "jwks_uri": issuer.jwks_url,
                            "authorization_endpoint": issuer.issuer + "/auth",
                            "token_endpoint": issuer.issuer + "/token",
                        }
                    ).encode()
                elif path == "/realms/bench/jwks":
                    with issuer._lock:
                        issuer.jwks_fetches += 1
                    data = issuer._document
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
