"""A real OpenID issuer for tests: discovery and JWKS over HTTP, keys made in the test.

Knobs let a test take the issuer down, slow it, serve garbage, rotate keys, and count
fetches, so the key cache is tested against real HTTP.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from .leaks import ISSUED

AUDIENCE = "wsauth-tests"


def new_key(kind: str = "RSA") -> Any:
    if kind == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "EC":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "OKP":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(kind)


def public_jwk(key: Any, kid: str | None, alg: str | None = None) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    jwk["use"] = "sig"
    if kid is not None:
        jwk["kid"] = kid
    if alg:
        jwk["alg"] = alg
    return jwk


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout tests) is expected, not an error


_ALG_FOR = {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}


class Issuer:
    def __init__(self) -> None:
        self.keys: dict[str, tuple[Any, str]] = {}  # kid -> (private key, alg)
        self.published: list[str] = []
        self.extra_jwks: list[dict[str, Any]] = []
        self.jwks_fetches = 0
        self.discovery_fetches = 0
        self.down = False
        self.delay = 0.0
        self.malformed: str | None = None  # "discovery" | "jwks"
        self.logins: dict[str, dict[str, Any]] = {}  # authorization code -> the login
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.issuer = self.url + "/realms/test"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Issuer:
        self._thread.start()
        self.add_key()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- keys and tokens ----------------------------------------------------------------------

    def add_key(self, kind: str = "RSA", kid: str | None = None, publish: bool = True) -> str:
        kid = kid or f"{kind.lower()}-{uuid.uuid4().hex[:8]}"
        self.keys[kid] = (new_key(kind), _ALG_FOR[kind])
        if publish:
            self.published.append(kid)
        return kid

    def rotate(self, kind: str = "RSA") -> str:
        """Publish a new key and retire every old one."""
        kid = self.add_key(kind, publish=False)
        self.published = [kid]
        return kid

    @property
    def default_kid(self) -> str:
        return self.published[0]

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": "user-" + uuid.uuid4().hex[:8],
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "name": "Alice Liddell",
            "preferred_username": "alice",
            "email": "alice@example.test",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        kid: str | None = None,
        headers: dict[str, Any] | None = None,
        alg: str | None = None,
        key: Any = None,
        include_kid: bool = True,
        **claims: Any,
    ) -> str:
        kid = kid or self.default_kid
        private, default_alg = self.keys[kid] if kid in self.keys else (None, "RS256")
        header = {"typ": "at+jwt", **(headers or {})}
        if include_kid:
            header["kid"] = kid
        token = jwt.encode(
            self.claims(**claims),
            key if key is not None else private,
            algorithm=alg or default_alg,
            headers=header,
        )
        ISSUED.add(token)  # tests/conftest.py: no log of the session may hold it
        return token

    def authorize(self, client_id: str, nonce: str, **claims: Any) -> str:
        """A browser login at the provider: the authorization code its redirect carries.
        The token endpoint trades it for an ID token (with ``nonce``, and ``sid`` when
        given) and an access token for the same ``sub``."""
        code = uuid.uuid4().hex
        self.logins[code] = {"client_id": client_id, "nonce": nonce, **self.claims(**claims)}
        return code

    def _token_response(self, code: str) -> dict[str, Any] | None:
        login = self.logins.pop(code, None)
        if login is None:
            return None
        client_id, nonce = login.pop("client_id"), login.pop("nonce")
        now = int(time.time())
        id_claims = {k: login[k] for k in ("iss", "sub", "sid", "name", "email") if k in login} | {
            "aud": client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            "auth_time": now,
        }
        kid = self.default_kid
        id_token = jwt.encode(
            id_claims, self.keys[kid][0], algorithm="RS256", headers={"kid": kid, "typ": "JWT"}
        )
        access = self.token(**{k: v for k, v in login.items() if k not in ("iat", "nbf", "exp")})
        return {"access_token": access, "id_token": id_token, "token_type": "Bearer"}

    def jwks(self) -> dict[str, Any]:
        keys = [public_jwk(self.keys[kid][0], kid) for kid in self.published]
        return {"keys": keys + self.extra_jwks}

    # -- HTTP ---------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if issuer.delay:
                    time.sleep(issuer.delay)
                if issuer.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                path = self.path.split("?")[0]
                if path == "/realms/test/.well-known/openid-configuration":
                    with issuer._lock:
                        issuer.discovery_fetches += 1
                    body: Any = {
                        "issuer": issuer.issuer,
                        "jwks_uri": issuer.url + "/realms/test/jwks",
                        "authorization_endpoint": issuer.url + "/realms/test/auth",
                        "token_endpoint": issuer.url + "/realms/test/token",
                        "userinfo_endpoint": issuer.url + "/realms/test/userinfo",
                    }
                    if issuer.malformed == "discovery":
                        body = ["not", "an", "object"]
                elif path == "/realms/test/userinfo":
                    bearer = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    try:
                        claims = jwt.decode(bearer, options={"verify_signature": False})
                    except jwt.InvalidTokenError:
                        self.send_response(401)
                        self.end_headers()
                        return
                    keep = ("sub", "name", "preferred_username", "email")
                    body = {k: claims[k] for k in keep if k in claims}
                elif path == "/realms/test/jwks":
                    with issuer._lock:
                        issuer.jwks_fetches += 1
                    body = issuer.jwks()
                    if issuer.malformed == "jwks":
                        body = {"keys": "nope"}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                answer = None
                if self.path.split("?")[0] == "/realms/test/token":
                    answer = issuer._token_response((form.get("code") or [""])[0])
                data = json.dumps(answer or {"error": "invalid_grant"}).encode()
                self.send_response(200 if answer else 400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
