import logging
from typing import Any

from django.apps import AppConfig, apps

logger = logging.getLogger("wsauth")


class WSAuthConfig(AppConfig):
    name = "wsauth"
    verbose_name = "WebSocket authentication"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_logged_in, user_logged_out
        from django.db import transaction
        from django.db.models.signals import post_delete, post_save, pre_save

        from . import checks, sessions  # noqa: F401  (checks registers the system checks)
        from .edge import SERVER_LOGGERS
        from .logutil import filter_server_logs
        from .revoke import sockets_revoked
        from .users import forget_user

        filter_server_logs(SERVER_LOGGERS)  # no credential in any server's own log lines
        user_model = get_user_model()

        def _forget(sender: Any, instance: Any, **kwargs: Any) -> None:
            forget_user(instance.pk)

        def _note_deactivation(sender: Any, instance: Any, **kwargs: Any) -> None:
            # One query, only when an inactive user is saved: was it active until now?
            instance._wsauth_deactivated = (
                instance.pk is not None
                and not getattr(instance, "is_active", True)
                and sender._default_manager.filter(pk=instance.pk, is_active=True).exists()
            )

        def _disconnect_deactivated(sender: Any, instance: Any, **kwargs: Any) -> None:
            if getattr(instance, "_wsauth_deactivated", False):
                instance._wsauth_deactivated = False
                transaction.on_commit(lambda: _disconnect(instance))

        post_save.connect(_forget, sender=user_model, dispatch_uid="wsauth_forget_user")
        post_delete.connect(_forget, sender=user_model, dispatch_uid="wsauth_forget_user_del")
        pre_save.connect(_note_deactivation, sender=user_model, dispatch_uid="wsauth_deact")
        post_save.connect(
            _disconnect_deactivated, sender=user_model, dispatch_uid="wsauth_deact_post"
        )
        user_logged_in.connect(sessions.on_logged_in, dispatch_uid="wsauth_login")
        user_logged_out.connect(sessions.on_logged_out, dispatch_uid="wsauth_logout")
        sockets_revoked.connect(sessions.on_revoked, dispatch_uid="wsauth_revoke_sessions")
        if apps.is_installed("django.contrib.admin"):
            from .admin import add_user_admin_action

            add_user_admin_action()


def _disconnect(user: Any) -> None:
    from .revoke import disconnect_user

    try:
        disconnect_user(user, reason="user deactivated")
    except Exception:  # the deactivation stands; handshakes check is_active anyway
        logger.exception("wsauth: could not disconnect the sockets of deactivated user %s", user.pk)
