"""OpenID Connect Back-Channel Logout 1.0: the provider tells us a session ended.

The logout token is validated as section 2.6 of the spec requires, then the matching
sockets are closed through ``wsauth.revoke`` and the session's tokens refused from then on.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

from asgiref.sync import sync_to_async

from . import revoke, sessions, store
from .conf import Conf, get_conf
from .tokens import (
    TokenError,
    audience_matches,
    check_header,
    finite_number,
    parse,
    verify_signature,
)

EVENT = "http://schemas.openid.net/event/backchannel-logout"
_LOGOUT_TYPES: frozenset[str | None] = frozenset({"logout+jwt", "jwt", None})
#: Seconds a spent ``jti`` outlives its token's window: rounding, and our processes' clocks.
_REPLAY_MARGIN = 5.0


async def validate_logout_token(token: str, conf: Conf | None = None) -> dict[str, Any]:
    """The claims of a valid logout token not applied before, or ``TokenError``."""
    conf = conf or get_conf()
    header, claims, signing_input, signature = parse(token, conf)
    alg, kid = check_header(header, conf, types=_LOGOUT_TYPES)
    await verify_signature(alg, kid, signing_input, signature, conf)
    now = time.time()
    if claims.get("iss") != conf.issuer:
        raise TokenError("wrong_issuer", f"issuer {claims.get('iss')!r} is not {conf.issuer!r}")
    aud = claims.get("aud")
    if not audience_matches(aud, conf.logout_audience):
        raise TokenError("wrong_audience", f"audience {aud!r} is not this client")
    iat = finite_number(claims.get("iat"))
    if iat is None:
        raise TokenError("missing_claim", "logout token has no numeric 'iat'")
    if iat > now + conf.leeway or iat < now - conf.logout_token_max_age - conf.leeway:
        raise TokenError("stale", "logout token 'iat' is outside the accepted window")
    exp = claims.get("exp")
    if exp is not None and ((exp := finite_number(exp)) is None or now >= exp + conf.leeway):
        raise TokenError("expired", "logout token has expired")
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(EVENT), dict):
        raise TokenError("invalid_claims", f"'events' must hold {EVENT!r} with an object")
    sid, sub = claims.get("sid"), claims.get("sub")
    if not (isinstance(sid, str) and sid) and not (isinstance(sub, str) and sub):
        raise TokenError("missing_claim", "logout token has neither 'sid' nor 'sub'")
    if "nonce" in claims:
        raise TokenError("invalid_claims", "a logout token must not carry 'nonce'")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise TokenError("missing_claim", "logout token has no 'jti'")
    markers = store.get("revocation")
    key = markers.make_key(_applied_key(claims))
    try:
        applied = (await markers.get_many([key])).get(key)
    except Exception as exc:
        raise TokenError("store_unavailable", f"cannot check replay: {exc}") from exc
    if applied is not None:
        raise TokenError("replayed", "this logout token was used before")
    return claims


def _applied_key(claims: dict[str, Any]) -> str:
    digest = hashlib.sha256(f"{claims['iss']}\0{claims['jti']}".encode()).hexdigest()
    return f"wsauth:logout-applied:{digest}"


async def logout(claims: dict[str, Any], conf: Conf | None = None) -> None:
    """Close the session's sockets (or, without ``sid``, the subject's) and end the Django
    sessions it logged in (``wsauth.sessions``: by ``sid``, or all of the subject's user's,
    as the spec asks of an RP, and as Keycloak's and Spring's adapters do), then spend the
    token's ``jti``. Spent only once applied: a logout whose broadcast failed (503) works
    when the provider retries it. Two deliveries at once may both apply; that is
    harmless, as both revoke the same sockets at the same moment."""
    conf = conf or get_conf()
    iss, sid, sub = claims["iss"], claims.get("sid"), claims.get("sub")
    if isinstance(sid, str) and sid:
        await revoke.adisconnect_session(sid, iss, reason="back-channel logout")
        await sync_to_async(sessions.end_sessions)(issuer=iss, sid=sid)
    else:
        await revoke.adisconnect_subject(str(sub), iss, reason="back-channel logout")
        user = await sync_to_async(revoke._user_for_subject)(iss, str(sub))
        await sync_to_async(sessions.end_sessions)(issuer=iss, subject=str(sub), user=user)
    # Until the token falls out of the accepted window (validate_logout_token's iat check).
    iat = finite_number(claims.get("iat"))
    last_accepted = (time.time() if iat is None else iat) + conf.logout_token_max_age + conf.leeway
    ttl = max(last_accepted - time.time(), 0) + _REPLAY_MARGIN
    markers = store.get("revocation")
    await markers.set(markers.make_key(_applied_key(claims)), "1", math.ceil(ttl))
