from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.views.decorators.http import require_POST

from .admission.places import all_sockets_sync
from .models import AllowedOrigin, LiveSocket, OIDCIdentity
from .origins import OriginError, parse_origin
from .revoke import disconnect_socket, disconnect_user

if TYPE_CHECKING:  # django-stubs' generics: Django's own classes take no parameters
    OriginForm = forms.ModelForm[AllowedOrigin]
    OriginAdmin = admin.ModelAdmin[AllowedOrigin]
    IdentityAdmin = admin.ModelAdmin[OIDCIdentity]
    SocketAdmin = admin.ModelAdmin[LiveSocket]
else:
    OriginForm = forms.ModelForm
    OriginAdmin = IdentityAdmin = SocketAdmin = admin.ModelAdmin


class AllowedOriginForm(OriginForm):
    origin = forms.CharField(
        help_text="scheme://host[:port], e.g. https://chat.example.com or "
        "https://*.example.com for every subdomain.",
    )

    class Meta:
        model = AllowedOrigin
        fields = ("origin", "is_active", "note")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["origin"] = str(self.instance)

    def clean_origin(self) -> str:
        try:
            origin = parse_origin(self.cleaned_data["origin"], allow_wildcard=True)
        except OriginError as exc:
            raise forms.ValidationError(str(exc)) from exc
        inst = self.instance
        inst.scheme, inst.host, inst.port = origin.scheme, origin.host, origin.port
        inst.include_subdomains = origin.wildcard
        return str(origin)


@admin.register(AllowedOrigin)
class AllowedOriginAdmin(OriginAdmin):
    form = AllowedOriginForm
    list_display = ("__str__", "is_active", "note", "updated")
    list_filter = ("is_active", "scheme")
    search_fields = ("host", "note")
    actions = ("enable", "disable")

    @admin.action(description="Enable selected origins")
    def enable(self, request: HttpRequest, queryset: Any) -> None:
        for origin in queryset:
            origin.is_active = True
            origin.save(update_fields=["is_active", "updated"])

    @admin.action(description="Disable selected origins")
    def disable(self, request: HttpRequest, queryset: Any) -> None:
        for origin in queryset:
            origin.is_active = False
            origin.save(update_fields=["is_active", "updated"])


@admin.register(OIDCIdentity)
class OIDCIdentityAdmin(IdentityAdmin):
    list_display = ("subject", "issuer", "user", "created")
    search_fields = ("subject", "user__username")
    raw_id_fields = ("user",)


@admin.register(LiveSocket)
class LiveConnectionsAdmin(SocketAdmin):
    """Who is connected now, on every process: the socket registry (each socket's place,
    renewed by its process's heartbeat), with "disconnect" per socket and per user
    through the revocation broadcast. The registry holds no credential, so none can be
    shown. Listing scans the store's keyspace (SCAN): one page view, not a handshake."""

    per_page = 50

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def may_disconnect(self, request: HttpRequest) -> bool:
        return request.user.has_perm("wsauth.disconnect_livesocket")

    def get_urls(self) -> list[Any]:
        disconnect = self.admin_site.admin_view(require_POST(self.disconnect_view))
        return [
            path("disconnect/", disconnect, name="wsauth_livesocket_disconnect"),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        wanted = request.GET.get("user", "").strip()
        error = None
        try:
            sockets = all_sockets_sync()
        except Exception as exc:  # the store is down: say so, show nothing
            sockets, error = [], f"The socket registry cannot be read: {exc}"
        users = get_user_model()
        if wanted:
            field = users.USERNAME_FIELD
            matching = users._default_manager.filter(**{f"{field}__icontains": wanted})
            pks = {str(pk) for pk in matching.values_list("pk", flat=True)[:1000]}
            sockets = [s for s in sockets if str(s.get("user")) in pks]
        totals = {
            "sockets": len(sockets),
            "users": len({str(s.get("user")) for s in sockets}),
            "processes": len({s.get("process") for s in sockets}),
        }
        sockets.sort(key=_newest, reverse=True)
        page = Paginator(sockets, self.per_page).get_page(request.GET.get("p"))
        shown = {s.get("user") for s in page.object_list} - {None}
        found = users._default_manager.in_bulk(shown)
        by_pk = {str(pk): user for pk, user in found.items()}
        rows = [self._row(s, by_pk.get(str(s.get("user")))) for s in page.object_list]
        context = {
            **self.admin_site.each_context(request),
            "title": "Live connections",
            "opts": self.model._meta,
            "rows": rows,
            "page": page,
            "totals": totals,
            "wanted": wanted,
            "error": error,
            "may_disconnect": self.may_disconnect(request),
            "query": urlencode({"user": wanted}) if wanted else "",
            **(extra_context or {}),
        }
        return TemplateResponse(request, "wsauth/live_connections.html", context)

    def _row(self, socket: dict[str, Any], user: Any) -> dict[str, Any]:
        link = None
        if user is not None:
            meta = user._meta
            try:
                link = reverse(
                    f"{self.admin_site.name}:{meta.app_label}_{meta.model_name}_change",
                    args=[user.pk],
                )
            except NoReverseMatch:
                link = None
        return {
            "id": socket["id"],
            "user_pk": socket.get("user"),
            "user": user.get_username() if user is not None else f"pk={socket.get('user')}",
            "user_link": link,
            "method": socket.get("method"),
            "origin": socket.get("origin") or "—",
            "path": socket.get("path"),
            "process": socket.get("process"),
            "since": _when(socket.get("since")),
            "expires_at": _when(socket.get("expires_at")),
        }

    def disconnect_view(self, request: HttpRequest) -> HttpResponse:
        if not self.may_disconnect(request):
            raise PermissionDenied
        back = reverse(f"{self.admin_site.name}:wsauth_livesocket_changelist")
        query = request.POST.get("query", "")
        if query:
            back += "?" + urlencode({"user": query})
        user_pk = request.POST.get("user", "")
        socket = request.POST.get("socket", "")
        reason = f"disconnected by {request.user} (admin)"
        users = get_user_model()
        user = users._default_manager.filter(pk=user_pk).first() if user_pk else None
        if user is None:
            self.message_user(request, "No such user.", level=messages.ERROR)
            return HttpResponseRedirect(back)
        try:
            if socket:
                disconnect_socket(socket, user.pk, reason=reason)
                done = f"Disconnected socket {socket} of {user.get_username()}."
            else:
                disconnect_user(user, reason=reason)
                done = f"Disconnected every socket of {user.get_username()} (every process)."
        except Exception as exc:  # the channel layer or the store is down: say so
            self.message_user(request, f"Could not disconnect: {exc}", level=messages.ERROR)
            return HttpResponseRedirect(back)
        self.message_user(request, done)
        return HttpResponseRedirect(back)


def _newest(socket: dict[str, Any]) -> tuple[float, str, int]:
    number = socket.get("socket")
    return (
        socket.get("since") or 0,
        str(socket.get("process")),
        number if isinstance(number, int) else 0,
    )


def _when(epoch: Any) -> datetime.datetime | None:
    if not isinstance(epoch, int | float):
        return None
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)


@admin.action(description="Disconnect their WebSockets (every process)")
def disconnect_sockets(modeladmin: Any, request: HttpRequest, queryset: Any) -> None:
    """Close every socket of the selected users with 4403, on every process."""
    count = 0
    for user in queryset:
        try:
            disconnect_user(user, reason=f"disconnected by {request.user}")
        except Exception as exc:  # the channel layer or the store is down: say so
            modeladmin.message_user(
                request, f"could not disconnect {user}: {exc}", level=messages.ERROR
            )
            return
        count += 1
    modeladmin.message_user(request, f"Disconnected the WebSockets of {count} user(s).")


def add_user_admin_action(site: admin.AdminSite = admin.site) -> None:
    """Offer ``disconnect_sockets`` on the registered user admin. Called when the admin
    loads and again from ``AppConfig.ready``, whatever the order of INSTALLED_APPS; a
    project registering its own user admin later can list the action itself."""
    user_admin = site._registry.get(get_user_model())
    if user_admin is not None and disconnect_sockets not in (user_admin.actions or ()):
        user_admin.actions = [*(user_admin.actions or ()), disconnect_sockets]


add_user_admin_action()
