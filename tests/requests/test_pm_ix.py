"""PM-IX-8: a subject exercises their rights in the portal when signed in, or by e-mail to the DPO, who logs
the request in the workbench on their behalf; both land in the same workflow. Each test goes through both
doors (the portal's form and the workbench's "Log a request" page) and then reads what each side sees."""

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.roles import ROLE_DPO
from requests import deadlines, services
from requests.models import Right, RightsRequest, Status
from tests.factories.accounts import UserFactory
from tests.factories.inventory import staff_in_role

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("seeded")]


@pytest.fixture
def subject():
    return UserFactory(email="ada@example.org", country="DE")


@pytest.fixture
def portal(subject):
    browser = Client()
    browser.force_login(subject)
    return browser


@pytest.fixture
def dpo():
    return staff_in_role(ROLE_DPO)


@pytest.fixture
def workbench(dpo):
    browser = Client()
    browser.force_login(dpo)
    return browser


def ask_in_the_portal(portal, right) -> RightsRequest:
    response = portal.post(reverse("requests:new"), {"right": right, "details": "Asked in the portal."})
    assert response.status_code == 302
    return RightsRequest.objects.filter(channel="web").latest("pk")


def log_an_email(workbench, right, email="ADA@example.org") -> RightsRequest:
    response = workbench.post(
        reverse("admin:requests_rightsrequest_log"),
        {
            "subject_email": email,
            "right": right,
            "channel": "email",
            "received_at": timezone.localtime().strftime("%Y-%m-%d %H:%M:%S"),
            "details": "Sent to the DPO's address.",
        },
    )
    assert response.status_code == 302, response.content
    return RightsRequest.objects.filter(channel="email").latest("pk")


def test_pm_ix_8_both_doors_make_requests_of_the_same_subject_with_the_same_clock(portal, workbench, subject, dpo):
    web = ask_in_the_portal(portal, Right.ACCESS)
    emailed = log_an_email(workbench, Right.ERASURE)
    assert web.subject == emailed.subject == subject
    assert web.jurisdiction == emailed.jurisdiction and web.jurisdiction.code == "EU"
    assert (web.created_by, emailed.created_by) == (None, dpo)  # the subject asked; the DPO logged it for them
    for rights_request in (web, emailed):
        assert rights_request.due_at == deadlines.compute_due(
            rights_request.jurisdiction, rights_request.right, rights_request.received_at
        )


def test_pm_ix_8_the_signed_in_subject_is_verified_by_the_session_and_an_email_waits_for_verification(portal, workbench, dpo):
    web = ask_in_the_portal(portal, Right.ACCESS)
    emailed = log_an_email(workbench, Right.ERASURE)
    assert (web.status, emailed.status) == (Status.IN_PROGRESS, Status.AWAITING_VERIFICATION)
    assert web.verified_at is not None and emailed.verified_at is None
    services.rights_request_verify(rights_request=emailed, actor=dpo, method="email link")
    emailed.refresh_from_db()
    assert emailed.status == Status.IN_PROGRESS  # from here on the two are worked alike


def test_pm_ix_8_the_subject_follows_the_emailed_request_in_the_portal_beside_their_own(portal, workbench):
    web = ask_in_the_portal(portal, Right.ACCESS)
    emailed = log_an_email(workbench, Right.ERASURE)
    page = portal.get(reverse("requests:list")).content.decode()
    assert web.reference in page and emailed.reference in page
    detail = portal.get(reverse("requests:detail", kwargs={"reference": emailed.reference}))
    assert detail.status_code == 200


def test_pm_ix_8_the_dpo_works_portal_requests_in_the_same_queue_as_logged_ones(portal, workbench):
    web = ask_in_the_portal(portal, Right.ACCESS)
    emailed = log_an_email(workbench, Right.ERASURE)
    response = workbench.get(reverse("admin:requests_rightsrequest_changelist"))
    assert {r.pk for r in response.context["cl"].result_list} == {web.pk, emailed.pk}


def test_pm_ix_8_the_same_right_asked_through_both_doors_is_one_request(portal, workbench):
    web = ask_in_the_portal(portal, Right.ACCESS)
    emailed = log_an_email(workbench, Right.ACCESS)
    assert emailed.status == Status.DUPLICATE and emailed.duplicate_of == web
    # and the other way round, for another right
    first = log_an_email(workbench, Right.PORTABILITY)
    again = ask_in_the_portal(portal, Right.PORTABILITY)
    assert again.status == Status.DUPLICATE and again.duplicate_of == first


def test_pm_ix_8_an_email_from_an_address_no_account_has_is_logged_without_inventing_a_link(workbench, subject):
    response = workbench.post(
        reverse("admin:requests_rightsrequest_log"),
        {
            "subject_email": "someone.else@example.org",
            "right": Right.ACCESS,
            "channel": "email",
            "received_at": timezone.localtime().strftime("%Y-%m-%d %H:%M:%S"),
        },
    )
    assert response.status_code == 200 and "No account has this address" in response.content.decode()
    assert not RightsRequest.objects.exists()
