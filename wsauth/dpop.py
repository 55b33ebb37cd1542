"""DPoP proofs (RFC 9449) for ``POST /wsauth/ticket/`` with ``Authorization: DPoP``.

A browser cannot send a proof on a WebSocket upgrade, so the proof is checked where it
can be sent, on the ticket request, and the ticket records the key's thumbprint. The
assurance on the socket is the proof at issue time plus the ticket's single use and
short life.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
from typing import Any

from django.conf import settings
from jwt.algorithms import get_default_algorithms

from . import stores
from .conf import DEFAULT_ALGORITHMS, Conf
from .tokens import TokenError, finite_number, parse

_ALGORITHMS = get_default_algorithms()
#: RFC 7638: the members of each key type that make up its thumbprint.
_THUMBPRINT_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
#: Seconds a proof's ``jti`` outlives its window: rounding, and our processes' clocks.
_REPLAY_MARGIN = 5.0


class ProofError(Exception):
    """A refused proof; ``error`` is the ``WWW-Authenticate`` error code."""

    def __init__(self, detail: str, error: str = "invalid_dpop_proof") -> None:
        super().__init__(detail)
        self.detail = detail
        self.error = error


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK, base64url."""
    members = _THUMBPRINT_MEMBERS.get(jwk.get("kty"))  # type: ignore[arg-type]
    if members is None or any(not isinstance(jwk.get(m), str) for m in members):
        raise ProofError("the proof's 'jwk' is not a supported public key")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def access_token_hash(token: str) -> str:
    return b64url(hashlib.sha256(token.encode("ascii", "replace")).digest())


# -- server nonces: stateless, an HMAC of the time window ------------------------------------


def _nonce_for(window: int) -> str:
    mac = hmac.new(settings.SECRET_KEY.encode(), f"wsauth-dpop:{window}".encode(), "sha256")
    return b64url(mac.digest()[:18])


def current_nonce(conf: Conf) -> str:
    return _nonce_for(int(time.time() // max(conf.dpop_proof_max_age, 1)))


def _nonce_ok(nonce: Any, conf: Conf) -> bool:
    if not isinstance(nonce, str):
        return False
    window = int(time.time() // max(conf.dpop_proof_max_age, 1))
    return any(hmac.compare_digest(nonce, _nonce_for(w)) for w in (window, window - 1))


# -- the proof --------------------------------------------------------------------------------


async def verify_proof(
    proof: str, *, method: str, url: str, access_token: str, jkt: str, conf: Conf
) -> str:
    """Verify a DPoP proof for a request and a bound access token; return the key's
    thumbprint, or raise ``ProofError``."""
    try:
        header, claims, signing_input, signature = parse(proof, conf)
    except TokenError as exc:
        raise ProofError(f"malformed proof: {exc.detail}") from exc
    if header.get("typ") != "dpop+jwt":
        raise ProofError("the proof's 'typ' must be 'dpop+jwt'")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in DEFAULT_ALGORITHMS or alg not in _ALGORITHMS:
        raise ProofError(f"proof algorithm {alg!r} is not allowed")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict) or _PRIVATE_MEMBERS & set(jwk):
        raise ProofError("the proof's 'jwk' must be a public key")
    proof_jkt = thumbprint(jwk)
    try:
        key = _ALGORITHMS[alg].from_jwk(jwk)
        valid = _ALGORITHMS[alg].verify(signing_input, key, signature)
    except Exception:
        valid = False
    if not valid:
        raise ProofError("the proof's signature does not verify with its 'jwk'")
    if not hmac.compare_digest(proof_jkt, jkt):
        raise ProofError("the proof's key is not the key the token is bound to (cnf.jkt)")
    if claims.get("htm") != method:
        raise ProofError(f"'htm' must be {method!r}")
    if claims.get("htu") != url:
        raise ProofError(f"'htu' must be {url!r}")
    iat = finite_number(claims.get("iat"))
    if iat is None:
        raise ProofError("the proof has no numeric 'iat'")
    window = conf.dpop_proof_max_age + conf.leeway
    if abs(time.time() - iat) > window:
        raise ProofError("the proof's 'iat' is outside the accepted window")
    if claims.get("ath") != access_token_hash(access_token):
        raise ProofError("'ath' must be the hash of the access token")
    if conf.dpop_require_nonce and not _nonce_ok(claims.get("nonce"), conf):
        raise ProofError("a fresh server nonce is required", error="use_dpop_nonce")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 8 <= len(jti) <= 256:
        raise ProofError("the proof has no usable 'jti'")
    # Remembered until the proof leaves the window, up to 2 * window after its first use
    # for an iat in the future (RFC 9449 section 11.1).
    ttl = math.ceil(max(iat + window - time.time(), 0) + _REPLAY_MARGIN)
    try:
        first = await stores.run(
            stores.first_use, conf.revocation_cache, "dpop-jti", f"{proof_jkt}:{jti}", ttl
        )
    except Exception as exc:
        raise ProofError(
            f"cannot check proof replay: {exc}", error="temporarily_unavailable"
        ) from exc
    if not first:
        raise ProofError("the proof's 'jti' was used before (replay)")
    return proof_jkt
