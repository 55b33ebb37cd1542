from typing import Any

from django.apps import AppConfig


class WSAuthConfig(AppConfig):
    name = "wsauth"
    verbose_name = "WebSocket authentication"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete, post_save

        from . import checks  # noqa: F401  (registers the system checks)
        from .users import forget_user

        def _forget(sender: Any, instance: Any, **kwargs: Any) -> None:
            forget_user(instance.pk)

        user_model = get_user_model()
        post_save.connect(_forget, sender=user_model, dispatch_uid="wsauth_forget_user")
        post_delete.connect(_forget, sender=user_model, dispatch_uid="wsauth_forget_user_del")
