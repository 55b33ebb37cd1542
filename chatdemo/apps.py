from django.apps import AppConfig


class ChatDemoConfig(AppConfig):
    name = "chatdemo"
    verbose_name = "Chat demo"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system check)
