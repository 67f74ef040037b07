"""Section I of the policy map: what is collected, from where, and that the subject is told so. Each test
collects the data through the real path where the system has one (sign-up, sign-in, the cookie banner) or
through factories for the chat service's own tables (the chat service has no pages here), then reads the
subject's access package and the record of processing."""

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session

from accounts.models import User
from inventory.ropa import record_of_processing
from privacyops.privacy import registry
from tests.factories.accounts import UserFactory
from tests.factories.chat import AccessLogFactory
from tests.inventory.pm import package_of

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("seeded")]

SAME_ORIGIN = {"HTTP_ORIGIN": "http://testserver"}
PASSWORD = "a long and unusual passphrase"


def _category(code: str) -> dict:
    return next(c for c in record_of_processing()["data_categories"] if c["code"] == code)


def _field(table: dict, name: str) -> dict:
    return next(f for f in table["fields"] if f["name"] == name)


# --- PM-I-1: account information, provided by the user ---------------------------------------------------------


def test_pm_i_1_the_name_and_email_given_at_sign_up_are_held_as_account_information_and_shown_back(client):
    response = client.post(
        "/signup",
        {
            "name": "Ada Example",
            "email": "ada@example.org",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "date_of_birth": "1990-05-17",
            "country": "DE",
            "region": "",
            "accept_policy": "on",
        },
    )
    assert response.status_code == 302, response.content
    user = User.objects.get(email="ada@example.org")
    assert user.name == "Ada Example"

    package = package_of(user)
    table = package.table("accounts.User")
    assert table["category"] == "account-information"
    for name in ("name", "email"):
        field = _field(table, name)
        assert field["personal"] and field["category"] == "account-information" and field["meaning"], name
    [row] = package.rows("accounts.User")
    assert (row["name"], row["email"]) == ("Ada Example", "ada@example.org")
    # The subject is told where account information comes from: from them, or from the network they sign in with.
    assert set(package.category("account-information")["sources"]) == {"provided-by-user", "from-third-parties"}
    assert "Provided by the user" in package.index


# --- PM-I-5: log data, collected automatically ------------------------------------------------------------------


LOG_FIELDS = ("ip_address", "device_brand", "device_model", "device_id", "browser", "user_agent", "path", "created")


def test_pm_i_5_each_kind_of_log_data_the_policy_names_is_held_declared_and_given_back_to_the_subject():
    user = UserFactory(country="DE")
    log = AccessLogFactory(
        user=user,
        ip_address="203.0.113.77",
        device_brand="Google",
        device_model="Pixel 8",
        device_id="device-9f3c2a1b",
        browser="Chrome Mobile 124",
        path="/chat/",
    )
    AccessLogFactory(user=UserFactory())  # someone else's request stays out

    package = package_of(user)
    table = package.table("chat.AccessLog")
    assert table["category"] == "log-data" and table["rows"] == 1
    for name in LOG_FIELDS:  # device brand, model and ID; IP; browser; date and time; what was requested
        field = _field(table, name)
        assert field["personal"] and field["category"] == "log-data" and field["meaning"], name
    [row] = package.rows("chat.AccessLog")
    assert (row["ip_address"], row["device_brand"], row["device_model"], row["device_id"], row["browser"], row["path"]) == (
        "203.0.113.77",
        "Google",
        "Pixel 8",
        "device-9f3c2a1b",
        "Chrome Mobile 124",
        "/chat/",
    )
    assert row["id"] == log.pk


def test_pm_i_5_log_data_is_told_as_collected_automatically_for_the_policys_purposes():
    user = UserFactory(country="DE")
    AccessLogFactory(user=user)
    package = package_of(user)
    assert package.category("log-data")["sources"] == ["collected-automatically"]
    assert "Collected automatically" in package.index
    using = {p["code"] for p in package.processing["purposes"] if "log-data" in p["categories"]}
    # The policy's purpose table: log data serves the service, security, support and the law, never marketing.
    assert {"provide-service", "fraud-prevention-security", "support-and-improvement", "legal-compliance"} <= using
    assert "marketing" not in using and "model-improvement" not in using


# --- PM-I-7: cookies, collected automatically --------------------------------------------------------------------


def test_pm_i_7_the_session_cookie_of_a_sign_in_is_held_as_cookie_data_in_a_declared_store(client):
    user = UserFactory(password=PASSWORD)
    response = client.post("/signin", {"username": user.email, "password": PASSWORD})
    assert response.status_code == 302
    key = response.cookies[settings.SESSION_COOKIE_NAME].value
    session = Session.objects.get(session_key=key)  # what the cookie's identifier points at
    assert session.get_decoded()["_auth_user_id"] == str(user.pk)

    declaration = registry.get(Session)
    assert declaration.category == "cookies"
    assert {f.category for f in declaration.fields.values()} == {"cookies"}
    # The register knows where cookie data lives (the store kept in step with the registry).
    assert declaration.store_code in _category("cookies")["stores"]

    client.post("/signout")
    assert not Session.objects.filter(session_key=key).exists()


def test_pm_i_7_a_cookie_choice_is_collected_from_the_browser_and_every_cookie_set_is_in_the_inventory(client):
    from consents.models import ConsentEvent, CookieInventory

    response = client.post("/cookies/choice", {"choice": "accept-all", "next": "/"}, **SAME_ORIGIN)
    assert response.status_code == 302
    client.get("/beacon.gif")
    client.get("/cookies?lang=en")
    set_by_the_service = set(client.cookies)
    inventory = set(CookieInventory.objects.values_list("name", flat=True))
    assert set_by_the_service and set_by_the_service <= inventory
    # The preference itself is what the browser sent us, recorded against the random id in the choice cookie.
    assert set(ConsentEvent.objects.filter(method="banner").values_list("purpose__code", flat=True)) == {
        "cookies-functionality",
        "cookies-analytics",
    }


def test_pm_i_7_the_register_holds_cookies_as_collected_automatically_for_the_policys_purposes():
    cookies = _category("cookies")
    assert cookies["sources"] == ["collected-automatically"]
    assert "cookie identifiers" in cookies["example_fields"] and "preferences" in cookies["example_fields"]
    # Section II: the service, security, support and improvement, and the law use cookies; marketing and
    # model improvement do not.
    assert set(cookies["purposes"]) >= {
        "provide-service",
        "fraud-prevention-security",
        "support-and-improvement",
        "legal-compliance",
    }
    assert "marketing" not in cookies["purposes"] and "model-improvement" not in cookies["purposes"]
