"""Access-token validation: one parse per token, keys from the issuer's JWKS.

pyjwt's entry points (``get_unverified_header``, ``PyJWKClient``, ``decode``) each parse
the token again, and ``decode`` spends more time merging options than verifying. Here the
token is split and decoded once, the signature is checked by pyjwt's algorithm objects
with a key prepared once per ``(kid, alg)``, and the registered claims are checked below.
A token verified before is found again by its digest until it expires.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import string
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Generic, TypeVar

from jwt.algorithms import get_default_algorithms

from .conf import Conf, get_conf, on_reset
from .jwks import KeyError_, get_jwks_cache

_ALGORITHMS = get_default_algorithms()
_DEFAULT_TYPES = frozenset({"at+jwt", "jwt", None})
_STRICT_TYPES = frozenset({"at+jwt"})
#: Claims no access token carries: an ID token's (OpenID Connect Core 2, 3.3.2.11) and a
#: security event token's, such as a logout token (RFC 8417 2.2).
_FOREIGN_CLAIMS = ("events", "at_hash", "c_hash", "s_hash", "nonce")
#: Keycloak's payload ``typ`` of its other tokens (its access tokens say ``Bearer``).
_FOREIGN_PAYLOAD_TYPES = frozenset({"id", "logout", "refresh", "offline"})


class TokenError(Exception):
    """A refused token. ``reason`` is a short code; the message a human explanation."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail or reason


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A token whose signature and claims passed. Of the header only what was checked
    is kept: a socket holds this for its life, and nothing reads the rest."""

    claims: dict[str, Any]
    alg: str
    kid: str | None
    issuer: str
    subject: str
    expires_at: int

    @property
    def dpop_jkt(self) -> str | None:
        cnf = self.claims.get("cnf")
        return cnf.get("jkt") if isinstance(cnf, dict) else None


_B64URL = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
_B64URL_VALUE = {c: i for i, c in enumerate(_B64URL)}
_B64URL_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
#: The unused low bits of the last character, by segment length modulo 4 (1 is invalid).
_UNUSED_BITS = {0: 0, 2: 0b1111, 3: 0b11}


def _b64decode(segment: str) -> bytes:
    """Strict base64url (RFC 7515 section 2, RFC 4648 section 3.5): unpadded, only its
    alphabet, no stray bits after the last byte. ``urlsafe_b64decode`` skips other bytes
    and ignores trailing bits, which gives one token many spellings, each a fresh
    signature check and a verified-cache entry."""
    if not _B64URL_SEGMENT.fullmatch(segment):
        raise TokenError("malformed", "a segment is not unpadded base64url")
    unused = _UNUSED_BITS.get(len(segment) % 4)
    if unused is None or (unused and _B64URL_VALUE[segment[-1]] & unused):
        raise TokenError("malformed", "a segment is not canonical base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenError("malformed", "bad base64url segment") from exc


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # deep nesting: RecursionError
        raise TokenError("malformed", f"{what} is not JSON") from exc
    if not isinstance(value, dict):
        raise TokenError("malformed", f"{what} is not a JSON object")
    return value


def _normalise_typ(typ: object) -> str | None:
    if typ is None:
        return None
    if not isinstance(typ, str):
        return "<invalid>"
    typ = typ.lower()
    return typ.removeprefix("application/")


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or None (booleans, strings, NaN, inf, huge ints)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _number(claims: dict[str, Any], name: str) -> float | None:
    """The claim as a finite number; None when absent. Present but not a number (JSON
    ``null`` included) is an invalid token, not an absent claim."""
    if name not in claims:
        return None
    number = finite_number(claims[name])
    if number is None:
        raise TokenError("invalid_claims", f"'{name}' is not a finite number")
    return number


def audience_matches(aud: Any, accepted: tuple[str, ...]) -> bool:
    """An ``aud`` claim (a string or a list of strings) names one of ``accepted``. A list
    with anything but strings is a malformed claim (RFC 7519 4.1.3), as pyjwt holds too."""
    auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not all(isinstance(a, str) for a in auds):
        return False
    return any(a in accepted for a in auds)


def check_claims(claims: dict[str, Any], conf: Conf, now: float | None = None) -> None:
    """The registered claims of an access token, with ``conf.leeway`` seconds of leeway."""
    now = time.time() if now is None else now
    for required in ("exp", "iss", "sub"):
        if required not in claims:
            raise TokenError("missing_claim", f"token has no '{required}' claim")
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        raise TokenError("invalid_claims", "'sub' is not a non-empty string")
    if claims["iss"] != conf.issuer:
        raise TokenError("wrong_issuer", f"issuer {claims['iss']!r} is not {conf.issuer!r}")
    exp = _number(claims, "exp")
    assert exp is not None  # present (checked above), so a number or _number raised
    if now >= exp + conf.leeway:
        raise TokenError("expired", "token has expired")
    nbf = _number(claims, "nbf")
    if nbf is not None and now + conf.leeway < nbf:
        raise TokenError("not_yet_valid", "token is not valid yet (nbf)")
    iat = _number(claims, "iat")
    if iat is not None and now + conf.leeway < iat:
        raise TokenError("not_yet_valid", "token was issued in the future (iat)")
    if conf.verify_audience:
        aud = claims.get("aud")
        if not audience_matches(aud, conf.audience):
            raise TokenError("wrong_audience", f"audience {aud!r} is not accepted")


def check_access_token_kind(claims: dict[str, Any], conf: Conf) -> None:
    """Refuse ID, logout and other tokens whose header ``typ`` (``JWT`` or none) does not
    tell them from access tokens: the audience may be the client id, as theirs is (RFC
    9068 section 4, RFC 8725 section 3.11). The strict policy relies on ``at+jwt``."""
    if conf.typ_policy == "strict":
        return
    typ = claims.get("typ")
    if isinstance(typ, str) and typ.lower() in _FOREIGN_PAYLOAD_TYPES:
        raise TokenError("not_access_token", f"payload 'typ' {typ[:20]!r}: not an access token")
    # Keycloak before 25 copied the login's nonce into its access tokens (typ Bearer).
    bearer = isinstance(typ, str) and typ.lower() == "bearer"
    for name in _FOREIGN_CLAIMS:
        if name in claims and not (bearer and name == "nonce"):
            raise TokenError("not_access_token", f"carries '{name}': not an access token")


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _BoundedCache(Generic[K, V]):
    """Bounded LRU; an entry never outlives its expiry (``expires(value)``, epoch s)."""

    def __init__(self, size: int, expires: Callable[[V], float]) -> None:
        self.size = size
        self.expires = expires
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K, now: float) -> V | None:
        value = self._entries.get(key)
        if value is None:
            return None
        if now >= self.expires(value):
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        if self.size <= 0:
            return
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def discard_where(self, predicate: Callable[[V], bool]) -> None:
        # A snapshot: a revocation from sync code runs here on async_to_sync's thread
        # while the server's loop fills the cache (see users.forget_user).
        for key, value in list(self._entries.items()):
            if predicate(value):
                self._entries.pop(key, None)


def _claims_exp(claims: dict[str, Any]) -> float:
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) else 0.0


#: Verified tokens by SHA-256 digest, and (``shared_claims``) tickets' claims by content.
_verified: _BoundedCache[bytes, VerifiedToken] | None = None
_shared: _BoundedCache[tuple[Any, ...], dict[str, Any]] | None = None


def _verified_cache(conf: Conf) -> _BoundedCache[bytes, VerifiedToken]:
    global _verified
    if _verified is None:
        _verified = _BoundedCache(conf.verified_token_cache_size, attrgetter("expires_at"))
    return _verified


@on_reset
def _drop_caches() -> None:
    global _verified, _shared
    _verified = _shared = None


def forget_verified(predicate: Any) -> None:
    """Drop cached verifications matching ``predicate(VerifiedToken)`` (revocation)."""
    if _verified is not None:
        _verified.discard_where(predicate)


def parse(token: str, conf: Conf) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Split and decode a compact JWS once: header, claims, signing input, signature."""
    if not isinstance(token, str) or not token:
        raise TokenError("malformed", "empty token")
    if len(token) > conf.max_token_size:
        raise TokenError("too_large", f"token is larger than {conf.max_token_size} bytes")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("malformed", "not a compact JWS (three dot-separated parts)")
    try:
        signing_input = (parts[0] + "." + parts[1]).encode("ascii")
    except UnicodeEncodeError as exc:
        raise TokenError("malformed", "non-ASCII token") from exc
    header = _json_object(_b64decode(parts[0]), "header")
    claims = _json_object(_b64decode(parts[1]), "payload")
    signature = _b64decode(parts[2])
    return header, claims, signing_input, signature


def check_header(
    header: dict[str, Any], conf: Conf, types: frozenset[str | None] | None = None
) -> tuple[str, str | None]:
    """The algorithm allow-list, ``crit`` and the ``typ`` policy (or ``types``).
    Returns ``(alg, kid)``."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in conf.algorithms or alg.lower() == "none":
        raise TokenError("bad_algorithm", f"algorithm {alg!r} is not allowed")
    if alg not in _ALGORITHMS:
        raise TokenError("bad_algorithm", f"algorithm {alg!r} is not supported")
    if "crit" in header:
        raise TokenError("malformed", "critical header extensions are not supported")
    if header.get("b64", True) is False:  # RFC 7797: the payload segment is not base64url
        raise TokenError("malformed", "unencoded payloads (b64: false) are not supported")
    allowed = types or (_STRICT_TYPES if conf.typ_policy == "strict" else _DEFAULT_TYPES)
    if _normalise_typ(header.get("typ")) not in allowed:
        raise TokenError("bad_type", f"token type {header.get('typ')!r} is not accepted")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise TokenError("malformed", "'kid' is not a string")
    # 'jku', 'x5u', 'x5c' and 'jwk' are never used: keys come from the configured JWKS only.
    return alg, kid


async def verify_signature(
    alg: str, kid: str | None, signing_input: bytes, signature: bytes, conf: Conf
) -> None:
    """Check a JWS signature with the issuer's key for ``(kid, alg)``."""
    try:
        key = await get_jwks_cache(conf).get_key(kid, alg)
    except KeyError_ as exc:
        raise TokenError(exc.reason, str(exc)) from exc
    try:
        valid = _ALGORITHMS[alg].verify(signing_input, key, signature)
    except Exception:
        valid = False
    if not valid:
        raise TokenError("bad_signature", "signature verification failed")


async def validate_access_token(
    token: str, *, conf: Conf | None = None, binding: str = "upgrade"
) -> VerifiedToken:
    """Verify an access token against the configured issuer, or raise ``TokenError``.

    ``binding`` says how the token was presented: ``"upgrade"`` (on a WebSocket: a
    DPoP-bound token only with ``ACCEPT_DPOP_BOUND_AS_BEARER``), ``"bearer"`` (HTTP
    ``Authorization: Bearer``: never DPoP-bound, RFC 9449 section 7.1) or ``"dpop"`` (with
    a proof checked by the caller: must be DPoP-bound)."""
    conf = conf or get_conf()
    if not isinstance(token, str) or len(token) > conf.max_token_size:
        raise TokenError("too_large", f"token is larger than {conf.max_token_size} bytes")
    now = time.time()
    cache = _verified_cache(conf)
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
    cached = cache.get(digest, now)
    if cached is not None:
        _check_binding(cached, conf, binding)
        return cached

    header, claims, signing_input, signature = parse(token, conf)
    alg, kid = check_header(header, conf)
    await verify_signature(alg, kid, signing_input, signature, conf)
    check_claims(claims, conf, now)
    check_access_token_kind(claims, conf)
    claims = _compact(claims, conf)
    verified = VerifiedToken(
        claims=claims,
        alg=sys.intern(alg),  # an allowed algorithm's name
        kid=sys.intern(kid) if kid is not None and len(kid) <= 64 else kid,
        issuer=claims["iss"],
        subject=claims["sub"],
        expires_at=int(claims["exp"]),
    )
    _check_binding(verified, conf, binding)
    cache.put(digest, verified)
    return verified


def _compact(obj: dict[str, Any], conf: Conf) -> dict[str, Any]:
    """Share what verified tokens repeat: interned keys, the configured issuer and
    audience strings. A socket keeps its token's claims for its whole life; this halves
    their memory. Only verified claims come here (signed, or a ticket's record of them,
    which this server wrote), so interning cannot be flooded."""
    out = {sys.intern(k): v for k, v in obj.items()}
    if out.get("iss") == conf.issuer:
        out["iss"] = conf.issuer
    aud = out.get("aud")
    if isinstance(aud, str):
        for known in conf.audience:
            if aud == known:
                out["aud"] = known
    for name in ("scope", "azp", "client_id"):
        value = out.get(name)
        if isinstance(value, str) and len(value) <= 64:
            out[name] = sys.intern(value)
    return out


def shared_claims(claims: dict[str, Any], conf: Conf) -> dict[str, Any]:
    """A ticket's claims, compacted, and the same dict as an earlier ticket's of the same
    token on this process: each ticket's record is unpickled afresh, and the tickets of
    one token (a user's tabs) would each keep a copy for the socket's life. Shared only
    when equal in every claim; bounded and dropped at ``exp`` like verified tokens."""
    global _shared
    key = tuple(claims.get(name) for name in ("iss", "sub", "jti", "iat", "exp"))
    try:
        hash(key)
    except TypeError:  # an unhashable claim value: nothing to share by
        return _compact(claims, conf)
    if _shared is None:
        _shared = _BoundedCache(conf.verified_token_cache_size, _claims_exp)
    known = _shared.get(key, time.time())
    if known is not None and known == claims:
        return known
    out = _compact(claims, conf)
    _shared.put(key, out)
    return out


def _check_binding(token: VerifiedToken, conf: Conf, binding: str) -> None:
    if "cnf" in token.claims:
        _check_cnf(token.claims["cnf"], conf)
    bound = token.dpop_jkt is not None
    if binding == "dpop":
        if not bound:
            raise TokenError("not_dpop_bound", "a DPoP request needs a DPoP-bound token (cnf.jkt)")
    elif bound and (binding == "bearer" or not conf.accept_dpop_bound_as_bearer):
        raise TokenError("dpop_bound", "token is bound to a DPoP key (cnf.jkt): send a DPoP proof")


def _check_cnf(cnf: Any, conf: Conf) -> None:
    """A confirmation (RFC 7800) binds the token to a key its presenter must prove. wsauth
    proves ``jkt`` (DPoP) only; a token bound otherwise is refused, not taken as bearer,
    unless ``ACCEPT_UNVERIFIED_CNF`` says the binding is checked elsewhere (a proxy)."""
    if not isinstance(cnf, dict):
        raise TokenError("invalid_claims", "'cnf' is not a JSON object")
    if "jkt" in cnf and not (isinstance(cnf["jkt"], str) and cnf["jkt"]):
        # A null jkt would otherwise read as "not bound" and pass as a bearer token.
        raise TokenError("invalid_claims", "'cnf.jkt' is not a key thumbprint")
    accepted = conf.accept_unverified_cnf
    if accepted is True:
        return
    unverified = sorted(m for m in cnf if m != "jkt" and m not in accepted)
    if unverified:
        names = ", ".join(repr(m[:40]) for m in unverified[:4])
        raise TokenError(
            "unverifiable_cnf",
            f"token is bound by cnf {names}, which wsauth cannot verify "
            "(ACCEPT_UNVERIFIED_CNF accepts it)",
        )
