"""The workbench's fulfilment screens (issue 5 §4-5): verification links, the agent's proof of authority, the
erasure preview before approval, rectification review, restriction/objection/withdrawal, recipient notices
(Art. 19), packages, job progress and the disclosure log (PM-IV-5) -- each calling its service, by role."""

import datetime

import pytest
from django.contrib.messages import get_messages
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from accounts.roles import ROLE_DPO
from consents.ledger import consent_record
from consents.models import ConsentEvent, ProcessingRestriction
from inventory.models import Jurisdiction
from privacyops.models import AuditEvent
from requests.models import (
    Disclosure,
    ExportPackage,
    JobStatus,
    RecipientNotice,
    RectificationItem,
    Requester,
    Right,
    RightsRequest,
    Status,
    VerificationLink,
)
from requests.rectification import rectification_propose
from tests.factories.accounts import UserFactory
from tests.factories.consents import ConsentPurposeFactory
from tests.factories.inventory import DataCategoryFactory, JurisdictionFactory, PurposeFactory, RecipientFactory, staff_in_role
from tests.factories.requests import DeadlineRuleFactory, RightsRequestFactory

pytestmark = pytest.mark.django_db


def url(name, *args):
    return reverse(f"admin:requests_{name}", args=args)


def action_url(rights_request, action):
    return url("rightsrequest_action", rights_request.pk, action)


def login(client, role):
    user = staff_in_role(role)
    client.force_login(user)
    return user


def shown(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def buttons(client, rights_request) -> set[str]:
    response = client.get(url("rightsrequest_change", rights_request.pk))
    assert response.status_code == 200
    return {b["key"] for b in response.context["request_actions"]}


@pytest.fixture
def sg(db):
    jurisdiction = JurisdictionFactory(code="SG", countries=["SG"], authority_name="PDPC")
    JurisdictionFactory(code=Jurisdiction.DEFAULT)
    DeadlineRuleFactory(jurisdiction=jurisdiction)
    return jurisdiction


def fulfilling(sg, right, **kwargs) -> RightsRequest:
    """Verified and approved: where fulfilment happens."""
    subject = kwargs.pop("subject", None) or UserFactory(country="SG")
    return RightsRequestFactory(
        subject=subject, jurisdiction=sg, right=right, status=Status.FULFILLING, verified_at=timezone.now(), **kwargs
    )


# --- Verification link and the agent's authority ------------------------------------------------------------------


def test_ask_for_verification_sends_a_link_through_the_verification_service(client, sg, django_capture_on_commit_callbacks):
    login(client, "Privacy analyst")
    rights_request = RightsRequestFactory(jurisdiction=sg, status=Status.RECEIVED)
    assert "send_verification" in buttons(client, rights_request)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(action_url(rights_request, "send_verification"))
    assert response.status_code == 302
    rights_request.refresh_from_db()
    assert rights_request.status == Status.AWAITING_VERIFICATION
    link = VerificationLink.objects.get(request=rights_request)
    assert [m.to for m in mail.outbox] == [[link.sent_to]]
    assert "verification link sent" in shown(response)[-1]


def test_a_verified_request_is_not_asked_again_and_the_services_refusal_is_shown(client, sg):
    login(client, "DPO")
    rights_request = RightsRequestFactory(jurisdiction=sg, status=Status.IN_PROGRESS, verified_at=timezone.now())
    assert "send_verification" not in buttons(client, rights_request)
    response = client.post(action_url(rights_request, "send_verification"))
    assert response.status_code == 302 and "already verified" in shown(response)[-1]
    assert not VerificationLink.objects.exists()


@pytest.fixture
def agent_request(sg, media_root):
    return RightsRequestFactory(
        jurisdiction=sg,
        status=Status.AWAITING_VERIFICATION,
        requester=Requester.AGENT,
        agent_name="Lee & Partners",
        agent_authority=SimpleUploadedFile("mandate.pdf", b"%PDF-1.4 signed mandate", content_type="application/pdf"),
    )


def test_pm_xi_2_the_agents_proof_is_served_only_to_staff_who_work_requests(client, agent_request):
    login(client, "DPO")
    page = client.get(url("rightsrequest_change", agent_request.pk))
    assert page.context["authority_url"] == url("rightsrequest_authority", agent_request.pk)
    response = client.get(url("rightsrequest_authority", agent_request.pk))
    assert response.status_code == 200 and b"".join(response.streaming_content) == b"%PDF-1.4 signed mandate"
    assert "attachment" in response["Content-Disposition"]
    for role in ("Auditor", "Support agent"):
        login(client, role)
        assert client.get(url("rightsrequest_change", agent_request.pk)).context["authority_url"] == ""
        assert client.get(url("rightsrequest_authority", agent_request.pk)).status_code == 403


def test_pm_xi_2_verifying_the_agents_authority_calls_the_service(client, agent_request):
    dpo = login(client, "DPO")
    assert "verify_agent" in buttons(client, agent_request)
    screen = client.get(action_url(agent_request, "verify_agent"))
    assert screen.context["authority_url"] == url("rightsrequest_authority", agent_request.pk)
    assert client.post(action_url(agent_request, "verify_agent")).status_code == 302
    agent_request.refresh_from_db()
    assert agent_request.agent_verified_by == dpo and agent_request.agent_verified_at is not None
    assert AuditEvent.objects.filter(action="rights_request.agent_verified", actor_id=dpo.pk).count() == 1
    assert "verify_agent" not in buttons(client, agent_request)  # done: no second button
    login(client, "Auditor")
    assert client.post(action_url(agent_request, "verify_agent")).status_code == 403
    assert AuditEvent.objects.filter(action="rights_request.agent_verified").count() == 1


# --- Erasure preview, job progress, packages ------------------------------------------------------------------------


def test_pm_ix_2_the_erasure_preview_is_shown_before_approving(client, sg):
    DataCategoryFactory(code="account-information", name="Account information")
    subject = UserFactory(country="SG")
    rights_request = RightsRequestFactory(
        subject=subject, jurisdiction=sg, right=Right.ERASURE, status=Status.AWAITING_APPROVAL, verified_at=timezone.now()
    )
    login(client, "DPO")
    response = client.get(action_url(rights_request, "approve"))
    rows = {row["category"]: row for row in response.context["erasure_preview"]["rows"]}
    assert rows["account-information"]["name"] == "Account information"  # the register's name for the code
    assert rows["account-information"]["erased"] + rows["account-information"]["anonymised"] >= 1  # the account itself
    html = response.content.decode()
    assert "What the erasure would do" in html and "Account information" in html
    access = RightsRequestFactory(
        jurisdiction=sg, right=Right.ACCESS, status=Status.AWAITING_APPROVAL, verified_at=timezone.now()
    )
    assert client.get(action_url(access, "approve")).context["erasure_preview"] is None


def test_the_job_shows_as_a_progress_bar_and_the_page_reloads_while_it_runs(client, sg):
    login(client, "Privacy analyst")
    running = fulfilling(sg, Right.ACCESS, job_status=JobStatus.RUNNING, job_done=40, job_total=160)
    html = client.get(url("rightsrequest_change", running.pk)).content.decode()
    assert '<progress class="job-bar" max="160" value="40">25%</progress>' in html
    assert '<meta http-equiv="refresh" content="5">' in html
    done = fulfilling(sg, Right.PORTABILITY, job_status=JobStatus.DONE, job_done=160, job_total=160)
    html = client.get(url("rightsrequest_change", done.pk)).content.decode()
    assert 'value="160">100%' in html and 'http-equiv="refresh"' not in html
    failed = fulfilling(sg, Right.ERASURE, job_status=JobStatus.FAILED, job_error="Worker lost the lease twice.")
    assert "Worker lost the lease twice." in client.get(url("rightsrequest_change", failed.pk)).content.decode()
    none = fulfilling(sg, Right.RECTIFICATION)
    assert client.get(url("rightsrequest_change", none.pk)).context["job"] is None


def test_packages_are_listed_read_only_with_status_size_downloads_and_expiry(client, sg):
    login(client, "DPO")
    rights_request = fulfilling(sg, Right.ACCESS)
    ExportPackage.objects.create(
        request=rights_request,
        status=ExportPackage.Status.READY,
        size_bytes=3 * 1024 * 1024,
        sha256="a" * 64,
        downloads=2,
        expires_at=datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC),
    )
    html = client.get(url("rightsrequest_change", rights_request.pk)).content.decode()
    assert "Export packages" in html and "3.0\xa0MB" in html and "Ready" in html
    assert "Dec. 1, 2026" in html or "2026-12-01" in html


# --- Rectification review ------------------------------------------------------------------------------------------


@pytest.fixture
def rectification(sg):
    subject = UserFactory(email="ana@example.org", name="Ana Smith", country="SG")
    rights_request = fulfilling(sg, Right.RECTIFICATION, subject=subject)
    items = rectification_propose(
        rights_request=rights_request,
        changes=[
            {"model_label": "accounts.User", "object_pk": str(subject.pk), "field": "name", "new_value": "Ana Smith-Jones"},
            {"model_label": "accounts.User", "object_pk": str(subject.pk), "field": "region", "new_value": "SG-01"},
        ],
    )
    return rights_request, items


def test_pm_ix_3_the_dpo_sees_old_and_new_side_by_side_and_applies_or_rejects_each(client, rectification):
    rights_request, (name, region) = rectification
    login(client, "DPO")
    page = client.get(url("rightsrequest_change", rights_request.pk))
    assert page.context["rectifications"]["pending"] == 2
    screen = client.get(url("rightsrequest_rectification", rights_request.pk))
    html = screen.content.decode()
    assert "<del>Ana Smith</del>" in html and "<ins>Ana Smith-Jones</ins>" in html and screen.context["may_decide"]

    response = client.post(url("rightsrequest_rectification", rights_request.pk), {"item": name.pk, "decision": "apply"})
    assert response.status_code == 302 and "was applied" in shown(response)[-1]
    assert UserFactory._meta.model.objects.get(pk=rights_request.subject_id).name == "Ana Smith-Jones"
    refused = client.post(url("rightsrequest_rectification", rights_request.pk), {"item": region.pk, "decision": "reject"})
    assert "Say why the correction is rejected" in shown(refused)[-1]
    client.post(
        url("rightsrequest_rectification", rights_request.pk),
        {"item": region.pk, "decision": "reject", "note": "Not a region of Singapore."},
    )
    assert [i.decision for i in RectificationItem.objects.filter(request=rights_request).order_by("field")] == [
        RectificationItem.Decision.APPLIED,
        RectificationItem.Decision.REJECTED,
    ]
    closed = client.post(url("rightsrequest_rectification", rights_request.pk), {"decision": "complete"})
    assert closed.status_code == 302 and closed.url == url("rightsrequest_change", rights_request.pk)
    assert RightsRequest.objects.get(pk=rights_request.pk).status == Status.PARTIALLY_COMPLETED


def test_pm_ix_3_auditors_read_the_review_and_cannot_decide(client, rectification):
    rights_request, (name, _) = rectification
    login(client, "Auditor")
    screen = client.get(url("rightsrequest_rectification", rights_request.pk))
    assert screen.status_code == 200 and not screen.context["may_decide"] and "Apply" not in screen.content.decode()
    response = client.post(url("rightsrequest_rectification", rights_request.pk), {"item": name.pk, "decision": "apply"})
    assert response.status_code == 403
    assert RectificationItem.objects.get(pk=name.pk).decision == RectificationItem.Decision.PENDING


# --- Restriction, objection, withdrawal --------------------------------------------------------------------------------


def test_pm_ix_5_restriction_is_placed_through_the_consents_app(client, sg):
    dpo = login(client, ROLE_DPO)
    purpose = PurposeFactory(code="analytics")
    rights_request = fulfilling(sg, Right.RESTRICTION)
    assert "restrict" in buttons(client, rights_request) and "object" not in buttons(client, rights_request)
    response = client.post(action_url(rights_request, "restrict"), {"purpose": purpose.pk, "reason": "Accuracy contested."})
    assert response.status_code == 302, response.context and response.context["form"].errors
    restriction = ProcessingRestriction.objects.get()
    assert (restriction.kind, restriction.purpose_id, restriction.subject_id) == (
        "restriction",
        purpose.pk,
        rights_request.subject_id,
    )
    assert AuditEvent.objects.filter(actor_id=dpo.pk).exists()


def test_pm_ix_5_objection_and_pm_ix_6_withdrawal_call_their_services(client, sg):
    dpo = login(client, ROLE_DPO)
    objection = fulfilling(sg, Right.OBJECTION)
    client.post(action_url(objection, "object"), {"purpose": "", "reason": "Direct marketing."})
    restriction = ProcessingRestriction.objects.get()
    assert (restriction.kind, restriction.purpose_id, restriction.subject_id) == ("objection", None, objection.subject_id)
    assert restriction.reason == "Direct marketing."
    marketing = ConsentPurposeFactory(code="marketing-email")
    analytics = ConsentPurposeFactory(code="analytics-cookies")
    withdrawal = fulfilling(sg, Right.WITHDRAW_CONSENT)
    for purpose in (marketing, analytics):
        consent_record(
            purpose=purpose, action=ConsentEvent.Action.GIVEN, method=ConsentEvent.Method.API, subject=withdrawal.subject
        )
    client.post(action_url(withdrawal, "withdraw_consent"), {"purposes": [marketing.pk]})
    staff_events = ConsentEvent.objects.filter(subject_ref=withdrawal.subject.subject_ref, method=ConsentEvent.Method.STAFF)
    assert [(e.purpose.code, e.action) for e in staff_events] == [("marketing-email", ConsentEvent.Action.WITHDRAWN)]
    client.post(action_url(withdrawal, "withdraw_consent"), {})  # nothing ticked: every consent given
    assert {(e.purpose.code, e.action) for e in staff_events.all()} == {
        ("marketing-email", ConsentEvent.Action.WITHDRAWN),
        ("analytics-cookies", ConsentEvent.Action.WITHDRAWN),
    }
    assert AuditEvent.objects.filter(action="rights_request.consent_withdrawn", actor_id=dpo.pk).count() == 2


def test_fulfilment_buttons_appear_only_while_fulfilling_and_never_for_the_auditor(client, sg):
    login(client, "DPO")
    working = RightsRequestFactory(
        jurisdiction=sg, right=Right.RESTRICTION, status=Status.IN_PROGRESS, verified_at=timezone.now()
    )
    assert "restrict" not in buttons(client, working)
    login(client, "Auditor")
    ready = fulfilling(sg, Right.RESTRICTION)
    assert buttons(client, ready) == set()
    assert client.post(action_url(ready, "restrict"), {"reason": "x"}).status_code == 403
    assert not ProcessingRestriction.objects.exists()


# --- Recipient notices (Art. 19) -------------------------------------------------------------------------------------


def test_recipient_notices_are_listed_and_the_dpo_marks_each_done(client, sg):
    rights_request = fulfilling(sg, Right.ERASURE)
    crm = RecipientFactory(code="crm", name="The CRM")
    notice = RecipientNotice.objects.create(request=rights_request, recipient=crm, categories=["account-information"])
    done_url = url("rightsrequest_notice_done", rights_request.pk, notice.pk)

    login(client, "Privacy analyst")  # reads the list; marking is the DPO's
    html = client.get(url("rightsrequest_change", rights_request.pk)).content.decode()
    assert "The CRM" in html and done_url not in html
    assert client.post(done_url, {"note": "x"}).status_code == 403

    dpo = login(client, "DPO")
    assert done_url in client.get(url("rightsrequest_change", rights_request.pk)).content.decode()
    assert client.get(done_url).status_code == 200
    response = client.post(done_url, {"note": "Emailed their privacy desk, ticket 4411."})
    assert response.status_code == 302 and "marked as told" in shown(response)[-1]
    notice.refresh_from_db()
    assert notice.done_by == dpo and notice.done_at is not None
    again = client.post(done_url, {"note": ""})
    assert "already marked" in shown(again)[-1]
    other = fulfilling(sg, Right.ERASURE)
    assert client.get(url("rightsrequest_notice_done", other.pk, notice.pk)).status_code == 404


# --- Disclosures (PM-IV-5) ---------------------------------------------------------------------------------------------


@pytest.fixture
def disclosure_form(db):
    subject = UserFactory(email="ana@example.org")
    category = DataCategoryFactory(code="account-information")
    return subject, {
        "subject_email": "ANA@example.org",
        "authority": "Singapore Police Force",
        "legal_ground": "Criminal Procedure Code s. 20 order",
        "reference": "SPF/2026/0042",
        "categories": [category.pk],
        "disclosed_at": timezone.localtime().strftime("%Y-%m-%d %H:%M:%S"),
        "notes": "",
    }


def test_pm_iv_5_the_dpo_records_a_disclosure_found_by_exact_email_and_it_is_read_only_afterwards(client, disclosure_form):
    subject, data = disclosure_form
    dpo = login(client, "DPO")
    assert client.get(url("disclosure_add")).status_code == 200
    response = client.post(url("disclosure_add"), {**data, "approved_by": dpo.pk})
    disclosure = Disclosure.objects.get()
    assert response.status_code == 302 and response.url == url("disclosure_change", disclosure.pk)
    assert (disclosure.subject, disclosure.created_by, disclosure.approved_by) == (subject, dpo, dpo)
    assert list(disclosure.categories.values_list("code", flat=True)) == ["account-information"]
    assert AuditEvent.objects.filter(subject_ref=subject.subject_ref, action__startswith="disclosure").exists()

    page = client.get(url("disclosure_change", disclosure.pk))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert client.post(url("disclosure_change", disclosure.pk), {**data, "authority": "Changed"}).status_code == 403
    assert client.post(url("disclosure_delete", disclosure.pk), {"post": "yes"}).status_code == 403
    listed = client.get(url("disclosure_changelist") + "?q=ana@example.org")
    assert list(listed.context["cl"].result_list) == [disclosure]
    assert list(client.get(url("disclosure_changelist") + "?q=ana@").context["cl"].result_list) == []


def test_pm_iv_5_unknown_subject_and_the_services_refusals_show_on_the_form(client, disclosure_form):
    _, data = disclosure_form
    dpo = login(client, "DPO")
    unknown = client.post(url("disclosure_add"), {**data, "subject_email": "nobody@example.org", "approved_by": dpo.pk})
    assert "No account has this address." in unknown.context["form"].errors["subject_email"]
    future = (timezone.now() + datetime.timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S")
    refused = client.post(url("disclosure_add"), {**data, "disclosed_at": future, "approved_by": dpo.pk})
    assert "logged after it happened" in str(refused.context["form"].errors["disclosed_at"])
    assert not Disclosure.objects.exists()


@pytest.mark.parametrize("role", ["Privacy analyst", "Support agent", "Auditor"])
def test_pm_iv_5_only_the_dpo_records_disclosures(client, disclosure_form, role):
    _, data = disclosure_form
    user = login(client, role)
    assert client.get(url("disclosure_add")).status_code == 403
    assert client.post(url("disclosure_add"), {**data, "approved_by": user.pk}).status_code == 403
    assert not Disclosure.objects.exists()
