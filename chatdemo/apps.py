from django.apps import AppConfig


class ChatDemoConfig(AppConfig):
    name = "chatdemo"
    verbose_name = "Chat demo"
