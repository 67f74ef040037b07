"""The public pages, the cookie banner's endpoints and the signed-in subject's consent pages (namespace `web`)."""

from django.urls import path

from . import views
from .cookies import views as cookie_views

app_name = "web"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("cookies", cookie_views.cookie_settings, name="cookies"),
    path("cookies/choice", cookie_views.cookie_choice, name="cookie-choice"),
    path(".well-known/gpc.json", cookie_views.gpc_json, name="gpc-json"),
    path("beacon.gif", cookie_views.beacon, name="beacon"),
    path("my/consents", views.my_consents, name="my-consents"),
    path("my/consents/<slug:code>", views.my_consent_change, name="my-consent-change"),
    path("my/receipts.json", views.receipts_download, name="receipts"),
    path("my/receipts/<uuid:receipt_id>.json", views.receipt_download, name="receipt"),
    path("signup", views.signup, name="signup"),
    path("signin", views.SigninView.as_view(), name="signin"),
    path("signout", views.SignoutView.as_view(), name="signout"),
]
