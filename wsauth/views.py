"""``POST /wsauth/ticket/``: trade a session or a bearer token for a one-time ticket."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from . import backchannel, dpop, revoke, sessions, tickets
from .conf import get_conf
from .tokens import TokenError, VerifiedToken, validate_access_token
from .users import UserRefused, user_for_claims

logger = logging.getLogger("wsauth")


def _error(status: int, error: str, detail: str, **headers: str) -> JsonResponse:
    response = JsonResponse({"error": error, "detail": detail}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _post_only() -> JsonResponse:
    return _error(405, "method_not_allowed", "use POST", Allow="POST")


def _csrf_failure(request: HttpRequest) -> HttpResponse | None:
    # Session authentication is ambient: enforce CSRF as Django's middleware would (DRF
    # does the same). Bearer tokens are not ambient and need no CSRF token.
    def get_response(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    check = CsrfViewMiddleware(get_response)
    check.process_request(request)
    return check.process_view(request, lambda r: HttpResponse(), (), {})


async def _check_dpop(request: HttpRequest, token: str, verified: VerifiedToken, conf: Any) -> str:
    proofs = request.headers.get("DPoP")
    if not proofs or "," in proofs:
        raise dpop.ProofError("send exactly one DPoP proof header")
    # htu: the request URL without query and fragment (RFC 9449 section 4.3); behind a
    # proxy, Django's SECURE_PROXY_SSL_HEADER / USE_X_FORWARDED_HOST make it the public one.
    url = request.build_absolute_uri(request.path)
    return await dpop.verify_proof(
        proofs.strip(),
        method=request.method or "",
        url=url,
        access_token=token,
        jkt=str(verified.dpop_jkt),
        conf=conf,
    )


@csrf_exempt
@never_cache
async def ticket(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _post_only()
    conf = get_conf()
    authorization = request.headers.get("Authorization")
    claims: dict[str, Any] | None = None
    dpop_jkt: str | None = None
    login: sessions.Login | None = None
    if authorization:
        scheme, _, credential = authorization.partition(" ")
        scheme, credential = scheme.lower(), credential.strip()
        if scheme not in ("bearer", "dpop") or not credential:
            return _error(
                401,
                "invalid_request",
                "use 'Authorization: Bearer <access token>' or 'DPoP <access token>'",
                WWW_Authenticate="Bearer, DPoP",
            )
        try:
            verified = await validate_access_token(credential, conf=conf, binding=scheme)
            if scheme == "dpop":
                dpop_jkt = await _check_dpop(request, credential, verified, conf)
            user = await user_for_claims(verified.claims)
            await revoke.check(user, verified.claims, None)
        except dpop.ProofError as exc:
            logger.warning("wsauth: ticket refused: bad DPoP proof: %s", exc.detail)
            response = _error(
                401,
                exc.error,
                exc.detail,
                WWW_Authenticate=f'DPoP error="{exc.error}", algs="ES256 EdDSA RS256 PS256"',
            )
            if exc.error == "use_dpop_nonce":
                response["DPoP-Nonce"] = dpop.current_nonce(conf)
            return response
        except revoke.Revoked as exc:
            if exc.reason == "revocation_store_unavailable":
                logger.error("wsauth: ticket refused: %s", exc.detail)
                return _error(503, "unavailable", "the shared store is unavailable; retry shortly")
            logger.warning("wsauth: ticket refused reason=%s: %s", exc.reason, exc.detail)
            return _error(401, "invalid_token", exc.detail, WWW_Authenticate="Bearer")
        except (TokenError, UserRefused) as exc:
            logger.warning("wsauth: ticket refused reason=%s: %s", exc.reason, exc.detail)
            return _error(
                401,
                "invalid_token",
                exc.detail,
                WWW_Authenticate=(
                    f'{"DPoP" if scheme == "dpop" else "Bearer"} error="invalid_token", '
                    f'error_description="{exc.reason}"'
                ),
            )
        claims = verified.claims
        credential_expires_at: float | None = verified.expires_at
        via = scheme
    else:
        user = await request.auser()
        if not user.is_authenticated:
            return _error(401, "not_authenticated", "log in, or send a bearer token")
        failure = await sync_to_async(_csrf_failure)(request)
        if failure is not None:
            return _error(403, "csrf_failed", "a valid CSRF token is required with a session")
        try:
            login = await sessions.check(request, user)
        except revoke.Revoked as exc:
            if exc.reason == "revocation_store_unavailable":
                logger.error("wsauth: ticket refused: %s", exc.detail)
                return _error(503, "unavailable", "the shared store is unavailable; retry shortly")
            # Revoked for good: end it, so the cookie (stolen, perhaps) opens nothing more.
            logger.warning(
                "wsauth: ticket refused, session ended reason=%s: %s", exc.reason, exc.detail
            )
            await sessions.aend_current(request)
            return _error(401, "not_authenticated", "the session was revoked; log in again")
        credential_expires_at = (await request.session.aget_expiry_date()).timestamp()
        via = "session"

    origin = request.headers.get("Origin") if conf.ticket_bind_origin else None
    data = {
        "uid": user.pk,
        "via": via,
        "claims": claims,
        "credential_expires_at": credential_expires_at,
        "origin": origin,
        "dpop_jkt": dpop_jkt,
    }
    if login is not None:  # revocations are judged by the login, not by this ticket
        data["login_at"] = login.at
        data["session"] = login.claims()
    try:
        value, ttl = await tickets.issue(data)
    except tickets.TicketStoreError as exc:
        logger.error("wsauth: ticket store unavailable: %s", exc)
        return _error(503, "unavailable", "the ticket store is unavailable; retry shortly")
    response = JsonResponse({"ticket": value, "expires_in": ttl})
    if dpop_jkt is not None and conf.dpop_require_nonce:
        response["DPoP-Nonce"] = dpop.current_nonce(conf)
    return response


@csrf_exempt
@never_cache
async def backchannel_logout(request: HttpRequest) -> HttpResponse:
    """OpenID Connect Back-Channel Logout: ``logout_token`` in a form POST."""
    if request.method != "POST":
        return _post_only()
    token = request.POST.get("logout_token")
    if not token:
        return _error(400, "invalid_request", "the form field 'logout_token' is required")
    try:
        claims = await backchannel.validate_logout_token(token)
    except TokenError as exc:
        logger.warning("wsauth: logout token refused reason=%s: %s", exc.reason, exc.detail)
        if exc.reason == "store_unavailable":
            return _error(503, "temporarily_unavailable", "retry shortly")
        return _error(400, "invalid_request", exc.detail)
    try:
        await backchannel.logout(claims)
    except Exception as exc:  # the store or the channel layer is down: ask for a retry
        logger.error("wsauth: back-channel logout failed: %s", exc)
        return _error(503, "temporarily_unavailable", "retry shortly")
    return HttpResponse(status=200)
