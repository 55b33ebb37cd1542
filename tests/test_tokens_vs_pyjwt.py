"""wsauth's hand-written JWS parsing against pyjwt (hypothesis): for generated and mutated
tokens, ``validate_access_token`` accepts exactly when ``jwt.decode`` accepts with the same
key, algorithms and claim checks, apart from the deliberate differences below.

The oracle is ``jwt.decode(token, key, algorithms=ALGORITHMS, audience=AUDIENCE,
issuer=ISSUER, leeway=10, options={"require": ["exp", "iss", "sub"], "verify_jti": False})``
with the key that pyjwt's own ``PyJWKSet`` finds for the header's ``kid``; then the
deliberate differences, each a conjunct of the oracle (so excluded by construction) and
each shown once, concretely, at the end of this module:

1. ``typ`` policy: wsauth accepts a header ``typ`` of ``at+jwt``, ``JWT`` or none (any
   case, ``application/`` prefix optional); pyjwt never checks ``typ``. The generator draws
   accepted spellings only; the others are refused (``test_typ_policy``).
2. ``cnf``: a token bound to a key (RFC 7800; DPoP ``jkt`` or any other member) is refused
   as a bearer credential on a WebSocket; pyjwt ignores ``cnf``.
3. Not an access token: a payload ``typ`` of ``id``/``logout``/``refresh``/``offline`` or
   an ID token's or logout token's claims (``nonce``, ``at_hash``, ``c_hash``, ``s_hash``,
   ``events``) are refused; pyjwt has no notion of the token's kind.
4. ``crit``: wsauth implements no extension and refuses every ``crit``; pyjwt accepts
   ``crit: ["b64"]`` (RFC 7797) when ``b64`` is not false.
5. Strict base64url: pyjwt accepts ``=`` padding on a segment; wsauth refuses it (one
   token, one spelling: each spelling would be a fresh signature check and cache entry).
6. NumericDate (``exp``, ``nbf``, ``iat``) must be a JSON number a float holds: pyjwt
   takes ``int(value)``, so it accepts digit strings (``"1700000000"``), booleans, and
   integers past a float's range, and truncates fractions.
7. ``sub`` must be a non-empty string (the user's key); pyjwt accepts ``""``.
8. ``jti`` is not checked (wsauth keeps no replay state for access tokens); pyjwt refuses
   a non-string ``jti``, so the oracle turns ``verify_jti`` off.
9. Key selection: a token without ``kid`` is verified with the key set's only key when it
   has exactly one (``PyJWKClient`` never matches such a token); with several keys it is
   refused. An RSA JWK without ``alg`` verifies RS* and PS* alike (``PyJWK`` would bind it
   to RS256), so the oracle passes such a key's raw public key, and the ``PyJWK`` itself
   for a JWK that names its ``alg``.
10. Size: a token over ``MAX_TOKEN_SIZE`` (12 KiB) is refused unread.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from jwt.algorithms import get_default_algorithms

from tests.issuer import AUDIENCE, Issuer, new_key, public_jwk
from wsauth import conf as wsauth_conf
from wsauth.conf import DEFAULT_ALGORITHMS
from wsauth.tokens import TokenError, validate_access_token

PROPERTY = settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LEEWAY = 10
ALGS = get_default_algorithms()
ABSENT: Any = object()


# -- the issuer: several keys, one of them naming its alg -------------------------------------


@pytest.fixture(scope="module")
def keyed_issuer() -> Iterator[Issuer]:
    iss = Issuer().start()  # one RSA key without alg
    iss.add_key("EC", kid="ec")
    iss.add_key("OKP", kid="ed")
    ps = new_key("RSA")
    iss.keys["ps"] = (ps, "PS256")
    iss.extra_jwks.append(public_jwk(ps, "ps", alg="PS256"))
    iss.add_key("RSA", kid="rogue", publish=False)  # signs, but is not in the key set
    yield iss
    iss.stop()


@pytest.fixture
def conf_for(settings: Any, keyed_issuer: Issuer) -> Iterator[Issuer]:
    settings.WSAUTH = {
        **settings.WSAUTH,
        "ISSUER": keyed_issuer.issuer,
        "AUDIENCE": AUDIENCE,
        "LEEWAY": LEEWAY,
        "ALGORITHMS": DEFAULT_ALGORITHMS,
    }
    wsauth_conf.reset()
    yield keyed_issuer
    wsauth_conf.reset()


# -- building tokens ---------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(alg: Any, private: Any, signing_input: bytes) -> bytes:
    """The raw signature of ``alg`` by ``private``; junk when the pair cannot sign."""
    try:
        return ALGS[alg].sign(signing_input, private)
    except Exception:
        return b"\x00" * 64


def respell(segment: str, how: str) -> str:
    """Other spellings of one base64url segment."""
    if how == "padded":
        return segment + "=" * (-len(segment) % 4) if len(segment) % 4 else segment + "=="
    if how == "stray_bits" and len(segment) % 4 in (2, 3):
        last = B64URL.index(segment[-1])
        return segment[:-1] + B64URL[last | 1]
    if how == "standard":
        return segment.replace("-", "+").replace("_", "/")
    if how.startswith("insert:"):
        middle = len(segment) // 2
        return segment[:middle] + how[len("insert:") :] + segment[middle:]
    if how == "truncate":
        return segment[:-1]
    return segment


B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
SPELLINGS = st.sampled_from(
    ["", "", "", "padded", "stray_bits", "standard", "truncate"]
    + ["insert:" + c for c in ("=", "+", "/", " ", ".", "é", "%3D")]
)


def canonical(segment: str) -> bool:
    """Unpadded base64url in its one spelling (RFC 7515 section 2)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*", segment) or len(segment) % 4 == 1:
        return False
    return b64(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))) == segment


def now_plus(offset: int) -> int:
    return int(time.time()) + offset


# Offsets keep 5 s from the leeway's edges, so the two verifiers' clocks cannot disagree.
OFFSETS = [-3600, -LEEWAY - 5, -LEEWAY + 5, 0, LEEWAY - 5, LEEWAY + 5, 3600]
numeric_date = st.one_of(
    st.sampled_from(OFFSETS).map(now_plus),
    st.sampled_from(OFFSETS).map(lambda o: now_plus(o) + 0.5),
    st.sampled_from(OFFSETS).map(lambda o: str(now_plus(o))),  # pyjwt int()s strings
    st.sampled_from([True, False, None, 10**400, -(10**400), float("inf"), float("nan")]),
    st.sampled_from(["", "soon", [1], {"t": 1}]),
)

strings_or_junk = st.sampled_from(["x", "", 1, None, True, ["x"], {"x": 1}])


#: The algorithm each published key signs with (the RSA key without ``alg``: any RS*/PS*).
KEY_ALGS = {"ec": ["ES256"], "ed": ["EdDSA"], "ps": ["PS256"]}
RSA_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
AUDS = [[AUDIENCE], ["other", AUDIENCE], [AUDIENCE, 5], [AUDIENCE, None], [5, AUDIENCE]]
AUDS += [[], "", "other", ["other"], None, ABSENT, 5, {"aud": AUDIENCE}, [[AUDIENCE]]]
CNFS = [{}, {"jkt": "abc"}, {"jkt": None}, {"jkt": 5}, {"x5t#S256": "abc"}, "jkt", [], None]


@st.composite
def tokens(draw: Any, kids: tuple[str, ...]) -> dict[str, Any]:
    """A token as a dict of its parts, so the test can compute what pyjwt says. Each draw
    mutates one area (or, one time in four, all of them) and leaves the rest valid, so
    that many tokens are accepted and a lax check in one area is not hidden by another."""
    focus = draw(st.sampled_from(["header", "claims", "encoding", "signature", "all"]))

    def mutate(area: str, one_in: int = 2) -> bool:
        return focus in (area, "all") and draw(st.integers(1, one_in)) == 1

    signer = draw(st.sampled_from(kids))
    alg = draw(st.sampled_from(KEY_ALGS.get(signer, RSA_ALGS)))
    header: dict[str, Any] = {"alg": alg, "kid": signer}
    if mutate("header", 3):
        header["alg"] = draw(
            st.sampled_from([*RSA_ALGS, "ES256", "ES384", "ES512", "EdDSA"])
            | st.sampled_from(["HS256", "none", "None", "rs256", "RS256 ", "", "ES256K"])
            | st.sampled_from(["Ed25519", None, 1, ["RS256"]])
        )
    if mutate("header", 3):
        kid = draw(st.sampled_from([*kids, "rogue", "unknown", ABSENT, 7, None, ["x"], ""]))
        if kid is ABSENT:
            del header["kid"]
        else:
            header["kid"] = kid
    typ = draw(st.sampled_from([ABSENT, "at+jwt", "JWT", "jwt", "application/at+jwt", "AT+JWT"]))
    if typ is not ABSENT:
        header["typ"] = typ
    if mutate("header", 4):
        header["crit"] = draw(st.sampled_from([["b64"], ["exp"], [], "b64", [1], None]))
    if mutate("header", 4):
        header["b64"] = draw(st.sampled_from([True, False, 0, "false", None]))
    if mutate("header", 4):  # key URLs are never followed, by either
        header[draw(st.sampled_from(["jku", "x5u", "jwk", "x5c", "cty", "zip"]))] = "x"

    claims: dict[str, Any] = {
        "iss": ISSUER_PLACEHOLDER,
        "sub": "user-1",
        "aud": AUDIENCE,
        "exp": now_plus(300),
        "iat": now_plus(0),
        "nbf": now_plus(0),
    }
    for name in ("exp", "iat", "nbf"):
        if mutate("claims", 4):
            claims[name] = draw(numeric_date | st.just(ABSENT))
    if mutate("claims", 5):
        claims["iss"] = draw(st.sampled_from(["http://other.test", ABSENT, "", 1, None, ["x"]]))
    if mutate("claims", 5):
        claims["sub"] = draw(strings_or_junk | st.just(ABSENT))
    if mutate("claims", 3):
        claims["aud"] = draw(st.sampled_from(AUDS))
    if mutate("claims", 5):
        claims["jti"] = draw(strings_or_junk)
    if mutate("claims", 5):
        claims["cnf"] = draw(st.sampled_from(CNFS))
    if mutate("claims", 5):
        claims["typ"] = draw(st.sampled_from(["Bearer", "ID", "logout", "Refresh", "x", 1]))
    if mutate("claims", 5):
        claims[draw(st.sampled_from(["nonce", "at_hash", "events", "c_hash", "s_hash"]))] = "n"
    claims = {k: v for k, v in claims.items() if v is not ABSENT}

    if mutate("signature", 2):
        signer = draw(st.sampled_from([*kids, "rogue"]))
    encoding = focus in ("encoding", "all")
    return {
        "header": header,
        "claims": claims,
        "json_spelling": draw(st.sampled_from(["compact", "spaced", "utf-16", "duplicate"])),
        "signer": signer,
        "spelling": tuple(draw(SPELLINGS) if encoding else "" for _ in range(3)),
        "resign": draw(st.booleans()),  # sign the respelled segments, or the canonical ones
        "signature": draw(st.sampled_from(["flipped", "empty", "short"]))
        if mutate("signature", 2)
        else "good",
        "extra_parts": draw(st.sampled_from([-1, 1])) if mutate("encoding", 6) else 0,
    }


ISSUER_PLACEHOLDER = "<issuer>"


def encode_json(value: dict[str, Any], spelling: str) -> bytes:
    if spelling == "spaced":
        return json.dumps(value, indent=1).encode()
    if spelling == "utf-16":  # json.loads detects it: both sides read the same object
        return json.dumps(value).encode("utf-16")
    if spelling == "duplicate" and value:  # the first spelling of a name is overridden
        first = next(iter(value))
        return b'{"' + first.encode() + b'": "dup", ' + json.dumps(value).encode()[1:]
    return json.dumps(value, separators=(",", ":")).encode()


def assemble(spec: dict[str, Any], issuer: Issuer) -> str:
    claims = {k: issuer.issuer if v == ISSUER_PLACEHOLDER else v for k, v in spec["claims"].items()}
    spec["claims"] = claims
    head = b64(encode_json(spec["header"], spec["json_spelling"]))
    body = b64(encode_json(claims, spec["json_spelling"]))
    h_spell, p_spell, s_spell = spec["spelling"]
    signed_head, signed_body = respell(head, h_spell), respell(body, p_spell)
    if spec["resign"]:
        signing_input = f"{signed_head}.{signed_body}"
    else:
        signing_input = f"{head}.{body}"
    private = issuer.keys[spec["signer"]][0]
    signature = sign(spec["header"]["alg"], private, signing_input.encode("utf-8"))
    if spec["signature"] == "flipped" and signature:
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    elif spec["signature"] == "empty":
        signature = b""
    elif spec["signature"] == "short":
        signature = signature[:-1]
    parts = [signed_head, signed_body, respell(b64(signature), s_spell)]
    if spec["extra_parts"] == 1:
        parts.append(b64(b"{}"))
    elif spec["extra_parts"] == -1:
        parts = [f"{parts[0]}.{parts[1]}"]
    return ".".join(parts)


# -- the two verdicts ----------------------------------------------------------------------------


def pyjwt_accepts(token: str, issuer: Issuer) -> bool:
    try:
        header = jwt.get_unverified_header(token)
        keyset = jwt.PyJWKSet.from_dict(issuer.jwks())
        found = keyset[header["kid"]]  # KeyError: no kid, or not in the set
        names_alg = any(k.get("kid") == header["kid"] and "alg" in k for k in issuer.jwks()["keys"])
        key: Any = found if names_alg else found.key
        jwt.decode(
            token,
            key,
            algorithms=list(DEFAULT_ALGORITHMS),
            audience=AUDIENCE,
            issuer=issuer.issuer,
            leeway=LEEWAY,
            options={"require": ["exp", "iss", "sub"], "verify_jti": False},
        )
    except (jwt.PyJWTError, KeyError, TypeError):
        return False
    return True


def is_numeric_date(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return abs(float(value)) != float("inf") and value == value
    except OverflowError:
        return False


def within_deliberate_differences(
    token: str, header: dict[str, Any], claims: dict[str, Any]
) -> bool:
    """The wsauth-only conditions (the module docstring's list), computed independently."""
    parts = token.split(".")
    typ = claims.get("typ")
    bearer = isinstance(typ, str) and typ.lower() == "bearer"
    foreign = ("events", "at_hash", "c_hash", "s_hash") + (() if bearer else ("nonce",))
    return (
        len(token) <= 12 * 1024
        and len(parts) == 3
        and all(canonical(part) for part in parts)  # 5
        and "crit" not in header  # 4
        and claims.get("cnf", {}) == {}  # 2
        and not (isinstance(typ, str) and typ.lower() in {"id", "logout", "refresh", "offline"})
        and not any(name in claims for name in foreign)  # 3
        and all(is_numeric_date(claims[n]) for n in ("exp", "nbf", "iat") if n in claims)  # 6
        and claims.get("sub") != ""  # 7
    )


def wsauth_accepts(token: str) -> bool:
    try:
        asyncio.run(validate_access_token(token))
    except TokenError:
        return False
    return True


@PROPERTY
@given(data=st.data())
def test_wsauth_accepts_exactly_when_pyjwt_does(conf_for, data):
    issuer = conf_for
    spec = data.draw(tokens(kids=("ec", "ed", "ps", issuer.published[0])))
    token = assemble(spec, issuer)
    expected = pyjwt_accepts(token, issuer) and within_deliberate_differences(
        token, spec["header"], spec["claims"]
    )
    event("accepted" if expected else "refused")
    assert wsauth_accepts(token) == expected, (token, spec)


def test_the_generator_reaches_acceptance(conf_for):
    """The property above is only worth its examples if many of them are accepted."""
    issuer = conf_for
    accepted = 0
    for kid in ("ec", "ed", "ps", issuer.published[0]):
        alg = {"ec": "ES256", "ed": "EdDSA", "ps": "PS256"}.get(kid, "RS384")
        spec = {
            "header": {"alg": alg, "kid": kid, "typ": "at+jwt"},
            "claims": {"iss": ISSUER_PLACEHOLDER, "sub": "s", "aud": AUDIENCE, "exp": now_plus(60)},
            "json_spelling": "compact",
            "signer": kid,
            "spelling": ("", "", ""),
            "resign": True,
            "signature": "good",
            "extra_parts": 0,
        }
        token = assemble(spec, issuer)
        assert pyjwt_accepts(token, issuer) and wsauth_accepts(token)
        accepted += 1
    assert accepted == 4


# -- a key set of one key: tokens without kid --------------------------------------------------


@pytest.fixture
def single_key(settings: Any) -> Iterator[Issuer]:
    iss = Issuer().start()
    settings.WSAUTH = {**settings.WSAUTH, "ISSUER": iss.issuer, "AUDIENCE": AUDIENCE}
    wsauth_conf.reset()
    yield iss
    wsauth_conf.reset()
    iss.stop()


@settings(PROPERTY, max_examples=60)
@given(alg=st.sampled_from(["RS256", "PS384", "ES256", "HS256"]), with_kid=st.booleans())
def test_without_kid_the_only_key_is_used(single_key, alg, with_kid):
    """Difference 9: pyjwt's decode takes the key from the caller; wsauth takes a key set's
    only key for a token without ``kid``, and is then equivalent to decode with that key."""
    issuer = single_key
    kid = issuer.default_kid
    token = signed(issuer, {"alg": alg}, {}, kid)
    if not with_kid:
        head, rest = token.split(".", 1)
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
        del header["kid"]
        signing_input = f"{b64(json.dumps(header).encode())}.{rest.rsplit('.', 1)[0]}"
        token = f"{signing_input}.{b64(sign(alg, issuer.keys[kid][0], signing_input.encode()))}"
    key = jwt.PyJWKSet.from_dict(issuer.jwks())[kid].key
    try:
        jwt.decode(token, key, algorithms=list(DEFAULT_ALGORITHMS), audience=AUDIENCE)
        expected = True
    except (jwt.PyJWTError, TypeError):
        expected = False
    assert expected or alg not in ("RS256", "PS384")
    assert wsauth_accepts(token) == expected


# -- the deliberate differences, one concrete example each --------------------------------------


def signed(issuer: Issuer, header: dict[str, Any], claims: dict[str, Any], kid: str) -> str:
    """A token signed by hand (``jwt.encode`` would act on ``b64`` and refuse odd pairs)."""
    header = {"typ": "at+jwt", "kid": kid, **header}
    body = {**issuer.claims(), **claims}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    signature = sign(header["alg"], issuer.keys[kid][0], signing_input.encode())
    return f"{signing_input}.{b64(signature)}"


def differ(token: str, issuer: Issuer) -> None:
    assert pyjwt_accepts(token, issuer)
    assert not wsauth_accepts(token)


@pytest.mark.parametrize("typ", ["dpop+jwt", "logout+jwt", "secevent+jwt", "at+JWT;x", 5])
def test_typ_policy(conf_for, typ):
    kid = conf_for.published[0]
    differ(signed(conf_for, {"alg": "RS256", "typ": typ}, {}, kid), conf_for)


@pytest.mark.parametrize("cnf", [{"jkt": "abc"}, {"x5t#S256": "abc"}, {"jkt": None}, "jkt"])
def test_cnf_binding(conf_for, cnf):
    differ(signed(conf_for, {"alg": "ES256"}, {"cnf": cnf}, "ec"), conf_for)


@pytest.mark.parametrize(
    "claims", [{"typ": "ID"}, {"nonce": "n"}, {"at_hash": "h"}, {"events": {}}, {"typ": "Logout"}]
)
def test_not_an_access_token(conf_for, claims):
    differ(signed(conf_for, {"alg": "ES256"}, claims, "ec"), conf_for)


def test_nonce_of_a_keycloak_bearer_token_is_accepted(conf_for):
    token = signed(conf_for, {"alg": "ES256"}, {"typ": "Bearer", "nonce": "n"}, "ec")
    assert pyjwt_accepts(token, conf_for) and wsauth_accepts(token)


def test_crit_b64_true(conf_for):
    differ(signed(conf_for, {"alg": "ES256", "crit": ["b64"], "b64": True}, {}, "ec"), conf_for)


@pytest.mark.parametrize("segment", [0, 1, 2])
def test_padding(conf_for, segment):
    for filler in range(4):  # a header and payload whose base64url length needs padding
        header = {"alg": "ES256", "kid": "ec", "typ": "at+jwt", "x": "a" * filler}
        parts = [
            b64(json.dumps(header).encode()),
            b64(json.dumps(conf_for.claims(x="a" * filler)).encode()),
        ]
        if len(parts[0]) % 4 and len(parts[1]) % 4:
            break
    if segment < 2:
        parts[segment] += "=" * (-len(parts[segment]) % 4)
    signature = b64(ALGS["ES256"].sign(".".join(parts).encode(), conf_for.keys["ec"][0]))
    assert len(signature) % 4 == 2  # 64 bytes
    token = ".".join([*parts, signature + ("==" if segment == 2 else "")])
    differ(token, conf_for)


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("exp", "{soon}"),
        ("nbf", True),
        ("iat", False),
        ("exp", 10**400),
        ("nbf", "{now}"),
    ],
)
def test_numeric_dates(conf_for, claim, value):
    if isinstance(value, str):
        value = value.format(soon=now_plus(300), now=now_plus(0))
    differ(signed(conf_for, {"alg": "ES256"}, {claim: value}, "ec"), conf_for)


def test_empty_subject(conf_for):
    differ(signed(conf_for, {"alg": "ES256"}, {"sub": ""}, "ec"), conf_for)


def test_jti_is_not_checked(conf_for):
    token = signed(conf_for, {"alg": "ES256"}, {"jti": 12}, "ec")
    with pytest.raises(jwt.PyJWTError, match="JWT ID must be a string"):
        jwt.decode(
            token, conf_for.keys["ec"][0].public_key(), algorithms=["ES256"], audience=AUDIENCE
        )
    assert wsauth_accepts(token)


def test_rsa_key_without_alg_verifies_ps256(conf_for):
    kid = conf_for.published[0]
    token = signed(conf_for, {"alg": "PS256"}, {}, kid)
    pyjwk = jwt.PyJWKSet.from_dict(conf_for.jwks())[kid]
    with pytest.raises(jwt.InvalidAlgorithmError):  # PyJWK binds it to RS256
        jwt.decode(token, pyjwk, audience=AUDIENCE)
    assert wsauth_accepts(token)


def test_oversized_token(conf_for):
    differ(signed(conf_for, {"alg": "ES256"}, {"pad": "x" * 13_000}, "ec"), conf_for)


# -- disagreements that were wsauth bugs -------------------------------------------------------


@example(aud=[AUDIENCE, 5])
@given(aud=st.lists(st.sampled_from([AUDIENCE, "other", 5, None, [AUDIENCE]]), max_size=3))
@settings(PROPERTY, max_examples=40)
def test_audience_list_with_a_non_string_is_refused(conf_for, aud):
    """RFC 7519 4.1.3: ``aud`` is a string or an array of strings. wsauth used to accept
    ``["wsauth-tests", 5]`` (one string matched); pyjwt refuses the malformed claim."""
    token = signed(conf_for, {"alg": "ES256"}, {"aud": aud}, "ec")
    assert wsauth_accepts(token) == pyjwt_accepts(token, conf_for)


@pytest.mark.parametrize("b64_value", [False, True, 0])
def test_unencoded_payload_header(conf_for, b64_value):
    """RFC 7797: ``b64: false`` means the payload segment is not base64url, and must be
    listed in ``crit``. wsauth used to ignore ``b64`` and read the segment as base64url;
    pyjwt refuses ``b64: false`` without a detached payload."""
    token = signed(conf_for, {"alg": "ES256", "b64": b64_value}, {}, "ec")
    assert wsauth_accepts(token) == pyjwt_accepts(token, conf_for) == (b64_value is not False)
