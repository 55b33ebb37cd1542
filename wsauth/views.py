"""``POST /wsauth/ticket/``: trade a session or a bearer token for a one-time ticket."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from . import tickets
from .conf import get_conf
from .tokens import TokenError, validate_access_token
from .users import UserRefused, user_for_claims

logger = logging.getLogger("wsauth")


def _error(status: int, error: str, detail: str, **headers: str) -> JsonResponse:
    response = JsonResponse({"error": error, "detail": detail}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _csrf_failure(request: HttpRequest) -> HttpResponse | None:
    # Session authentication is ambient: enforce CSRF as Django's middleware would (DRF
    # does the same). Bearer tokens are not ambient and need no CSRF token.
    def get_response(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    check = CsrfViewMiddleware(get_response)
    check.process_request(request)
    return check.process_view(request, lambda r: HttpResponse(), (), {})


@csrf_exempt
@never_cache
async def ticket(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        response = _error(405, "method_not_allowed", "use POST")
        response["Allow"] = "POST"
        return response
    conf = get_conf()
    authorization = request.headers.get("Authorization")
    claims: dict[str, Any] | None = None
    if authorization:
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            return _error(
                401,
                "invalid_request",
                "use 'Authorization: Bearer <access token>'",
                WWW_Authenticate="Bearer",
            )
        try:
            verified = await validate_access_token(credential.strip(), conf=conf)
            user = await user_for_claims(verified.claims)
        except (TokenError, UserRefused) as exc:
            logger.warning("wsauth: ticket refused reason=%s: %s", exc.reason, exc.detail)
            return _error(
                401,
                "invalid_token",
                exc.detail,
                WWW_Authenticate=f'Bearer error="invalid_token", error_description="{exc.reason}"',
            )
        claims = verified.claims
        credential_expires_at: float | None = verified.expires_at
        via = "bearer"
    else:
        user = await request.auser()
        if not user.is_authenticated:
            return _error(401, "not_authenticated", "log in, or send a bearer token")
        failure = await sync_to_async(_csrf_failure)(request)
        if failure is not None:
            return _error(403, "csrf_failed", "a valid CSRF token is required with a session")
        credential_expires_at = (await request.session.aget_expiry_date()).timestamp()
        via = "session"

    origin = request.headers.get("Origin") if conf.ticket_bind_origin else None
    data = {
        "uid": user.pk,
        "via": via,
        "claims": claims,
        "credential_expires_at": credential_expires_at,
        "origin": origin,
    }
    try:
        value, ttl = await tickets.issue(data)
    except tickets.TicketStoreError as exc:
        logger.error("wsauth: ticket store unavailable: %s", exc)
        return _error(503, "unavailable", "the ticket store is unavailable; retry shortly")
    return JsonResponse({"ticket": value, "expires_in": ttl})
