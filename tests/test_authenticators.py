"""wsauth.authenticators: the handshake's parsed form, and each authenticator on its own
(claims the handshake, passes, or refuses with a reason), with real keys and tickets."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from wsauth import conf as wsauth_conf
from wsauth import tickets
from wsauth.authenticators import (
    BaseAuthenticator,
    Handshake,
    QueryTokenAuthenticator,
    SubprotocolAuthenticator,
    TicketAuthenticator,
)
from wsauth.conf import get_conf
from wsauth.errors import Refused, Unavailable
from wsauth.testing import TestIssuer

pytestmark = pytest.mark.django_db(transaction=True)
PREFIX = "authorization_bearer_"


@pytest.fixture
def issuer():
    issuer = TestIssuer()
    with issuer.activate():
        yield issuer


def handshake(subprotocols=(), query=b"", origin=None) -> Handshake:
    headers = [(b"origin", origin.encode())] if origin else []
    scope = {"subprotocols": list(subprotocols), "query_string": query, "headers": headers}
    return Handshake.parse(scope, get_conf())


async def refusal(authenticator, hs) -> Refused:
    with pytest.raises(Refused) as info:
        await authenticator.authenticate(hs, get_conf())
    return info.value


def test_parse_splits_token_from_app_protocols(issuer):
    hs = handshake(["chat", " ", f"{PREFIX}abc", "v2"], b"ticket=t&x=1", "https://a.test")
    assert (hs.app_protocols, hs.token_protocol, hs.token) == (
        ["chat", "v2"],
        f"{PREFIX}abc",
        "abc",
    )
    assert hs.query == {"ticket": ["t"], "x": ["1"]}
    assert hs.origin == "https://a.test"


@pytest.mark.parametrize(
    ("scope", "reason"),
    [
        ({"subprotocols": [f"{PREFIX}a", f"{PREFIX}b"]}, "ambiguous_credentials"),
        ({"subprotocols": [b"bytes"]}, "bad_subprotocol"),
        ({"query_string": b"\xff=1"}, "bad_query"),
        ({"query_string": b"&".join(b"a%d=1" % n for n in range(30))}, "bad_query"),
        (
            {"headers": [(b"origin", b"https://a.test"), (b"Origin", b"https://b.test")]},
            "bad_origin",
        ),
    ],
)
def test_parse_refuses(issuer, scope, reason):
    with pytest.raises(Refused) as info:
        Handshake.parse(scope, get_conf())
    assert info.value.reason == reason


async def test_base_authenticator_is_abstract(issuer):
    with pytest.raises(NotImplementedError):
        await BaseAuthenticator().authenticate(handshake(), get_conf())


async def test_each_passes_on_a_handshake_without_its_credential(issuer):
    for cls in (SubprotocolAuthenticator, TicketAuthenticator, QueryTokenAuthenticator):
        assert await cls().authenticate(handshake(["chat"]), get_conf()) is None


async def test_subprotocol_token(issuer):
    identity = await SubprotocolAuthenticator().authenticate(
        handshake(["chat", PREFIX + issuer.token(sub="ann")]), get_conf()
    )
    assert (identity.method, identity.claims["sub"]) == ("subprotocol", "ann")
    assert identity.expires_at == identity.claims["exp"]
    error = await refusal(SubprotocolAuthenticator(), handshake([PREFIX + "garbage"]))
    assert error.reason == "malformed" and error.credential == "garbage"


async def test_subprotocol_token_of_an_unknown_user_with_creation_off():
    issuer = TestIssuer()
    with issuer.activate(CREATE_USERS=False):
        error = await refusal(SubprotocolAuthenticator(), handshake([PREFIX + issuer.token()]))
        assert error.reason == "unknown_user"


async def issued(issuer, **data) -> str:
    user = await get_user_model().objects.acreate(username=f"u-{len(data)}-{id(data)}")
    record = {"uid": user.pk, "via": "bearer", "claims": None, "origin": None, **data}
    ticket, _ = await tickets.issue(record)
    return ticket


async def test_ticket_once(issuer):
    ticket = await issued(issuer, via="session", credential_expires_at=123.0)
    identity = await TicketAuthenticator().authenticate(
        handshake(query=f"ticket={ticket}".encode()), get_conf()
    )
    assert (identity.method, identity.expires_at, identity.extra["via"]) == (
        "ticket",
        123.0,
        "session",
    )
    assert ticket not in identity.extra["ticket"]  # masked
    error = await refusal(TicketAuthenticator(), handshake(query=f"ticket={ticket}".encode()))
    assert error.reason == "invalid_ticket"


async def test_ticket_claims_are_carried(issuer):
    claims = {"iss": issuer.issuer, "sub": "ann", "exp": 2**31}
    ticket = await issued(issuer, claims=claims, dpop_jkt="jkt-1")
    identity = await TicketAuthenticator().authenticate(
        handshake(query=f"ticket={ticket}".encode()), get_conf()
    )
    assert identity.claims == claims and identity.issued_at is None
    assert identity.extra["dpop_jkt"] == "jkt-1"


async def test_two_tickets_are_ambiguous(issuer):
    error = await refusal(TicketAuthenticator(), handshake(query=b"ticket=a&ticket=b"))
    assert error.reason == "ambiguous_credentials"


async def test_ticket_bound_to_another_origin(issuer):
    ticket = await issued(issuer, origin="https://a.test")
    hs = handshake(query=f"ticket={ticket}".encode(), origin="https://evil.test")
    error = await refusal(TicketAuthenticator(), hs)
    assert error.reason == "ticket_origin_mismatch"


async def test_ticket_of_a_deleted_user(issuer):
    ticket = await issued(issuer)
    await get_user_model().objects.all().adelete()
    error = await refusal(TicketAuthenticator(), handshake(query=f"ticket={ticket}".encode()))
    assert error.reason == "unknown_user"


async def test_ticket_store_down_is_unavailable(settings):
    issuer = TestIssuer()
    with issuer.activate():
        settings.CACHES = {
            **settings.CACHES,
            "down": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": "redis://127.0.0.1:1/0",
            },
        }
        settings.WSAUTH = {**settings.WSAUTH, "TICKET_CACHE": "down"}
        wsauth_conf.reset()
        with pytest.raises(Unavailable) as info:
            await TicketAuthenticator().authenticate(
                handshake(query=b"ticket=" + b"a" * 43), get_conf()
            )
        assert info.value.reason == "ticket_store_unavailable"


async def test_query_token_is_off_by_default(issuer):
    error = await refusal(
        QueryTokenAuthenticator(), handshake(query=f"access_token={issuer.token()}".encode())
    )
    assert error.reason == "query_token_disabled"


async def test_query_token_when_allowed():
    issuer = TestIssuer()
    with issuer.activate(ALLOW_QUERY_TOKEN=True):
        identity = await QueryTokenAuthenticator().authenticate(
            handshake(query=f"access_token={issuer.token(sub='q')}".encode()), get_conf()
        )
        assert (identity.method, identity.claims["sub"]) == ("query", "q")
        two = handshake(query=f"access_token={issuer.token()}&access_token=x".encode())
        assert (await refusal(QueryTokenAuthenticator(), two)).reason == "ambiguous_credentials"
        bad = handshake(query=b"access_token=x.y.z")
        assert (await refusal(QueryTokenAuthenticator(), bad)).reason == "malformed"
