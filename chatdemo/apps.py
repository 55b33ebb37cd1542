from django.apps import AppConfig


class ChatDemoConfig(AppConfig):
    name = "chatdemo"
    verbose_name = "Chat demo"

    def ready(self) -> None:
        from django.conf import settings

        from . import checks  # noqa: F401  (registers the system check)

        if getattr(settings, "DEMO_AUDIT", False):
            from . import audit

            audit.connect()
