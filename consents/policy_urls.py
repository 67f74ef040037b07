"""The policy pages and the update banner's endpoint (namespace `policy`)."""

from django.urls import path

from . import policy_views

app_name = "policy"

urlpatterns = [
    path("policy", policy_views.policy_index, name="index"),
    path("policy/<int:pk>/acknowledge", policy_views.policy_acknowledge_view, name="acknowledge"),
    path("policy/<str:label>", policy_views.policy_version, name="version"),
]
