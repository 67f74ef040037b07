"""The rights pages (namespace `requests`): the signed-in subject's under my/requests/, the public intake
and the links the e-mails carry under requests/. Included at the site root by privacyops/urls.py."""

from django.urls import path

from privacyops import converters  # noqa: F401  (registers <reference:...> and <token:...>)

from . import views

app_name = "requests"

urlpatterns = [
    path("my/requests/", views.request_list, name="list"),
    path("my/requests/new", views.request_new, name="new"),
    path("my/requests/download/<token:token>", views.download, name="download"),
    path("my/requests/<reference:reference>", views.request_detail, name="detail"),
    path("my/requests/<reference:reference>/withdraw", views.request_withdraw, name="withdraw"),
    path("my/requests/<reference:reference>/package", views.package_download, name="package"),
    path("requests/new", views.public_new, name="public_new"),
    path("requests/child-report", views.child_report, name="child_report"),
    path("requests/verify/<token:token>", views.verify, name="verify"),
    path("requests/status/<token:token>", views.status, name="status"),
    path("requests/status/<token:token>/download", views.status_download, name="status_download"),
    path("requests/download/<token:token>", views.public_download, name="public_download"),
]
