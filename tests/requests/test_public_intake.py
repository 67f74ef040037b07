"""The public side of rights requests (issue 5 section 3; PM-IX-8, PM-IX-9, PM-VIII-2, PM-XI-1): a request
without an account, verified by an e-mailed link; the signed status page; a report of a child's account.
Both forms are rate-limited per client address and never tell whether an account has an address."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from inventory.models import Jurisdiction
from requests.models import DeadlineRule, Right, RightsRequest, Status, VerificationLink
from tests.factories.accounts import UserFactory
from tests.factories.inventory import JurisdictionFactory
from tests.factories.requests import DeadlineRuleFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def register():
    singapore = JurisdictionFactory(code="SG", name="Singapore", countries=["SG"], authority_name="PDPC")
    default = JurisdictionFactory(code="DEFAULT", name="Default", authority_name="")
    for jurisdiction in (singapore, default):
        DeadlineRuleFactory(jurisdiction=jurisdiction, period_value=30, period_unit="calendar_days")
    return {"SG": singapore, "DEFAULT": default}


def _public(client, register, email="someone@example.org", **kwargs):
    data = {"contact_email": email, "jurisdiction": register["SG"].pk, "right": Right.ERASURE, "details": "Please."}
    return client.post(reverse("requests:public_new"), data | kwargs)


def _links(mailoutbox) -> list[str]:
    return [m for mail in mailoutbox for m in re.findall(r"https?://\S+", mail.body)]


# --- A request without an account ---------------------------------------------------------------------------


def test_the_public_form_lists_the_register_the_authorities_and_the_dpo(client, register, settings):
    page = client.get(reverse("requests:public_new")).content.decode()
    assert "Singapore" in page and "Other" in page and "PDPC" in page  # PM-IX-7
    assert settings.DPO_EMAIL in page  # PM-XI-1
    assert "child_report" not in page  # a report of a child's account has its own form


def test_pm_ix_9_a_public_request_is_recorded_unverified_and_a_link_is_sent(
    client, register, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = _public(client, register)
    assert response.status_code == 200 and "Check your e-mail" in response.content.decode()
    rights_request = RightsRequest.objects.get()
    assert (rights_request.subject, rights_request.jurisdiction, rights_request.right) == (None, register["SG"], Right.ERASURE)
    assert rights_request.status == Status.AWAITING_VERIFICATION and rights_request.verified_at is None
    assert rights_request.channel == "web" and rights_request.details == "Please."
    assert VerificationLink.objects.filter(request=rights_request, sent_to="someone@example.org").count() == 1
    verify_urls = [u for u in _links(mailoutbox) if "/requests/verify/" in u]
    assert len(verify_urls) == 1
    assert rights_request.reference not in response.content.decode()  # the reference goes by e-mail only


def test_the_link_is_confirmed_by_a_button_not_by_opening_it(client, register, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _public(client, register)
    path = re.sub(r"^https?://[^/]+", "", next(u for u in _links(mailoutbox) if "/requests/verify/" in u))
    page = client.get(path)  # what a mail scanner does
    assert page.status_code == 200 and "Confirm my request" in page.content.decode()
    rights_request = RightsRequest.objects.get()
    assert rights_request.verified_at is None
    confirmed = client.post(path)
    rights_request.refresh_from_db()
    assert confirmed.status_code == 200 and rights_request.status == Status.IN_PROGRESS
    text = confirmed.content.decode()
    assert rights_request.reference in text and "PDPC" in text
    status_path = re.search(r'href="(/requests/status/[^"]+)"', text).group(1)
    status = client.get(status_path).content.decode()
    assert rights_request.reference in status and "In progress" in status and "We confirmed that the request is yours." in status
    again = client.post(path)
    assert again.status_code == 410 and "already used" in again.content.decode()


def test_unknown_verification_and_status_tokens_are_refused(client, register):
    assert client.post(reverse("requests:verify", kwargs={"token": "nope"})).status_code == 410
    assert client.get(reverse("requests:status", kwargs={"token": "nope"})).status_code == 404


def test_the_answer_is_the_same_whether_or_not_an_account_has_the_address(client, register, django_capture_on_commit_callbacks):
    account = UserFactory(email="holder@example.org", country="SG")
    with django_capture_on_commit_callbacks(execute=True):
        known = _public(client, register, email="holder@example.org")
        unknown = _public(client, register, email="nobody@example.org")
    assert known.status_code == unknown.status_code == 200
    assert known.content.decode().replace("holder@", "X@") == unknown.content.decode().replace("nobody@", "X@")
    # The account holder's request is theirs: the link goes to the account's address, and dupes are caught.
    assert RightsRequest.objects.get(contact_email="holder@example.org").subject == account


def test_a_public_duplicate_looks_the_same_as_a_new_request(client, register, django_capture_on_commit_callbacks):
    UserFactory(email="holder@example.org", country="SG")
    with django_capture_on_commit_callbacks(execute=True):
        first = _public(client, register, email="holder@example.org")
        second = _public(client, register, email="holder@example.org")
    assert first.content == second.content
    assert RightsRequest.objects.filter(status=Status.DUPLICATE).count() == 1


def test_public_form_errors_record_nothing(client, register):
    response = _public(client, register, email="not-an-address")
    assert response.status_code == 200 and "errors" in response.content.decode()
    assert _public(client, register, right=Right.CHILD_REPORT).status_code == 200
    assert not RightsRequest.objects.exists()


def test_public_intake_is_rate_limited_per_client_address(client, register, settings):
    settings.REQUEST_INTAKE_PER_HOUR = 2
    assert _public(client, register, email="a@example.org").status_code == 200
    assert _public(client, register, email="b@example.org").status_code == 200
    refused = _public(client, register, email="c@example.org")
    assert refused.status_code == 429 and "Too many" in refused.content.decode()
    assert RightsRequest.objects.count() == 2
    elsewhere = Client(REMOTE_ADDR="203.0.113.9")
    assert _public(elsewhere, register, email="c@example.org").status_code == 200


def test_the_public_forms_keep_csrf_protection(register):
    client = Client(enforce_csrf_checks=True)
    assert _public(client, register).status_code == 403
    data = {"account_email": "kid@example.org", "contact_email": "parent@example.org", "details": "Says 11."}
    assert client.post(reverse("requests:child_report"), data).status_code == 403
    assert client.post(reverse("requests:verify", kwargs={"token": "x"})).status_code == 403
    assert not RightsRequest.objects.exists()


# --- Reports of a child's account (PM-VIII-2) ---------------------------------------------------------------


def _report(client, **kwargs):
    data = {"account_email": "kid@example.org", "contact_email": "parent@example.org", "details": "Says she is 11."}
    return client.post(reverse("requests:child_report"), data | kwargs)


def test_pm_viii_2_a_report_names_the_account_found_by_its_exact_address(client, register, mailoutbox):
    child = UserFactory(email="kid@example.org", country="SG")
    response = _report(client, account_description="Uses the name Kiki.")
    assert response.status_code == 200 and "we have your report" in response.content.decode()
    report = RightsRequest.objects.get()
    assert (report.right, report.subject, report.contact_email) == (Right.CHILD_REPORT, child, "parent@example.org")
    assert report.jurisdiction == register["DEFAULT"]  # the reporter's choice, else DEFAULT: never the account's
    assert "Reported account e-mail: kid@example.org" in report.details and "Kiki" in report.details
    assert not VerificationLink.objects.exists()  # a link would go to the reported account's own address


def test_a_report_never_tells_whether_the_account_exists(client, register, django_capture_on_commit_callbacks, mailoutbox):
    UserFactory(email="kid@example.org", country="SG")
    with django_capture_on_commit_callbacks(execute=True):
        known = _report(client)
        unknown = _report(client, account_email="ghost@example.org")
        again = _report(client)  # a second report of the same account
    assert known.content == unknown.content == again.content
    reports = RightsRequest.objects.order_by("pk")
    assert [r.subject is not None for r in reports] == [True, False, False]
    assert not reports.filter(status=Status.DUPLICATE).exists()  # a duplicate e-mail would say it exists
    assert len(mailoutbox) == 3
    pairs = zip(mailoutbox, reports, strict=True)
    bodies = [(m.subject.replace(r.reference, "REF"), m.body.replace(r.reference, "REF")) for m, r in pairs]
    assert bodies[0] == bodies[1] == bodies[2]


def test_a_report_needs_the_address_or_a_description(client, register):
    response = _report(client, account_email="")
    assert "Give the account" in response.content.decode()
    _report(client, account_email="", account_description="The one with the unicorn avatar.", jurisdiction=register["SG"].pk)
    report = RightsRequest.objects.get()
    assert report.subject is None and report.jurisdiction == register["SG"]


def test_reports_are_rate_limited_per_client_address(client, register, settings):
    settings.REQUEST_INTAKE_PER_HOUR = 1
    assert _report(client).status_code == 200
    assert _report(client).status_code == 429
    assert RightsRequest.objects.count() == 1


def test_a_report_without_a_default_jurisdiction_is_not_lost_silently(client, register):
    DeadlineRule.objects.filter(jurisdiction__code="DEFAULT").delete()
    Jurisdiction.objects.filter(code="DEFAULT").delete()
    assert _report(client).status_code == 503
