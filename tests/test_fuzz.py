"""Property-based tests (hypothesis): every input to the handshake parsers is accepted or
refused by a rule, and no other exception escapes.

Targets: ``Handshake.parse`` (subprotocols, query string, headers), tickets
(``is_well_formed``, ``redeem``), origins (``parse_origin``, ``OriginSet``, ``OriginGate``)
and access tokens (``parse``, ``check_header``, ``validate_access_token``) with arbitrary
headers, claims and signatures, against a live HTTP issuer.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from django.conf import settings as django_settings
from django.test import override_settings
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.issuer import AUDIENCE, new_key, public_jwk
from wsauth import conf as wsauth_conf
from wsauth import tickets
from wsauth.authenticators import Handshake, Refused
from wsauth.conf import get_conf
from wsauth.logutil import mask
from wsauth.origins import DEFAULT_PORTS, Origin, OriginError, OriginGate, OriginSet, parse_origin
from wsauth.tokens import TokenError, VerifiedToken, check_header, parse, validate_access_token

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FEW = settings(FUZZ, max_examples=60)

PREFIX = "authorization_bearer_"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
ABSENT: Any = object()  # a header field left out (as opposed to JSON null)

#: Any JSON value, NaN and infinities included (Python's json reads and writes them).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=6)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def outcome(token: Any) -> VerifiedToken | TokenError:
    """Validate; return the verified token or the ``TokenError``. Anything else escapes."""
    try:
        return run(validate_access_token(token))
    except TokenError as exc:
        return exc


# -- Handshake.parse -------------------------------------------------------------------------

subprotocol = st.one_of(
    st.text(max_size=30),
    st.builds(lambda s: PREFIX + s, st.text(max_size=30)),
    st.builds(lambda s: " " + PREFIX + s + " ", st.text(alphabet=B64URL + ".", max_size=30)),
    st.sampled_from(["", " ", "chat", PREFIX, PREFIX.upper() + "x", "a,b", "a%2Cb"]),
)
odd_subprotocol = st.one_of(st.binary(max_size=10), st.integers(), st.none())
query_strings = st.one_of(
    st.binary(max_size=80),
    st.text(alphabet="ticket=access_token&;%+ab=\x00\x7f", max_size=80).map(str.encode),
    st.lists(st.sampled_from(["ticket=x", "a=b", "&", ";", "=", "%zz", "%ff"]), max_size=30).map(
        lambda parts: "".join(parts).encode()
    ),
)
header_names = st.one_of(
    st.binary(max_size=12), st.sampled_from([b"origin", b"Origin", b"ORIGIN", b"host", b""])
)
headers = st.lists(st.tuples(header_names, st.binary(max_size=40)), max_size=6)


@st.composite
def scopes(draw: st.DrawFn) -> dict[str, Any]:
    scope: dict[str, Any] = {"type": "websocket", "path": "/ws/echo/"}
    if draw(st.booleans()):
        protocols = st.one_of(subprotocol, odd_subprotocol) if draw(st.booleans()) else subprotocol
        scope["subprotocols"] = draw(st.lists(protocols, max_size=5))
    if draw(st.booleans()):
        scope["query_string"] = draw(query_strings)
    if draw(st.booleans()):
        scope["headers"] = draw(headers)
    return scope


@FUZZ
@given(scopes())
@example({"subprotocols": [PREFIX + "a", PREFIX + "b"]})
@example({"subprotocols": [b"chat"]})
@example({"query_string": b"&" * 50})
@example({"query_string": "ticket=é".encode()})
@example({"headers": [(b"origin", b"http://a"), (b"Origin", b"http://b")]})
@example({"headers": [(b"origin", b"http://\xff\xfe")]})
def test_handshake_parse_accepts_or_refuses_by_rule(scope):
    conf = get_conf()
    protocols = scope.get("subprotocols") or []
    try:
        handshake = Handshake.parse(scope, conf)
    except Refused as exc:
        # Every refusal has a rule, checked in this order.
        if any(not isinstance(p, str) for p in protocols):
            assert exc.reason == "bad_subprotocol"
        elif sum(p.strip().startswith(PREFIX) for p in protocols) > 1:
            assert exc.reason == "ambiguous_credentials"
        else:
            assert exc.reason in {"bad_query", "bad_origin"}, exc.reason
            if exc.reason == "bad_origin":
                origins = [k for k, _ in scope.get("headers") or () if k.lower() == b"origin"]
                assert len(origins) > 1
            else:
                query = scope.get("query_string") or b""
                assert not query.isascii() or query.count(b"&") >= 20
        return

    assert all(isinstance(p, str) for p in protocols)
    stripped = [p.strip() for p in protocols if p.strip()]
    tokens = [p for p in stripped if p.startswith(PREFIX)]
    assert handshake.app_protocols == [p for p in stripped if not p.startswith(PREFIX)]
    assert handshake.token_protocol == (tokens[0] if tokens else None)
    assert handshake.token == (tokens[0][len(PREFIX) :] if tokens else None)
    assert not any(p.startswith(PREFIX) for p in handshake.app_protocols)
    assert handshake.query == parse_qs((scope.get("query_string") or b"").decode("ascii"))
    origins = [v for k, v in scope.get("headers") or () if k.lower() == b"origin"]
    assert handshake.origin == (origins[0].decode("latin-1") if origins else None)


# -- tickets ---------------------------------------------------------------------------------

ticket_like = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=B64URL, min_size=40, max_size=46),
    st.text(alphabet=B64URL + "=+/.!\n\x00é", min_size=43, max_size=44),
    st.builds(lambda s: s + "\n", st.text(alphabet=B64URL, min_size=43, max_size=43)),
)


@FUZZ
@given(st.one_of(ticket_like, st.binary(max_size=50), st.integers(), st.none(), json_values))
@example("A" * 43 + "\n")
@example("A" * 42 + "é")
def test_ticket_well_formedness(value):
    result = tickets.is_well_formed(value)
    assert isinstance(result, bool)
    if result:
        assert isinstance(value, str) and len(value) == 43 and set(value) <= set(B64URL)


@FUZZ
@given(ticket_like)
@example("\ud800" * 43)
def test_redeem_of_arbitrary_strings_finds_nothing(value):
    # Local-memory cache (tests/settings.py): nothing was issued under these.
    assert run(tickets.redeem(value)) is None


@FEW
@given(
    st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    st.integers(min_value=0, max_value=42),
    st.sampled_from(B64URL),
)
def test_issued_ticket_redeems_once_and_no_neighbour_does(data, position, char):
    async def scenario() -> None:
        ticket, _ = await tickets.issue({**data, "uid": 1})
        neighbour = ticket[:position] + char + ticket[position + 1 :]
        if neighbour != ticket:
            assert await tickets.redeem(neighbour) is None
        record = await tickets.redeem(ticket)
        assert record is not None and record["uid"] == 1
        assert await tickets.redeem(ticket) is None

    run(scenario())


@pytest.fixture
def broken_ticket_store(settings):
    settings.CACHES = {
        **settings.CACHES,
        "broken": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
        },
    }
    settings.WSAUTH = {**settings.WSAUTH, "TICKET_CACHE": "broken"}
    wsauth_conf.reset()
    yield
    wsauth_conf.reset()


@FEW
@given(ticket_like)
@example("A" * 43)
def test_redeem_with_the_store_down_refuses_cleanly(broken_ticket_store, value):
    try:
        result = run(tickets.redeem(value))
    except tickets.TicketStoreError:
        assert tickets.is_well_formed(value)  # only a real lookup can fail
    else:
        assert result is None and not tickets.is_well_formed(value)


# -- origins ---------------------------------------------------------------------------------

hosts = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z0-9]{1,8}){0,3}", fullmatch=True),
    st.sampled_from(["127.0.0.1", "[::1]", "[2001:db8::1]", "bücher.example", "EXAMPLE.com"]),
    st.text(max_size=20),
)
origin_like = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda scheme, wild, host, port, tail: f"{scheme}://{wild}{host}{port}{tail}",
        st.sampled_from(["http", "https", "HTTPS", "ftp", "ws", ""]),
        st.sampled_from(["", "", "*.", "*", "."]),
        hosts,
        st.one_of(
            st.just(""),
            st.integers(min_value=-1, max_value=70000).map(lambda p: f":{p}"),
            st.sampled_from([":", ":80", ":443", ":0x50", ": 80"]),
        ),
        st.sampled_from(["", "/", "/path", "?q", "#f", " ", "\t", "\n", "@evil", "\x00"]),
    ),
)


@FUZZ
@given(origin_like, st.booleans())
@example("http://[v1.x]", False)
@example("http://a:0", False)
@example("https://*.example.com", True)
@example("ht*.tp://x", True)
def test_parse_origin_accepts_or_raises_origin_error(value, allow_wildcard):
    try:
        origin = parse_origin(value, allow_wildcard=allow_wildcard)
    except OriginError:
        return
    assert isinstance(origin, Origin)
    assert origin.scheme in DEFAULT_PORTS
    assert 0 <= origin.port <= 65535
    assert origin.host and origin.host.isascii() and origin.host == origin.host.lower()
    assert allow_wildcard or not origin.wildcard
    # The normal form is a fixed point: it parses back to the same origin.
    assert parse_origin(str(origin), allow_wildcard=origin.wildcard) == origin


@FUZZ
@given(
    st.lists(origin_like, max_size=6),
    st.lists(origin_like, max_size=6),
    origin_like,
)
def test_origin_set_and_gate_match_by_rule(allowed_values, wildcard_values, header):
    allowed: list[Origin] = []
    for value in allowed_values:
        try:
            allowed.append(parse_origin(value))
        except OriginError:
            pass
    for value in wildcard_values:
        try:
            allowed.append(parse_origin(value, allow_wildcard=True))
        except OriginError:
            pass
    origin_set = OriginSet(allowed)
    gate = OriginGate()
    gate._set = origin_set
    gate._loaded_at = float("inf")  # never stale: no database in this test

    try:
        origin = parse_origin(header)
    except OriginError:
        assert run(gate.allows(header)) is False
        return
    expected = any(
        (o.scheme, o.port) == (origin.scheme, origin.port)
        and (origin.host.endswith("." + o.host) if o.wildcard else origin.host == o.host)
        for o in allowed
    )
    assert origin_set.allows(origin) is expected
    assert run(gate.allows(header)) is expected


@FUZZ
@given(st.one_of(st.none(), st.text(max_size=100)))
def test_mask_never_reveals_more_than_a_prefix(secret):
    masked = mask(secret)
    if secret and len(secret) > 12:
        assert masked == f"{secret[:6]}…[{len(secret)}]"
    elif secret:
        assert secret not in masked or secret in f"…[{len(secret)}]"


# -- tokens: parsing and the header policy ----------------------------------------------------


@FUZZ
@given(
    st.one_of(
        st.text(max_size=200),
        st.lists(st.text(alphabet=B64URL + "=.+/", max_size=60), min_size=1, max_size=4).map(
            ".".join
        ),
        st.tuples(json_values, json_values, st.binary(max_size=40)).map(
            lambda t: ".".join(
                [b64(json.dumps(t[0]).encode()), b64(json.dumps(t[1]).encode()), b64(t[2])]
            )
        ),
    )
)
@example("\ud800.\ud800.\ud800")
@example("e30.e30.")
@example("e30=.e30.e30")
def test_parse_only_token_error_escapes(token):
    conf = get_conf()
    try:
        header, claims, signing_input, signature = parse(token, conf)
    except TokenError as exc:
        assert exc.reason in {"malformed", "too_large"}
        return
    assert isinstance(header, dict) and isinstance(claims, dict)
    assert signing_input == token.rsplit(".", 1)[0].encode("ascii")
    assert isinstance(signature, bytes)


header_values = st.one_of(
    json_values,
    st.sampled_from(
        ["RS256", "ES256", "EdDSA", "HS256", "none", "None", "NONE", "at+jwt", "JWT", ""]
    ),
)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["alg", "typ", "kid", "crit", "jku", "x5u", "jwk", "x5c", "cty", "b64"]),
        header_values,
        max_size=6,
    ),
    st.sampled_from(["default", "strict"]),
)
@example({"alg": "RS256", "typ": "application/AT+JWT"}, "strict")
@example({"alg": "none"}, "default")
@example({"alg": ["RS256"]}, "default")
def test_check_header_only_token_error_escapes(header, policy):
    # A setting per example, undone after it: the ``settings`` fixture would stack one
    # override per example (a RecursionError past about 1,000 examples).
    with override_settings(WSAUTH={**django_settings.WSAUTH, "TYP_POLICY": policy}):
        conf = get_conf()
    try:
        alg, kid = check_header(header, conf)
    except TokenError as exc:
        assert exc.reason in {"bad_algorithm", "malformed", "bad_type"}
        return
    assert alg == header["alg"] and alg in conf.algorithms and alg.lower() != "none"
    assert not alg.startswith("HS")
    assert "crit" not in header
    assert kid is None or isinstance(kid, str)
    typ = header.get("typ")
    assert typ is None or typ.lower().removeprefix("application/") in {"at+jwt", "jwt"}
    if policy == "strict":
        assert typ.lower().removeprefix("application/") == "at+jwt"


# -- tokens: the whole validation against a live issuer ----------------------------------------


class CountingServer:
    """An attacker's web server: counts every request, whatever the path."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append(self.path)
                self.send_response(404)
                self.end_headers()

            do_POST = do_GET

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def attacker() -> Iterator[CountingServer]:
    server = CountingServer()
    yield server
    server.stop()


ATTACKER_KEY = new_key("RSA")


def rs256(key: Any, signing_input: bytes) -> bytes:
    return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())


def public_pem(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def compact(header: dict[str, Any], claims: dict[str, Any], sign: Any) -> str:
    signing_input = (
        b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    ).encode()
    return signing_input.decode() + "." + b64(sign(signing_input))


def field_or_absent(values: Any) -> Any:
    return st.one_of(st.just(ABSENT), values)


@FUZZ
@given(
    alg=st.one_of(
        st.sampled_from(
            [
                *("RS256", "RS384", "PS256", "ES256", "EdDSA", "HS256", "HS512"),
                *("none", "None", "NONE", "nOnE", ""),
            ]
        ),
        st.text(max_size=6),
        st.integers(),
        st.none(),
        st.lists(st.just("RS256"), max_size=2),
    ),
    typ=field_or_absent(
        st.sampled_from(
            [None, "at+jwt", "AT+JWT", "application/at+jwt", "JWT", "jwt", "JOSE", "", 1]
        )
        | st.lists(st.just("at+jwt"), max_size=1)
    ),
    kid=field_or_absent(st.sampled_from(["REAL", None, "", "unknown-kid", 7, ["REAL"]])),
    crit=field_or_absent(st.sampled_from([[], ["exp"], ["b64"], "b64"])),
    key_urls=st.sets(st.sampled_from(["jku", "x5u", "jwk", "x5c"])),
    signer=st.sampled_from(["issuer", "issuer", "attacker", "hs256_public_key", "empty", "junk"]),
)
@example(alg="RS256", typ=ABSENT, kid="REAL", crit=ABSENT, key_urls=set(), signer="issuer")
@example(alg="RS256", typ="at+jwt", kid=ABSENT, crit=ABSENT, key_urls=set(), signer="issuer")
@example(
    alg="HS256", typ=ABSENT, kid="REAL", crit=ABSENT, key_urls=set(), signer="hs256_public_key"
)
@example(alg="none", typ=ABSENT, kid=ABSENT, crit=ABSENT, key_urls=set(), signer="empty")
@example(
    alg="RS256", typ=ABSENT, kid=ABSENT, crit=ABSENT, key_urls={"jku", "jwk"}, signer="attacker"
)
def test_tokens_are_accepted_only_when_genuine(
    issuer, wsauth_settings, attacker, alg, typ, kid, crit, key_urls, signer
):
    real_kid = issuer.default_kid
    header: dict[str, Any] = {"alg": alg}
    for name, value in (("typ", typ), ("kid", kid), ("crit", crit)):
        if value is not ABSENT:
            header[name] = (
                real_kid if value == "REAL" else [real_kid] if value == ["REAL"] else value
            )
    attacker_jwk = public_jwk(
        ATTACKER_KEY, header.get("kid") if isinstance(header.get("kid"), str) else None
    )
    for name in key_urls:
        header[name] = {
            "jku": attacker.url + "/jwks.json",
            "x5u": attacker.url + "/cert.pem",
            "jwk": attacker_jwk,
            "x5c": [base64.b64encode(b"not a certificate").decode()],
        }[name]
    private = issuer.keys[real_kid][0]
    sign = {
        "issuer": lambda data: rs256(private, data),
        "attacker": lambda data: rs256(ATTACKER_KEY, data),
        "hs256_public_key": lambda data: hmac.new(
            public_pem(private), data, hashlib.sha256
        ).digest(),
        "empty": lambda data: b"",
        "junk": lambda data: hashlib.sha512(data).digest() * 4,
    }[signer]
    token = compact(header, issuer.claims(), sign)

    result = outcome(token)

    typ_value = header.get("typ")
    genuine = (
        signer == "issuer"
        and alg == "RS256"
        and "crit" not in header
        and (
            typ_value is None
            or (
                isinstance(typ_value, str)
                and typ_value.lower().removeprefix("application/") in {"at+jwt", "jwt"}
            )
        )
        and header.get("kid") in (None, real_kid)
    )
    if genuine:
        assert isinstance(result, VerifiedToken), result
        assert result.issuer == issuer.issuer
    else:
        assert isinstance(result, TokenError), header
    assert attacker.requests == [], "a key URL in a token header was fetched"


claim_values = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.text(max_size=10),
    st.lists(st.text(max_size=10), max_size=3),
)


@FUZZ
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "iss": st.one_of(st.just("ISSUER"), claim_values),
            "sub": st.one_of(st.text(max_size=10), claim_values),
            "aud": st.one_of(st.just(AUDIENCE), st.just([AUDIENCE, "x"]), claim_values),
            "exp": st.one_of(st.just("SOON"), claim_values),
            "nbf": st.one_of(st.just("PAST"), claim_values),
            "iat": st.one_of(st.just("PAST"), claim_values),
            "cnf": st.one_of(
                st.sampled_from([{"jkt": "abc"}, {"x5t#S256": "abc"}, {}]), claim_values
            ),
            "typ": st.one_of(
                st.sampled_from(["Bearer", "bearer", "ID", "id", "Logout", "Refresh"]),
                claim_values,
            ),
            "nonce": claim_values,
            "at_hash": claim_values,
            "events": st.just({"http://schemas.openid.net/event/backchannel-logout": {}}),
            "extra": json_values.filter(lambda v: not isinstance(v, float)),
        },
    )
)
def test_claims_of_a_signed_token_are_accepted_or_refused_by_rule(issuer, wsauth_settings, claims):
    now = time.time()
    claims = {
        k: {"ISSUER": issuer.issuer, "SOON": int(now) + 300, "PAST": int(now) - 5}.get(v, v)
        if isinstance(v, str)
        else v
        for k, v in claims.items()
    }
    private = issuer.keys[issuer.default_kid][0]
    token = compact(
        {"alg": "RS256", "kid": issuer.default_kid}, claims, lambda data: rs256(private, data)
    )
    result = outcome(token)
    if isinstance(result, VerifiedToken):
        assert claims["iss"] == issuer.issuer
        assert isinstance(claims["sub"], str) and claims["sub"]
        aud = claims.get("aud")
        assert aud == AUDIENCE or (isinstance(aud, list) and AUDIENCE in aud)
        assert claims["exp"] + 10 > now
        assert "cnf" not in claims or claims["cnf"] == {}
        # Only access tokens: never an ID token's or a logout token's claims or typ.
        typ = claims.get("typ")
        typ = typ.lower() if isinstance(typ, str) else typ
        assert typ not in {"id", "logout", "refresh", "offline"}
        assert "events" not in claims and "at_hash" not in claims
        assert "nonce" not in claims or typ == "bearer"


# -- explicit attacks, and regressions for what fuzzing found --------------------------------------------------


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_null_time_claim_is_an_invalid_token(issuer, wsauth_settings, claim):
    """Found by the fuzzer: ``"exp": null`` tripped an assertion (a server error at the
    handshake) instead of refusing the token."""
    now = int(time.time())
    claims = {"iss": issuer.issuer, "sub": "s", "aud": AUDIENCE, "exp": now + 300, claim: None}
    private = issuer.keys[issuer.default_kid][0]
    token = compact(
        {"alg": "RS256", "kid": issuer.default_kid}, claims, lambda data: rs256(private, data)
    )
    result = outcome(token)
    assert isinstance(result, TokenError) and result.reason == "invalid_claims"


def test_hs256_with_the_public_key_as_secret_is_refused(issuer, wsauth_settings):
    private = issuer.keys[issuer.default_kid][0]
    secrets = [
        public_pem(private),
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        ),
        json.dumps(public_jwk(private, issuer.default_kid)).encode(),
    ]
    for secret in secrets:
        for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
            token = compact(
                {"alg": alg, "kid": issuer.default_kid},
                issuer.claims(),
                lambda data, s=secret, d=digest: hmac.new(s, data, d).digest(),
            )
            result = outcome(token)
            assert isinstance(result, TokenError) and result.reason == "bad_algorithm"


def test_hs256_refused_even_when_misconfigured_as_allowed(settings, issuer, wsauth_settings):
    settings.WSAUTH = {**settings.WSAUTH, "ALGORITHMS": ["RS256", "HS256"]}
    wsauth_conf.reset()
    private = issuer.keys[issuer.default_kid][0]
    token = compact(
        {"alg": "HS256", "kid": issuer.default_kid},
        issuer.claims(),
        lambda data: hmac.new(public_pem(private), data, hashlib.sha256).digest(),
    )
    result = outcome(token)
    assert isinstance(result, TokenError) and result.reason == "key_alg_mismatch"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", [b"", b"x"])
def test_alg_none_is_refused(issuer, wsauth_settings, alg, signature):
    token = compact({"alg": alg}, issuer.claims(), lambda data: signature)
    result = outcome(token)
    assert isinstance(result, TokenError) and result.reason == "bad_algorithm"


def test_key_urls_in_headers_are_never_fetched(issuer, wsauth_settings, attacker):
    assert isinstance(outcome(issuer.token()), VerifiedToken)  # keys are cached now
    fetches = issuer.jwks_fetches
    for kid in (issuer.default_kid, None):
        header: dict[str, Any] = {
            "alg": "RS256",
            "jku": attacker.url + "/jwks.json",
            "x5u": attacker.url + "/cert.pem",
            "jwk": public_jwk(ATTACKER_KEY, kid),
        }
        if kid:
            header["kid"] = kid
        token = compact(header, issuer.claims(), lambda data: rs256(ATTACKER_KEY, data))
        result = outcome(token)
        assert isinstance(result, TokenError) and result.reason == "bad_signature"
    assert attacker.requests == []
    assert issuer.jwks_fetches == fetches  # not even the issuer's own key set again


@pytest.mark.parametrize("part", ["header", "payload"])
def test_deeply_nested_json_is_refused(issuer, wsauth_settings, part):
    # Found by fuzzing: json.loads raised RecursionError past the rules, before any
    # signature check (an unauthenticated handshake got HTTP 500 and a traceback).
    nested = b64(b"[" * 5000)
    real = issuer.token().split(".")
    token = f"{nested}.{real[1]}.{real[2]}" if part == "header" else f"{real[0]}.{nested}.{real[2]}"
    assert len(token) < get_conf().max_token_size
    result = outcome(token)
    assert isinstance(result, TokenError) and result.reason == "malformed"


@pytest.mark.parametrize(
    ("claim", "value"),
    [("exp", float("inf")), ("exp", float("nan")), ("exp", 10**400), ("nbf", 10**400)],
    ids=["exp-inf", "exp-nan", "exp-huge-int", "nbf-huge-int"],
)
def test_non_finite_time_claims_are_refused(issuer, wsauth_settings, claim, value):
    # Found by fuzzing: float()/int() raised OverflowError or ValueError past the rules.
    private = issuer.keys[issuer.default_kid][0]
    token = compact(
        {"alg": "RS256", "kid": issuer.default_kid},
        issuer.claims(**{claim: value}),
        lambda data: rs256(private, data),
    )
    result = outcome(token)
    assert isinstance(result, TokenError)
