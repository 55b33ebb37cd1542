"""Pluggable handshake authenticators, chosen by ``WSAUTH["AUTHENTICATORS"]``.

Like Django REST framework's authentication classes: each looks at the handshake and
returns an ``Identity``, ``None`` ("not mine"), or raises ``Refused``; the first that
claims the handshake decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from .conf import Conf
from .errors import Refused, Unavailable
from .logutil import mask
from .tickets import TicketStoreError, redeem
from .tokens import TokenError, shared_claims, validate_access_token
from .users import UserRefused, user_by_pk, user_for_claims

__all__ = [
    "BaseAuthenticator",
    "Handshake",
    "Identity",
    "QueryTokenAuthenticator",
    "Refused",
    "SubprotocolAuthenticator",
    "TicketAuthenticator",
]


@dataclass(slots=True)
class Identity:
    user: Any
    method: str
    claims: dict[str, Any] | None
    expires_at: float | None
    extra: dict[str, Any] = field(default_factory=dict)
    #: When the credential was issued, for revocation; None: the token's ``iat``.
    issued_at: float | None = None

    @property
    def revocable(self) -> dict[str, Any] | None:
        """The claims revocation looks at: the token's, or a session ticket's OpenID
        session (``iss``, ``sub``, ``sid``)."""
        return self.claims if self.claims is not None else self.extra.get("session")


@dataclass(slots=True)
class Handshake:
    """What a handshake offers, parsed once: subprotocols, token, query, origin."""

    app_protocols: list[str]
    token_protocol: str | None
    token: str | None
    query: dict[str, list[str]]
    origin: str | None
    address: str = "-"  # the client's (``admission.client_address``), set by the middleware

    @classmethod
    def parse(cls, scope: Mapping[str, Any], conf: Conf) -> Handshake:
        prefix = conf.subprotocol_prefix
        app: list[str] = []
        tokens: list[str] = []
        for raw in scope.get("subprotocols") or ():
            if not isinstance(raw, str):
                raise Refused("bad_subprotocol", "subprotocol is not text")
            value = raw.strip()
            if not value:
                continue
            (tokens if value.startswith(prefix) else app).append(value)
        if len(tokens) > 1:
            raise Refused("ambiguous_credentials", "more than one token subprotocol")
        query_string = scope.get("query_string") or b""
        query: dict[str, list[str]] = {}
        if query_string:
            try:
                query = parse_qs(query_string.decode("ascii"), max_num_fields=20)
            except (UnicodeDecodeError, ValueError) as exc:
                raise Refused("bad_query", "malformed query string") from exc
        origins = [v for k, v in scope.get("headers") or () if k.lower() == b"origin"]
        if len(origins) > 1:
            raise Refused("bad_origin", "more than one Origin header")
        origin = origins[0].decode("latin-1") if origins else None
        token_protocol = tokens[0] if tokens else None
        return cls(
            app_protocols=app,
            token_protocol=token_protocol,
            token=token_protocol[len(prefix) :] if token_protocol else None,
            query=query,
            origin=origin,
        )


class BaseAuthenticator:
    async def authenticate(self, handshake: Handshake, conf: Conf) -> Identity | None:
        raise NotImplementedError


class SubprotocolAuthenticator(BaseAuthenticator):
    """``Sec-WebSocket-Protocol: authorization_bearer_<access token>``."""

    async def authenticate(self, handshake: Handshake, conf: Conf) -> Identity | None:
        token = handshake.token
        if token is None:
            return None
        try:
            verified = await validate_access_token(token, conf=conf)
            user = await user_for_claims(verified.claims)
        except (TokenError, UserRefused) as exc:
            raise Refused(exc.reason, exc.detail, credential=token) from exc
        return Identity(
            user=user,
            method="subprotocol",
            claims=verified.claims,
            expires_at=verified.expires_at,
        )


class TicketAuthenticator(BaseAuthenticator):
    """``?ticket=<one-time ticket>`` from ``POST /wsauth/ticket/``."""

    argument = "ticket"  # the query argument that carries it

    async def authenticate(self, handshake: Handshake, conf: Conf) -> Identity | None:
        values = handshake.query.get(self.argument)
        if not values:
            return None
        if len(values) != 1:
            raise Refused("ambiguous_credentials", "more than one ticket")
        ticket = values[0]
        try:
            record = await redeem(ticket)
        except TicketStoreError as exc:
            raise Unavailable("ticket_store_unavailable", str(exc), credential=ticket) from exc
        if record is None:
            raise Refused("invalid_ticket", "unknown, used or expired ticket", credential=ticket)
        bound = record.get("origin")
        if bound and bound != handshake.origin:
            raise Refused(
                "ticket_origin_mismatch",
                f"ticket was issued to {bound!r}, handshake comes from {handshake.origin!r}",
                credential=ticket,
            )
        try:
            user = await user_by_pk(record["uid"])
        except UserRefused as exc:
            raise Refused(exc.reason, exc.detail, credential=ticket) from exc
        claims = record.get("claims")
        via = record.get("via")
        extra = {"via": via, "ticket": mask(ticket), "dpop_jkt": record.get("dpop_jkt")}
        issued_at = None if claims else record.get("issued_at")
        if via == "session":  # judged by the session's login, not the ticket
            issued_at = record.get("login_at")
            extra["session"] = record.get("session")
        return Identity(
            user=user,
            method="ticket",
            claims=shared_claims(claims, conf) if isinstance(claims, dict) else claims,
            expires_at=record.get("credential_expires_at"),
            extra=extra,
            issued_at=issued_at,
        )


class QueryTokenAuthenticator(BaseAuthenticator):
    """``?access_token=<token>``, only with ``ALLOW_QUERY_TOKEN``: URLs end up in proxy
    logs and browser history, so tickets (single use, seconds long) are the better way
    to keep a credential out of headers. Daphne's WebSocket access log omits the query."""

    argument = "access_token"  # the query argument that carries it

    async def authenticate(self, handshake: Handshake, conf: Conf) -> Identity | None:
        values = handshake.query.get(self.argument)
        if not values:
            return None
        token = values[0]
        if not conf.allow_query_token:
            raise Refused(
                "query_token_disabled",
                "?access_token= is off (WSAUTH['ALLOW_QUERY_TOKEN']); use a ticket",
                credential=token,
            )
        if len(values) != 1:
            raise Refused("ambiguous_credentials", "more than one access_token", credential=token)
        try:
            verified = await validate_access_token(token, conf=conf)
            user = await user_for_claims(verified.claims)
        except (TokenError, UserRefused) as exc:
            raise Refused(exc.reason, exc.detail, credential=token) from exc
        return Identity(
            user=user, method="query", claims=verified.claims, expires_at=verified.expires_at
        )
