"""The demo's pages: room list, chat room, echo page, and the page's access token."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

RP_LOGIN = "/oidc/authenticate/"
logger = logging.getLogger("chatdemo")

#: The demo's pages run no inline script or style (their JavaScript and CSS are static
#: files), so they can forbid both; 'self' covers the same origin's ws:// and wss://.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def _strict_csp(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response

    return wrapped


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    return {
        "embedded_provider": settings.DEMO_EMBEDDED_PROVIDER,
        "issuer": settings.OIDC_ISSUER,
        "login_available": bool(settings.OIDC_OP_AUTHORIZATION_ENDPOINT),
        **extra,
    }


@_strict_csp
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "chatdemo/index.html", _context(request, rooms=["lobby", "random"]))


@_strict_csp
@login_required(login_url=RP_LOGIN)
def room(request: HttpRequest, room: str) -> HttpResponse:
    return render(request, "chatdemo/room.html", _context(request, room=room))


@_strict_csp
@login_required(login_url=RP_LOGIN)
def echo(request: HttpRequest) -> HttpResponse:
    return render(request, "chatdemo/echo.html", _context(request))


def _unverified_exp(token: str) -> int | None:
    # Only for showing the remaining lifetime: the server verifies the token on use.
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return int(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def _renew(request: HttpRequest) -> str | None:
    """Trade the session's refresh token for a fresh access token at the provider."""
    refresh_token = request.session.get("oidc_refresh_token")
    if not refresh_token or not settings.OIDC_OP_TOKEN_ENDPOINT:
        return None
    try:
        response = requests.post(
            settings.OIDC_OP_TOKEN_ENDPOINT,
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": settings.OIDC_RP_CLIENT_ID,
                "client_secret": settings.OIDC_RP_CLIENT_SECRET,
            },
            timeout=settings.OIDC_TIMEOUT,
        )
        response.raise_for_status()
        token_info = response.json()
    except (requests.RequestException, ValueError):
        logger.warning("demo: renewing the access token failed")
        return None
    request.session["oidc_access_token"] = token_info["access_token"]
    if token_info.get("refresh_token"):
        request.session["oidc_refresh_token"] = token_info["refresh_token"]
    return str(token_info["access_token"])


@never_cache
@require_POST
def access_token(request: HttpRequest) -> HttpResponse:
    """The session's access token, renewed when little life is left, for the subprotocol
    method and for in-band refreshes. POST with CSRF, same origin: a page of another site
    can neither trigger nor read it. The ticket method keeps the token out of the page."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "not_authenticated"}, status=401)
    token = request.session.get("oidc_access_token")
    if not token:
        return JsonResponse({"error": "no_access_token", "detail": "log in again"}, status=409)
    exp = _unverified_exp(token)
    margin = settings.WSAUTH.get("EXPIRING_LEAD", 60) + 5
    if exp is None or exp - time.time() < margin:
        token = _renew(request) or token
        exp = _unverified_exp(token)
    return JsonResponse({"access_token": token, "expires_at": exp})
