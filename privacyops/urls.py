from django.contrib import admin
from django.urls import include, path

from privacyops.health import healthz, readyz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("account/", include("accounts.urls", namespace="accounts")),
    path("", include("consents.urls")),
    path("", include("requests.urls")),
]
