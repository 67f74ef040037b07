"""The consent API, under /api/v1/ (see `consents.api.views` and docs/consent-api.md)."""

from django.urls import path, re_path

from . import views as api

app_name = "consent_api"

urlpatterns = [
    path("subjects/<str:subject_ref>/purposes/<str:code>", api.purpose_check, name="purpose-check"),
    path("consent-checks", api.consent_checks, name="consent-checks"),
    path("consent-events", api.consent_events, name="consent-events"),
    path("openapi.json", api.openapi_json, name="openapi"),
    re_path(r"^(?P<path>.*)$", api.not_found),
]
