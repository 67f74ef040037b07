"""Account pages (namespace `accounts`, included at "account/"): re-authentication before a sensitive step."""

from django.urls import path

from . import reauth

app_name = "accounts"

urlpatterns = [
    path("reauth", reauth.reauth, name="reauth"),
]
