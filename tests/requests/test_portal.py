"""The signed-in subject's rights pages (issue 5 section 4; PM-IX-1 ... PM-IX-9, PM-XI-1): exercise a right,
my requests, one request with its timeline, withdraw, and the package download behind re-authentication.

Downloads go through the real `requests.exports` (a package built from the subject's rows) and the real
`accounts.reauth`.
"""

import time
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import reauth
from requests import exports, rectification, services, views
from requests.models import DownloadLink, ExportPackage, JobStatus, RequestEvent, Right, RightsRequest, Status
from tests.factories.accounts import StaffFactory, UserFactory
from tests.factories.consents import ConsentPurposeFactory
from tests.factories.inventory import JurisdictionFactory
from tests.factories.requests import DeadlineRuleFactory, RightsRequestFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def singapore():
    jurisdiction = JurisdictionFactory(
        code="SG", name="Singapore", countries=["SG"], authority_name="PDPC", complaint_url="https://www.pdpc.gov.sg/complaints"
    )
    DeadlineRuleFactory(jurisdiction=jurisdiction, period_value=30, period_unit="calendar_days", citation="PDPA s 21")
    return jurisdiction


@pytest.fixture
def subject(singapore, client):
    user = UserFactory(country="SG")
    client.force_login(user)
    return user


def _submit(user, right=Right.ACCESS, **kwargs):
    return services.rights_request_submit(right=right, contact_email=user.email, subject=user, verified=True, **kwargs)


# --- Signing in, other subjects, CSRF -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["requests:list", "requests:new"])
def test_pm_ix_8_pages_need_a_signed_in_subject(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302 and response["Location"].startswith(reverse("web:signin"))


def test_detail_withdraw_and_package_need_a_signed_in_subject(client, singapore):
    reference = RightsRequestFactory(jurisdiction=singapore).reference
    for name, method in [("requests:detail", "get"), ("requests:withdraw", "post"), ("requests:package", "post")]:
        response = getattr(client, method)(reverse(name, kwargs={"reference": reference}))
        assert response.status_code == 302 and response["Location"].startswith(reverse("web:signin")), name


def test_another_subjects_request_is_a_404_like_a_missing_one(client, subject, singapore):
    theirs = _submit(UserFactory(country="SG"))
    for name, method in [("requests:detail", "get"), ("requests:withdraw", "post")]:
        assert getattr(client, method)(reverse(name, kwargs={"reference": theirs.reference})).status_code == 404
        assert getattr(client, method)(reverse(name, kwargs={"reference": "DSR-2026-999999"})).status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == Status.IN_PROGRESS


def test_forms_keep_csrf_protection(subject):
    client = Client(enforce_csrf_checks=True)
    client.force_login(subject)
    assert client.post(reverse("requests:new"), {"right": Right.ACCESS}).status_code == 403
    mine = _submit(subject)
    assert client.post(reverse("requests:withdraw", kwargs={"reference": mine.reference})).status_code == 403
    assert not RightsRequest.objects.filter(right=Right.ACCESS).exclude(pk=mine.pk).exists()
    mine.refresh_from_db()
    assert mine.status == Status.IN_PROGRESS


# --- Exercise your rights ---------------------------------------------------------------------------------


def test_choose_page_explains_each_right_with_its_pm_id_the_dpo_and_the_authority(client, subject, settings):
    page = client.get(reverse("requests:new")).content.decode()
    for right, (policy_id, _text) in views.RIGHT_INFO.items():
        if right != Right.CHILD_REPORT:
            assert f"?right={right.value}" in page and policy_id in page
    assert settings.DPO_EMAIL in page  # PM-XI-1
    assert "PDPC" in page and "https://www.pdpc.gov.sg/complaints" in page  # PM-IX-7
    assert reverse("requests:child_report") in page


def test_pm_ix_8_submitting_makes_a_verified_web_request_and_shows_its_reference_and_due_date(
    client, subject, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("requests:new"), {"right": Right.ACCESS, "details": "Everything since 2025."}, follow=True)
    rights_request = RightsRequest.objects.get(subject=subject)
    assert response.redirect_chain[-1][0] == reverse("requests:detail", kwargs={"reference": rights_request.reference})
    assert (rights_request.status, rights_request.channel) == (Status.IN_PROGRESS, "web")
    assert rights_request.verified_at is not None and rights_request.details == "Everything since 2025."
    page = response.content.decode()
    due = timezone.localtime(rights_request.effective_due_at, views.deadlines.deadline_zone())
    assert f"Your request is {rights_request.reference}" in page and f"{due:%-d %B %Y}" in page
    assert len(mailoutbox) == 1 and rights_request.reference in mailoutbox[0].subject


def test_a_duplicate_is_explained_and_leads_to_the_open_request(client, subject):
    original = _submit(subject)
    response = client.post(reverse("requests:new"), {"right": Right.ACCESS}, follow=True)
    duplicate = RightsRequest.objects.get(subject=subject, status=Status.DUPLICATE)
    assert duplicate.duplicate_of == original
    assert response.redirect_chain[-1][0] == reverse("requests:detail", kwargs={"reference": original.reference})
    page = response.content.decode()
    assert "You already have an open request for this right" in page
    assert original.reference in page and duplicate.reference in page


def test_an_unknown_right_goes_back_to_the_choice(client, subject):
    response = client.post(reverse("requests:new"), {"right": "everything"})
    assert response.status_code == 200 and "Choose one of the rights below." in response.content.decode()
    assert not RightsRequest.objects.exists()
    # A report of a child's account is not a right the subject exercises on their own account here.
    assert client.post(reverse("requests:new"), {"right": Right.CHILD_REPORT}).status_code == 200
    assert not RightsRequest.objects.exists()


def test_pm_ix_6_withdrawal_names_the_consent_purposes_chosen(client, subject):
    marketing = ConsentPurposeFactory(code="marketing-email", name="Marketing e-mails", consequences="No offers.")
    ConsentPurposeFactory(code="essential", name="Essential", is_necessary=True)
    page = client.get(reverse("requests:new"), {"right": Right.WITHDRAW_CONSENT}).content.decode()
    assert "Marketing e-mails" in page and "No offers." in page and "Essential" not in page
    assert reverse("web:my-consents") in page  # the instant way is offered first (PM-IX-6)
    missing = client.post(reverse("requests:new"), {"right": Right.WITHDRAW_CONSENT})
    assert missing.status_code == 200 and not RightsRequest.objects.exists()
    client.post(reverse("requests:new"), {"right": Right.WITHDRAW_CONSENT, "purposes": [marketing.code], "details": "Stop."})
    rights_request = RightsRequest.objects.get(subject=subject)
    assert rights_request.right == Right.WITHDRAW_CONSENT
    assert rights_request.details == "Purposes: Marketing e-mails [marketing-email]\n\nStop."


def test_pm_ix_5_restriction_offers_register_purposes_or_all_processing(client, subject):
    from tests.factories.inventory import PurposeFactory

    PurposeFactory(code="model-improvement", name="Improving the model")
    page = client.get(reverse("requests:new"), {"right": Right.RESTRICTION}).content.decode()
    assert "All processing of my data" in page and "Improving the model" in page
    both = client.post(reverse("requests:new"), {"right": Right.RESTRICTION, "purposes": ["*", "model-improvement"]})
    assert "not both" in both.content.decode() and not RightsRequest.objects.exists()
    client.post(reverse("requests:new"), {"right": Right.OBJECTION, "purposes": ["model-improvement"]})
    assert RightsRequest.objects.get().details == "Purposes: Improving the model [model-improvement]"


def test_pm_ix_3_rectification_lists_the_rectifiable_fields_and_proposes_the_changes(client, subject):
    page = client.get(reverse("requests:new"), {"right": Right.RECTIFICATION}).content.decode()
    assert "Your name" in page and subject.name in page
    fields = rectification.rectifiable_fields(subject=subject)
    name_index = next(i for i, f in enumerate(fields) if f["model_label"] == "accounts.User" and f["field"] == "name")
    nothing = client.post(reverse("requests:new"), {"right": Right.RECTIFICATION})
    assert "Give at least one corrected value." in nothing.content.decode() and not RightsRequest.objects.exists()
    response = client.post(reverse("requests:new"), {"right": Right.RECTIFICATION, f"fix_{name_index}": "Ada Lovelace"})
    assert response.status_code == 302
    rights_request = RightsRequest.objects.get(subject=subject)
    item = rights_request.rectifications.get()
    assert (item.field, item.old_value, item.new_value) == ("name", subject.name, "Ada Lovelace")


def test_rectification_rejected_by_the_model_field_keeps_nothing(client, subject):
    fields = rectification.rectifiable_fields(subject=subject)
    birth = next(i for i, f in enumerate(fields) if f["field"] == "date_of_birth")
    response = client.post(reverse("requests:new"), {"right": Right.RECTIFICATION, f"fix_{birth}": "not a date"})
    assert response.status_code == 200 and "errors" in response.content.decode()
    assert not RightsRequest.objects.exists()  # the request and its items roll back together


# --- My requests, one request, withdraw -------------------------------------------------------------------


def test_my_requests_lists_only_mine_with_status_and_due_date(client, subject):
    mine = _submit(subject)
    theirs = _submit(UserFactory(country="SG"), right=Right.ERASURE)
    page = client.get(reverse("requests:list")).content.decode()
    assert mine.reference in page and theirs.reference not in page
    due = timezone.localtime(mine.effective_due_at, views.deadlines.deadline_zone())
    assert "In progress" in page and f"{due:%-d %B %Y}" in page


def test_the_timeline_shows_moves_and_emails_not_staff_notes(client, subject):
    rights_request = _submit(subject)
    staff = StaffFactory(name="Sam Staffer")
    services.rights_request_note(rights_request=rights_request, actor=staff, message="Internal: check the logs first.")
    services.rights_request_assign(rights_request=rights_request, assignee=staff, actor=staff)
    page = client.get(reverse("requests:detail", kwargs={"reference": rights_request.reference})).content.decode()
    assert "Received → In progress" in page and "E-mail sent:" in page and "We confirmed that the request is yours." in page
    assert "Internal: check the logs first." not in page and "Sam Staffer" not in page and staff.email not in page
    assert "PDPC" in page  # PM-IX-7, the request's jurisdiction


def test_withdraw_closes_an_open_request_and_the_button_goes(client, subject):
    rights_request = _submit(subject)
    url = reverse("requests:detail", kwargs={"reference": rights_request.reference})
    assert "Withdraw this request" in client.get(url).content.decode()
    response = client.post(reverse("requests:withdraw", kwargs={"reference": rights_request.reference}), follow=True)
    rights_request.refresh_from_db()
    assert rights_request.status == Status.WITHDRAWN and rights_request.closed_at is not None
    page = response.content.decode()
    assert "is withdrawn" in page and "Withdraw this request" not in page
    assert rights_request.events.filter(kind=RequestEvent.Kind.MOVE, to_status=Status.WITHDRAWN, actor=None).exists()
    again = client.post(reverse("requests:withdraw", kwargs={"reference": rights_request.reference}), follow=True)
    assert "cannot move to withdrawn" in again.content.decode()


def test_withdraw_needs_a_post(client, subject):
    rights_request = _submit(subject)
    assert client.get(reverse("requests:withdraw", kwargs={"reference": rights_request.reference})).status_code == 405


# --- The package and its download ---------------------------------------------------------------------------


def _ready(subject, **kwargs) -> tuple[RightsRequest, ExportPackage]:
    """A verified access request of the subject and its real package, built by `exports.export_package_work`."""
    rights_request = _submit(subject)
    RightsRequest.objects.filter(pk=rights_request.pk).update(status=Status.FULFILLING, job_status=JobStatus.QUEUED)
    package = exports.export_package_work(request_id=rights_request.pk)
    if kwargs:
        ExportPackage.objects.filter(pk=package.pk).update(**kwargs)
        package.refresh_from_db()
    return rights_request, package


def _reauthenticate(client):
    session = client.session
    session[reauth.SESSION_KEY] = {"user": str(session["_auth_user_id"]), "at": time.time()}
    session.save()


def test_pm_ix_1_download_needs_reauth_then_streams_the_package_through_a_single_use_link(client, subject):
    rights_request, package = _ready(subject, downloads=1)
    detail = client.get(reverse("requests:detail", kwargs={"reference": rights_request.reference})).content.decode()
    assert "Download my data" in detail and "4 more times" in detail
    start = reverse("requests:package", kwargs={"reference": rights_request.reference})
    response = client.post(start)
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:reauth"))
    assert not DownloadLink.objects.exists()  # no link before re-authentication
    _reauthenticate(client)
    assert "Download my data" in client.get(start).content.decode()  # back from re-auth: confirm with a button
    response = client.post(start)
    assert response.status_code == 302 and response["Location"].startswith("/my/requests/download/")
    assert DownloadLink.objects.filter(package=package).count() == 1
    download = client.get(response["Location"])
    assert download.status_code == 200 and download["Content-Type"] == "application/zip"
    assert download["Content-Disposition"] == f'attachment; filename="{rights_request.reference}-data.zip"'
    assert b"".join(download.streaming_content).startswith(b"PK\x03\x04")
    assert "no-store" in download["Cache-Control"]
    used = client.get(response["Location"])
    assert used.status_code == 410
    assert reverse("requests:list") in used.content.decode()  # where to ask for a new link


def test_the_download_link_itself_needs_reauth(client, subject):
    _ready(subject)
    response = client.get(reverse("requests:download", kwargs={"token": "tok-1"}))
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:reauth"))


def test_a_refused_link_is_explained_on_the_request_page(client, subject):
    rights_request, package = _ready(subject, downloads=4)
    _reauthenticate(client)
    ExportPackage.objects.filter(pk=package.pk).update(downloads=exports.MAX_DOWNLOADS)
    response = client.post(reverse("requests:package", kwargs={"reference": rights_request.reference}), follow=True)
    page = response.content.decode()
    assert f"downloaded {exports.MAX_DOWNLOADS} times, the most we allow" in page  # the service's refusal, shown
    assert f"You have used all {exports.MAX_DOWNLOADS} downloads" in page
    assert not DownloadLink.objects.exists()


def test_package_states_on_the_request_page(client, subject):
    rights_request = _submit(subject)
    url = reverse("requests:detail", kwargs={"reference": rights_request.reference})
    assert "not ready yet" in client.get(url).content.decode()
    _reauthenticate(client)
    response = client.post(reverse("requests:package", kwargs={"reference": rights_request.reference}), follow=True)
    assert "not ready yet" in response.content.decode()
    expired, _ = _ready(UserFactory(country="SG"), expires_at=timezone.now() - timedelta(minutes=1))
    client.force_login(expired.subject)
    assert "expired" in client.get(reverse("requests:detail", kwargs={"reference": expired.reference})).content.decode()


def test_a_request_without_a_package_right_has_no_download(client, subject):
    rights_request = _submit(subject, right=Right.ERASURE)
    page = client.get(reverse("requests:detail", kwargs={"reference": rights_request.reference})).content.decode()
    assert "Your data" not in page
    _reauthenticate(client)
    assert client.post(reverse("requests:package", kwargs={"reference": rights_request.reference})).status_code == 404
