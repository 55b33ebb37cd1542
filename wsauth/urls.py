from django.urls import path

from . import views

app_name = "wsauth"

urlpatterns = [
    path("ticket/", views.ticket, name="ticket"),
]
