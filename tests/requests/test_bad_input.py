"""Issue 16: bad input to the rights pages and the workbench is the form's error or a 404, never a 500.

An address longer than its column passed the public forms (Django's EmailField has no length of its own)
and failed in PostgreSQL; a NUL or a non-number in a URL reached a query. Each test asserts the clear answer
and that nothing was written. tests/privacyops/test_url_parameters.py walks every URL pattern besides.
"""

from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from inventory.models import Jurisdiction
from requests.forms import EMAIL_MAX
from requests.models import RightsRequest
from tests.factories.accounts import UserFactory
from tests.factories.inventory import JurisdictionFactory, staff_in_role
from tests.factories.requests import DeadlineRuleFactory, RightsRequestFactory

pytestmark = pytest.mark.django_db

# 255 characters and a valid address otherwise: one more than the column and RFC 5321 allow.
LONG_EMAIL = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 58 + ".org"


@pytest.fixture
def register():
    default = JurisdictionFactory(code=Jurisdiction.DEFAULT, name="Default", countries=[])
    DeadlineRuleFactory(jurisdiction=default, period_value=30, period_unit="calendar_days")
    return default


def test_the_long_address_is_longer_than_the_column_and_valid_otherwise():
    from django.core.validators import validate_email

    assert len(LONG_EMAIL) == 255 > EMAIL_MAX == RightsRequest._meta.get_field("contact_email").max_length
    validate_email(LONG_EMAIL)  # the form's length is what refuses it, not the address's shape


def test_a_public_request_with_an_address_longer_than_its_column_is_a_form_error(client, register):
    data = {"contact_email": LONG_EMAIL, "jurisdiction": register.pk, "right": "erasure", "details": "Please."}
    response = client.post(reverse("requests:public_new"), data)
    assert response.status_code == 200
    assert "contact_email" in response.context["form"].errors
    assert not RightsRequest.objects.exists()


def test_a_child_report_with_addresses_longer_than_their_column_is_a_form_error(client, register):
    data = {"account_email": LONG_EMAIL, "contact_email": LONG_EMAIL, "details": "She says she is 11."}
    response = client.post(reverse("requests:child_report"), data)
    assert response.status_code == 200
    assert {"account_email", "contact_email"} <= set(response.context["form"].errors)
    assert not RightsRequest.objects.exists()


def test_a_logged_request_with_an_address_longer_than_its_column_is_a_form_error(client, register):
    client.force_login(staff_in_role("DPO"))
    data = {
        "right": "access",
        "channel": "email",
        "received_at": "2026-12-01 10:00",
        "contact_email": LONG_EMAIL,
        "jurisdiction": register.pk,
    }
    response = client.post(reverse("admin:requests_rightsrequest_log"), data)
    assert response.status_code == 200
    assert "contact_email" in response.context["form"].errors
    assert not RightsRequest.objects.exists()


@pytest.mark.parametrize("reference", ["DSR-2026-000001%00", "x" * 10_000, "..%2f..%2f"])
def test_a_malformed_reference_in_the_portal_is_a_404(client, reference):
    subject = UserFactory()
    client.force_login(subject)
    assert client.get(f"/my/requests/{reference}").status_code == 404


@pytest.mark.parametrize("object_id", ["1%00", "abc", "9" * 10_000, "..%2f..%2f", "987654321"])
@pytest.mark.parametrize("screen", ["authority", "personal-data", "rectification", "action/approve", "notice/1/done"])
def test_a_malformed_request_id_in_a_workbench_screen_is_a_404(client, object_id, screen):
    dpo = staff_in_role("DPO", is_superuser=True)
    client.force_login(dpo)
    RightsRequestFactory()
    assert client.get(f"/admin/requests/rightsrequest/{object_id}/{screen}/").status_code == 404


def test_a_rectification_decision_naming_a_malformed_item_is_a_404(client):
    client.force_login(staff_in_role("DPO", is_superuser=True))
    rights_request = RightsRequestFactory(right="rectification")
    url = reverse("admin:requests_rightsrequest_rectification", args=(rights_request.pk,))
    for item in ("abc", "1\x00", "9" * 10_000):
        assert client.post(url, {"decision": "apply", "item": item}).status_code == 404


def _project_forms():
    """Every form class defined in the apps' code (forms, admin screens, views), found by importing each
    module of each app (migrations and commands aside)."""
    import importlib
    import pkgutil

    from django import forms
    from django.apps import apps

    for config in apps.get_app_configs():
        if Path(config.path).parent != Path(settings.BASE_DIR):  # ours, not the libraries' (.venv is inside too)
            continue
        for info in pkgutil.walk_packages([config.path], prefix=f"{config.name}."):
            if ".migrations" in info.name or ".management" in info.name:
                continue
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if isinstance(value, type) and issubclass(value, forms.BaseForm) and value.__module__ == module.__name__:
                    yield value


def test_every_one_line_text_field_of_every_form_has_a_length_and_addresses_fit_their_column():
    """A text field without a length reaches a bounded column unbounded (issue 16): each one-line field
    declares one, and no address may be longer than the e-mail columns. Multi-line fields go to text
    columns, which have no length; a model form's fields take their column's length by themselves."""
    from django import forms

    def unbounded(field) -> bool:
        if isinstance(field, forms.EmailField):
            return not (field.max_length and field.max_length <= EMAIL_MAX)
        if isinstance(field, forms.IntegerField | forms.DecimalField):  # a column's integer has a range too
            return field.max_value is None
        one_line = not isinstance(field.widget, forms.Textarea | forms.PasswordInput)
        return type(field) is forms.CharField and one_line and field.max_length is None

    forms_ = list(_project_forms())
    names = {form.__name__ for form in forms_}
    assert {"PublicRequestForm", "SignupForm"} <= names, names  # the scan finds the forms it is meant to check
    found = [
        f"{form.__module__}.{form.__name__}.{name}"
        for form in forms_
        for name, field in form.base_fields.items()
        if unbounded(field)
    ]
    assert found == []


def test_a_sign_up_with_an_address_longer_than_its_column_is_a_form_error(client, seeded):
    from accounts.models import User

    data = {
        "name": "Ada",
        "email": LONG_EMAIL,
        "password1": "correct horse battery staple 9",
        "password2": "correct horse battery staple 9",
        "date_of_birth": "1990-01-01",
        "country": "SG",
        "accept_policy": "on",
    }
    response = client.post(reverse("web:signup"), data)
    assert response.status_code == 200
    assert "email" in response.context["form"].errors
    assert not User.objects.filter(name="Ada").exists()
