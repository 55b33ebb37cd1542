from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest

from .models import AllowedOrigin, OIDCIdentity
from .origins import OriginError, parse_origin
from .revoke import disconnect_user


class AllowedOriginForm(forms.ModelForm):
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
class AllowedOriginAdmin(admin.ModelAdmin):
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
class OIDCIdentityAdmin(admin.ModelAdmin):
    list_display = ("subject", "issuer", "user", "created")
    search_fields = ("subject", "user__username")
    raw_id_fields = ("user",)


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
