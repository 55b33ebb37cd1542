"""The demo's pages: room list, chat room, echo page, and the page's access token."""

from __future__ import annotations

import base64
import json
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

RP_LOGIN = "/oidc/authenticate/"


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    return {
        "embedded_provider": settings.DEMO_EMBEDDED_PROVIDER,
        "issuer": settings.OIDC_ISSUER,
        "login_available": bool(settings.OIDC_OP_AUTHORIZATION_ENDPOINT),
        **extra,
    }


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "chatdemo/index.html", _context(request, rooms=["lobby", "random"]))


@login_required(login_url=RP_LOGIN)
def room(request: HttpRequest, room: str) -> HttpResponse:
    return render(request, "chatdemo/room.html", _context(request, room=room))


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


@never_cache
@require_POST
def access_token(request: HttpRequest) -> HttpResponse:
    """The session's access token, for the subprotocol method. POST with CSRF, same
    origin: a page of another site can neither trigger nor read it. The ticket method
    needs none of this and keeps the token out of the browser altogether."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "not_authenticated"}, status=401)
    token = request.session.get("oidc_access_token")
    if not token:
        return JsonResponse({"error": "no_access_token", "detail": "log in again"}, status=409)
    return JsonResponse({"access_token": token, "expires_at": _unverified_exp(token)})
