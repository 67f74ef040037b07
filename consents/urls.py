"""Every URL of the consents app: the public pages and the subject's consent pages (`web_urls`), the policy
pages and the update banner's endpoints (`policies.urls`) and the consent API for other services (`api_urls`)."""

from django.urls import include, path

urlpatterns = [
    path("api/v1/", include("consents.api.urls")),
    path("", include("policies.urls")),
    path("", include("consents.web_urls")),
]
