"""The policy pages and the update banner's endpoint (namespace `policy`)."""

from django.urls import path

from privacyops import converters  # noqa: F401  (registers <label:...>)

from . import views

app_name = "policy"

urlpatterns = [
    path("policy", views.policy_index, name="index"),
    path("policy/<int:pk>/acknowledge", views.policy_acknowledge_view, name="acknowledge"),
    path("policy/<label:label>", views.policy_version, name="version"),
]
