"""Allowed WebSocket origins, the link from an OIDC identity to a Django user, the login
sessions a revocation can end, and the live-connections page's model."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from .origins import Origin, OriginError, parse_origin


class AllowedOriginQuerySet(models.QuerySet["AllowedOrigin"]):
    def active(self) -> AllowedOriginQuerySet:
        return self.filter(is_active=True)


class AllowedOrigin(models.Model):
    """An origin whose pages may open WebSockets (cross-site WebSocket hijacking defence)."""

    scheme = models.CharField(max_length=5, choices=[("https", "https"), ("http", "http")])
    host = models.CharField(max_length=253, help_text=_("Lower-case host name or IP address."))
    port = models.PositiveIntegerField(
        help_text=_("The scheme's default port (443, 80) when the origin names none.")
    )
    include_subdomains = models.BooleanField(
        default=False, help_text=_("'*.' wildcard: any subdomain of the host, not the host itself.")
    )
    is_active = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = AllowedOriginQuerySet.as_manager()

    class Meta:
        ordering = ("scheme", "host", "port")
        constraints = [
            models.UniqueConstraint(
                fields=("scheme", "host", "port", "include_subdomains"),
                name="wsauth_allowedorigin_unique",
            )
        ]
        verbose_name = _("allowed origin")

    def __str__(self) -> str:
        return str(self.as_origin())

    def as_origin(self) -> Origin:
        return Origin(self.scheme, self.host, self.port, self.include_subdomains)

    @classmethod
    def from_string(cls, value: str, **fields: object) -> AllowedOrigin:
        origin = parse_origin(value, allow_wildcard=True)
        return cls(
            scheme=origin.scheme,
            host=origin.host,
            port=origin.port,
            include_subdomains=origin.wildcard,
            **fields,
        )

    def clean(self) -> None:
        try:
            origin = parse_origin(str(self.as_origin()), allow_wildcard=True)
        except OriginError as exc:
            raise ValidationError(str(exc)) from exc
        self.scheme, self.host, self.port = origin.scheme, origin.host, origin.port


class OIDCIdentity(models.Model):
    """One person at one issuer (``iss``, ``sub``) is one Django user, however they log in."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oidc_identities"
    )
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("issuer", "subject"), name="wsauth_identity_unique")
        ]
        verbose_name = _("OIDC identity")
        verbose_name_plural = _("OIDC identities")

    def __str__(self) -> str:
        return f"{self.subject} @ {self.issuer}"


class LiveSocket(models.Model):
    """No table: the admin's "Live connections" page, built on the socket registry of
    every process, hangs on this model (its menu entry and its permissions)."""

    class Meta:
        managed = False
        default_permissions = ("view",)
        permissions = [("disconnect_livesocket", "Can disconnect live WebSockets")]
        verbose_name = _("live connection")
        verbose_name_plural = _("live connections")


class LoginSession(models.Model):
    """A Django session a user logged in to, and the OpenID session (``sid``) behind it:
    the index that lets a back-channel logout end the sessions it names, and a revocation
    refuse tickets to them for good (``wsauth.sessions``)."""

    session_key = models.CharField(max_length=40, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="wsauth_login_sessions"
    )
    issuer = models.CharField(max_length=255, blank=True)
    subject = models.CharField(max_length=255, blank=True)
    sid = models.CharField(max_length=255, blank=True)
    logged_in_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=("issuer", "sid"), name="wsauth_login_sid")]
        verbose_name = _("login session")

    def __str__(self) -> str:
        return f"{self.user_id} since {self.logged_in_at:%Y-%m-%d %H:%M:%S}"
