"""Every URL of the consents app: the public pages and the subject's consent pages (`web_urls`), the policy
update banner's endpoints (`policy_urls`) and the consent API for other services (`api_urls`)."""

from django.urls import include, path

urlpatterns = [
    path("api/v1/", include("consents.api_urls")),
    path("", include("consents.policy_urls")),
    path("", include("consents.web_urls")),
]
