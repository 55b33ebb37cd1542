from django.urls import path

from . import views

app_name = "wsauth"

urlpatterns = [
    path("ticket/", views.ticket, name="ticket"),
    path("backchannel-logout/", views.backchannel_logout, name="backchannel-logout"),
]
