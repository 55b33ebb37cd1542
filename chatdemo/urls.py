from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("chat/<slug:room>/", views.room, name="room"),
    path("echo/", views.echo, name="echo"),
    path("demo/token/", views.access_token, name="access-token"),
]
