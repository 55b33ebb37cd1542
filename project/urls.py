from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path

from wsauth.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    # Prometheus, at django-prometheus's path; restrict it to your Prometheus at the proxy.
    path("metrics", metrics_view, name="prometheus-django-metrics"),
    path("wsauth/", include("wsauth.urls")),
    path("oidc/", include("mozilla_django_oidc.urls")),
    path("", include("chatdemo.urls")),
]
urlpatterns += staticfiles_urlpatterns()  # wsauth.js for the demo pages (DEBUG only)

if settings.DEMO_EMBEDDED_PROVIDER:
    urlpatterns += [
        path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
        # The provider's own login page (the authorization endpoint sends people here).
        path("accounts/", include("django.contrib.auth.urls")),
    ]
