"""The rights-request workbench (POLICY-MAP IX, PM-IX-9): the request list and its queues, the request page's
actions (each a service call), logging a request on a subject's behalf, and the deadline rules, by role.

Roles are the real ones (accounts.roles, synced after migrate): DPO, privacy analyst, support agent, auditor.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.messages import get_messages
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from inventory.models import Jurisdiction
from privacyops.models import AuditEvent
from requests import services
from requests.admin import ACTIONS, available_actions, due_severity
from requests.models import DeadlineRule, HoldReason, PeriodUnit, RequestEvent, RequestPause, Right, RightsRequest, Status
from tests.factories.accounts import UserFactory
from tests.factories.inventory import JurisdictionFactory, staff_in_role
from tests.factories.requests import DeadlineRuleFactory, RightsRequestFactory

pytestmark = pytest.mark.django_db


def url(name, *args):
    return reverse(f"admin:requests_{name}", args=args)


def action_url(rights_request, action, query=""):
    return url("rightsrequest_action", rights_request.pk, action) + query


def login(client, role):
    user = staff_in_role(role)
    client.force_login(user)
    return user


def shown(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def eu(db):
    """DEFAULT (30 days) and a GDPR-shaped EU whose subjects live in DE: one month, +2 months once, pausing."""
    default = JurisdictionFactory(code=Jurisdiction.DEFAULT, countries=[])
    DeadlineRuleFactory(jurisdiction=default, period_value=30, period_unit=PeriodUnit.CALENDAR_DAYS, citation="Default")
    eu = JurisdictionFactory(code="EU", countries=["DE", "FR"], authority_name="The lead authority")
    DeadlineRuleFactory(jurisdiction=eu, gdpr=True)
    return eu


def submitted(eu, *, right=Right.ACCESS, verified=False, **kwargs) -> RightsRequest:
    """A request as the workflow makes it (awaiting verification, or in progress when verified)."""
    subject = kwargs.pop("subject", None) or UserFactory(country="DE")
    return services.rights_request_submit(right=right, contact_email=subject.email, subject=subject, verified=verified, **kwargs)


def events(rights_request, kind=None):
    rows = RequestEvent.objects.filter(request=rights_request)
    return list(rows.filter(kind=kind) if kind else rows)


# --- The list: queues, colours, search, query bounds ------------------------------------------------------------


def _listed(client, query="") -> set[str]:
    response = client.get(url("rightsrequest_changelist") + query)
    assert response.status_code == 200
    return {r.reference for r in response.context["cl"].result_list}


def test_pm_ix_9_queue_filters_list_exactly_their_requests(client, eu):
    dpo = login(client, "DPO")
    now = timezone.now()
    new = RightsRequestFactory(jurisdiction=eu, status=Status.RECEIVED, due_at=now + timedelta(days=30))
    awaiting = RightsRequestFactory(jurisdiction=eu, status=Status.AWAITING_VERIFICATION, due_at=now + timedelta(days=20))
    soon = RightsRequestFactory(jurisdiction=eu, status=Status.IN_PROGRESS, due_at=now + timedelta(days=3), assignee=dpo)
    overdue = RightsRequestFactory(
        jurisdiction=eu, status=Status.IN_PROGRESS, received_at=now - timedelta(days=40), due_at=now - timedelta(days=1)
    )
    # Extended: the extension is the deadline in force, so it is neither overdue nor due soon.
    extended = RightsRequestFactory(
        jurisdiction=eu,
        status=Status.IN_PROGRESS,
        received_at=now - timedelta(days=40),
        due_at=now - timedelta(days=1),
        extended_due_at=now + timedelta(days=50),
        assignee=staff_in_role("Privacy analyst"),
    )
    held = RightsRequestFactory(
        jurisdiction=eu, status=Status.ON_HOLD, held_from=Status.IN_PROGRESS, hold_reason=HoldReason.INTERNAL, assignee=dpo
    )
    closed_late = RightsRequestFactory(
        jurisdiction=eu, status=Status.COMPLETED, received_at=now - timedelta(days=60), due_at=now - timedelta(days=30)
    )

    assert _listed(client) == {r.reference for r in (new, awaiting, soon, overdue, extended, held, closed_late)}
    assert _listed(client, "?queue=new") == {new.reference, awaiting.reference, overdue.reference}
    assert _listed(client, "?queue=awaiting_verification") == {awaiting.reference}
    assert _listed(client, "?queue=due_soon") == {soon.reference}
    assert _listed(client, "?queue=overdue") == {overdue.reference}
    assert _listed(client, "?queue=on_hold") == {held.reference}
    assert _listed(client, "?queue=mine") == {soon.reference, held.reference}


def test_pm_ix_9_due_dates_are_red_when_overdue_amber_within_a_week_and_plain_otherwise(client, eu):
    login(client, "DPO")
    now = timezone.now()
    overdue = RightsRequestFactory(
        jurisdiction=eu, status=Status.IN_PROGRESS, received_at=now - timedelta(days=40), due_at=now - timedelta(hours=1)
    )
    soon = RightsRequestFactory(jurisdiction=eu, status=Status.IN_PROGRESS, due_at=now + timedelta(days=6))
    later = RightsRequestFactory(jurisdiction=eu, status=Status.IN_PROGRESS, due_at=now + timedelta(days=8))
    extended = RightsRequestFactory(
        jurisdiction=eu,
        status=Status.IN_PROGRESS,
        received_at=now - timedelta(days=40),
        due_at=now - timedelta(days=2),
        extended_due_at=now + timedelta(days=30),
    )
    closed = RightsRequestFactory(
        jurisdiction=eu, status=Status.REJECTED, received_at=now - timedelta(days=60), due_at=now - timedelta(days=20)
    )

    assert [due_severity(r) for r in (overdue, soon, later, extended, closed)] == ["red", "amber", "", "", ""]
    html = client.get(url("rightsrequest_changelist")).content.decode()
    assert html.count('class="po-badge po-badge-red"') == 2  # the overdue request's due date, the rejected one's status
    assert 'title="overdue"' in html
    assert html.count('title="due within 7 days"') == 1
    assert "(extended)" in html


def test_due_dates_are_shown_in_the_zone_deadlines_count_days_in(client, eu, settings):
    settings.DEADLINE_TIME_ZONE = "Asia/Singapore"
    login(client, "DPO")
    due = datetime(2026, 12, 27, 15, 59, tzinfo=UTC)  # 23:59 in Singapore: the end of the due day there
    RightsRequestFactory(jurisdiction=eu, received_at=due - timedelta(days=30), due_at=due)
    assert "2026-12-27 23:59 +08" in client.get(url("rightsrequest_changelist")).content.decode()


def test_search_finds_a_reference_and_an_exact_contact_email_only(client, eu):
    login(client, "DPO")
    one = RightsRequestFactory(jurisdiction=eu, contact_email="Ada@Example.org")
    other = RightsRequestFactory(jurisdiction=eu, contact_email="bob@example.org")
    assert _listed(client, f"?q={one.reference}") == {one.reference}
    assert _listed(client, "?q=ada@example.org") == {one.reference}
    assert _listed(client, "?q=example.org") == set()  # never a partial address
    assert other.reference in _listed(client, "?q=bob@example.org")


def _queries(client, path) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(path).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("query", ["", "?queue=overdue", "?queue=mine", "?q=x@example.org"])
def test_the_list_takes_the_same_queries_for_1_and_30_rows(client, eu, django_assert_max_num_queries, query):
    dpo = login(client, "DPO")
    past = timezone.now() - timedelta(days=40)

    def make(n):
        for _ in range(n):
            RightsRequestFactory(
                jurisdiction=eu,
                status=Status.IN_PROGRESS,
                received_at=past,
                due_at=past + timedelta(days=39),
                assignee=dpo,
                contact_email="x@example.org",
            )

    make(1)
    one = _queries(client, url("rightsrequest_changelist") + query)
    make(29)
    with django_assert_max_num_queries(one):
        response = client.get(url("rightsrequest_changelist") + query)
    assert len(response.context["cl"].result_list) == 30


def test_the_request_page_shows_the_timeline_and_pauses_read_only_in_a_bounded_number_of_queries(client, eu):
    dpo = login(client, "DPO")
    rights_request = submitted(eu, verified=True)
    for n in range(10):
        services.rights_request_note(rights_request=rights_request, actor=dpo, message=f"Called the requester ({n}).")
    services.rights_request_hold(rights_request=rights_request, actor=dpo, reason=HoldReason.INTERNAL, note="Asked legal")
    services.rights_request_resume(rights_request=rights_request, actor=dpo)

    response = client.get(url("rightsrequest_change", rights_request.pk))
    html = response.content.decode()
    assert "Called the requester (9)." in html and "Asked legal" in html
    assert 'name="events-TOTAL_FORMS"' in html and 'name="pauses-TOTAL_FORMS"' in html
    assert 'name="_save"' not in html  # the page is read-only: actions change requests
    for inline in response.context["inline_admin_formsets"]:
        assert not inline.has_add_permission and not inline.has_change_permission and not inline.has_delete_permission
    few = _queries(client, url("rightsrequest_change", rights_request.pk))
    for n in range(20):
        services.rights_request_note(rights_request=rights_request, actor=dpo, message=f"More ({n}).")
    assert _queries(client, url("rightsrequest_change", rights_request.pk)) == few


def test_the_bare_add_form_sends_staff_to_log_a_request(client, eu):
    login(client, "DPO")
    response = client.get(url("rightsrequest_add"))
    assert response.status_code == 302 and response.url == url("rightsrequest_log")


# --- Buttons by status and role -------------------------------------------------------------------------------------


def _buttons(client, rights_request) -> set[str]:
    response = client.get(url("rightsrequest_change", rights_request.pk))
    assert response.status_code == 200
    return {b["label"] for b in response.context["request_actions"]}


def test_buttons_follow_the_workflow_table_from_each_status(client, eu):
    dpo = login(client, "DPO")
    awaiting = submitted(eu)
    assert _buttons(client, awaiting) == {
        "Verify", "Ask for verification", "Assign to me", "Assign", "Extend", "Put on hold", "Reject", "Withdraw",
        "Add a note", "Close unverified",
    }  # fmt: skip
    working = submitted(eu, verified=True, right=Right.PORTABILITY)
    services.rights_request_assign(rights_request=working, assignee=dpo, actor=dpo)
    in_progress = {"Assign", "Extend", "Put on hold", "Reject", "Withdraw", "Add a note", "Submit for approval"}
    assert _buttons(client, working) == in_progress
    services.rights_request_move(rights_request=working, to_status=Status.AWAITING_APPROVAL, actor=dpo)
    assert {"Approve", "Move to in progress"} <= _buttons(client, working)
    services.rights_request_approve(rights_request=working, actor=dpo)
    assert "Close" in _buttons(client, working) and "Approve" not in _buttons(client, working)
    services.rights_request_hold(rights_request=working, actor=dpo, reason=HoldReason.INTERNAL)
    assert _buttons(client, working) == {"Assign", "Extend", "Resume", "Reject", "Withdraw", "Add a note"}
    services.rights_request_resume(rights_request=working, actor=dpo)
    services.rights_request_close(rights_request=working, actor=dpo, outcome="Sent the file.")
    assert _buttons(client, working) == {"Add a note"}  # closed: nothing moves any more


def test_the_analyst_approves_other_rights_but_not_erasure(client, eu):
    dpo = staff_in_role("DPO")
    login(client, "Privacy analyst")
    requests_ = {}
    for right in (Right.ACCESS, Right.ERASURE):
        r = submitted(eu, verified=True, right=right)
        services.rights_request_move(rights_request=r, to_status=Status.AWAITING_APPROVAL, actor=dpo)
        requests_[right] = r
    assert "Approve" in _buttons(client, requests_[Right.ACCESS])
    assert "Approve" not in _buttons(client, requests_[Right.ERASURE])
    assert client.get(action_url(requests_[Right.ERASURE], "approve")).status_code == 403
    assert client.post(action_url(requests_[Right.ERASURE], "approve")).status_code == 403
    assert RightsRequest.objects.get(pk=requests_[Right.ERASURE].pk).status == Status.AWAITING_APPROVAL


def test_the_auditor_sees_requests_without_any_button_and_every_action_url_is_forbidden(client, eu):
    login(client, "Auditor")
    rights_request = submitted(eu)
    before = len(events(rights_request))
    assert client.get(url("rightsrequest_changelist")).status_code == 200
    assert _buttons(client, rights_request) == set()
    for action in ACTIONS:
        assert client.get(action_url(rights_request, action)).status_code == 403, action
        assert client.post(action_url(rights_request, action), {"message": "x", "reasons": "x"}).status_code == 403, action
    assert client.get(url("rightsrequest_log")).status_code == 403
    assert len(events(rights_request)) == before  # nothing happened to the request


def test_the_support_agent_logs_requests_but_works_none(client, eu):
    login(client, "Support agent")
    rights_request = submitted(eu)
    assert client.get(url("rightsrequest_log")).status_code == 200
    assert _buttons(client, rights_request) == set()
    for action in ("verify", "note", "assign_me", "reject"):
        assert client.post(action_url(rights_request, action), {"method": "x", "message": "x"}).status_code == 403


def test_buttons_are_computed_without_a_query(eu):
    rights_request = submitted(eu)
    dpo = staff_in_role("DPO")
    dpo.has_perm("requests.view_rightsrequest")  # fills the permission cache
    with CaptureQueriesContext(connection) as ctx:
        available_actions(rights_request, dpo)
    assert not ctx.captured_queries


# --- Each action calls its service; the timeline shows it ------------------------------------------------------------


def _post(client, rights_request, action, data=None, query=""):
    response = client.post(action_url(rights_request, action, query), data or {})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert response.url == url("rightsrequest_change", rights_request.pk)
    rights_request.refresh_from_db()
    return response


def _timeline(client, rights_request) -> str:
    return client.get(url("rightsrequest_change", rights_request.pk)).content.decode()


def test_verify_records_the_method_and_starts_the_work(client, eu):
    login(client, "DPO")
    rights_request = submitted(eu)
    page = client.get(action_url(rights_request, "verify"))
    assert page.status_code == 200 and "How the identity was verified" in page.content.decode()
    response = _post(client, rights_request, "verify", {"method": "Passport copy checked"})
    assert rights_request.verified_at is not None and rights_request.status == Status.IN_PROGRESS
    assert events(rights_request, RequestEvent.Kind.VERIFY)[-1].details == {"method": "Passport copy checked"}
    assert any("verified" in m for m in shown(response))
    assert "Verified" in _timeline(client, rights_request)


def test_assign_to_me_and_to_another_staff_member(client, eu):
    dpo = login(client, "DPO")
    analyst = staff_in_role("Privacy analyst")
    auditor = staff_in_role("Auditor")
    rights_request = submitted(eu)
    _post(client, rights_request, "assign_me")
    assert rights_request.assignee == dpo
    choices = client.get(action_url(rights_request, "assign")).context["form"].fields["assignee"].queryset
    assert analyst in choices and dpo in choices and auditor not in choices  # only staff who can work requests
    _post(client, rights_request, "assign", {"assignee": analyst.pk})
    assert rights_request.assignee == analyst
    assert [e.details["to_user"] for e in events(rights_request, RequestEvent.Kind.ASSIGN)] == [dpo.pk, analyst.pk]
    assert "Assigned" in _timeline(client, rights_request)


def test_extend_asks_for_the_reason_and_sends_the_notice(client, eu, django_capture_on_commit_callbacks):
    login(client, "DPO")
    rights_request = submitted(eu, verified=True)
    before = rights_request.effective_due_at
    missing = client.post(action_url(rights_request, "extend"), {"reason": ""})
    assert missing.status_code == 200 and missing.context["form"].errors["reason"]
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        _post(client, rights_request, "extend", {"reason": "Many stores hold the data."})
    assert rights_request.extended_due_at > before and rights_request.extensions_used == 1
    assert events(rights_request, RequestEvent.Kind.EXTEND)[-1].message == "Many stores hold the data."
    assert len(mail.outbox) == 1
    assert "Deadline extended" in _timeline(client, rights_request)


def test_a_refusal_of_the_service_is_shown_and_nothing_changes(client, eu):
    login(client, "DPO")
    rights_request = submitted(eu, verified=True)
    services.rights_request_extend(rights_request=rights_request, actor=None, reason="First")
    response = client.post(action_url(rights_request, "extend"), {"reason": "Again"})
    assert response.status_code == 200  # the screen again, with the service's words
    assert "cannot be extended" in response.content.decode()
    assert RightsRequest.objects.get(pk=rights_request.pk).extensions_used == 1
    # A button-only action goes back to the request's page with the message.
    closed = submitted(eu)
    services.rights_request_withdraw(rights_request=closed, actor=None)
    response = _post(client, closed, "resume")
    assert any("not on hold" in m for m in shown(response))


def test_hold_with_a_reason_and_note_then_resume(client, eu):
    login(client, "DPO")
    rights_request = submitted(eu, verified=True)
    _post(client, rights_request, "hold", {"reason": HoldReason.AWAITING_CLARIFICATION, "note": "Which account?"})
    assert rights_request.status == Status.ON_HOLD and rights_request.hold_reason == HoldReason.AWAITING_CLARIFICATION
    pause = RequestPause.objects.get(request=rights_request)
    assert pause.stops_clock and pause.note == "Which account?"
    assert "Which account?" in _timeline(client, rights_request)
    _post(client, rights_request, "resume")
    assert rights_request.status == Status.IN_PROGRESS
    assert RequestPause.objects.get(request=rights_request).ended_at is not None


def test_submit_for_approval_approve_and_close_partially(client, eu, django_capture_on_commit_callbacks):
    dpo = login(client, "DPO")
    rights_request = submitted(eu, verified=True, right=Right.ERASURE)
    _post(client, rights_request, "move", {"to_status": Status.AWAITING_APPROVAL, "note": "Ready"}, "?to=awaiting_approval")
    assert rights_request.status == Status.AWAITING_APPROVAL
    assert client.get(action_url(rights_request, "approve")).status_code == 200
    _post(client, rights_request, "approve")
    assert rights_request.status == Status.FULFILLING and rights_request.approved_by == dpo
    with django_capture_on_commit_callbacks(execute=True):
        _post(client, rights_request, "close", {"outcome": "Erased; invoices kept by law.", "partial": "1"})
    assert rights_request.status == Status.PARTIALLY_COMPLETED and rights_request.closed_at
    assert rights_request.outcome == "Erased; invoices kept by law."
    moves = [(e.from_status, e.to_status) for e in events(rights_request, RequestEvent.Kind.MOVE)]
    assert moves[-3:] == [
        (Status.IN_PROGRESS, Status.AWAITING_APPROVAL),
        (Status.AWAITING_APPROVAL, Status.FULFILLING),
        (Status.FULFILLING, Status.PARTIALLY_COMPLETED),
    ]
    assert "Partially completed" in _timeline(client, rights_request)


def test_reject_asks_for_reasons(client, eu, django_capture_on_commit_callbacks):
    login(client, "Privacy analyst")
    rights_request = submitted(eu)
    assert client.post(action_url(rights_request, "reject"), {"reasons": " "}).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        _post(client, rights_request, "reject", {"reasons": "Manifestly unfounded: the fifth copy this month."})
    assert rights_request.status == Status.REJECTED and "Manifestly unfounded" in rights_request.outcome
    assert AuditEvent.objects.filter(action="rights_request.moved", details__to_status=Status.REJECTED).exists()


def test_withdraw_and_add_a_note(client, eu):
    login(client, "DPO")
    rights_request = submitted(eu)
    _post(client, rights_request, "note", {"message": "Requester called to withdraw."})
    _post(client, rights_request, "withdraw")
    assert rights_request.status == Status.WITHDRAWN
    html = _timeline(client, rights_request)
    assert "Requester called to withdraw." in html and "Withdrawn" in html
    _post(client, rights_request, "note", {"message": "Closed file checked."})  # notes on closed requests too
    assert events(rights_request, RequestEvent.Kind.NOTE)[-1].message == "Closed file checked."


def test_an_illegal_plain_move_is_refused_by_the_service_with_its_message(client, eu):
    login(client, "DPO")
    rights_request = submitted(eu)  # awaiting verification: not yet verified
    response = client.post(action_url(rights_request, "move"), {"to_status": Status.AWAITING_APPROVAL})
    assert response.status_code == 200
    assert "cannot move to awaiting approval" in response.content.decode()
    assert RightsRequest.objects.get(pk=rights_request.pk).status == Status.AWAITING_VERIFICATION


def test_an_unknown_action_is_not_found(client, eu):
    login(client, "DPO")
    assert client.get(action_url(submitted(eu), "erase-everything")).status_code == 404


# --- Logging a request received by email, post or phone ---------------------------------------------------------------


def test_staff_find_the_subject_by_exact_email_whatever_its_case(client, eu):
    login(client, "Support agent")
    subject = UserFactory(email="ada.lovelace@example.org", country="DE")
    UserFactory(email="ada@example.org")
    found = client.post(url("rightsrequest_log"), {"subject_email": "Ada.Lovelace@EXAMPLE.org", "find": "1"})
    assert found.status_code == 200 and found.context["found"] == subject
    assert found.context["form"].initial["subject_email"] == "Ada.Lovelace@EXAMPLE.org"  # what was typed is kept
    missing = client.post(url("rightsrequest_log"), {"subject_email": "ada.love@example.org", "find": "1"})
    assert missing.context["found"] is None and "No account found" in missing.content.decode()


def test_support_agent_logs_an_emailed_request_for_the_subject(client, eu, django_capture_on_commit_callbacks):
    agent = login(client, "Support agent")
    subject = UserFactory(email="ada@example.org", country="DE")
    received = timezone.now() - timedelta(days=2)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            url("rightsrequest_log"),
            {
                "subject_email": "ADA@example.org",
                "right": Right.ERASURE,
                "channel": "email",
                "received_at": timezone.localtime(received).strftime("%Y-%m-%d %H:%M:%S"),
                "details": "Please delete my account.",
            },
        )
    rights_request = RightsRequest.objects.get()
    assert response.status_code == 302 and response.url == url("rightsrequest_change", rights_request.pk)
    assert rights_request.subject == subject and rights_request.jurisdiction == eu
    assert rights_request.created_by == agent and rights_request.channel == "email"
    assert rights_request.contact_email == "ada@example.org"  # the account's address when none is given
    assert abs((rights_request.received_at - received).total_seconds()) < 1
    assert rights_request.status == Status.AWAITING_VERIFICATION
    assert events(rights_request)[0].actor == agent
    assert len(mail.outbox) == 1  # the acknowledgement


def test_a_requester_without_an_account_needs_a_jurisdiction_and_a_contact(client, eu):
    login(client, "DPO")
    base = {"right": Right.ACCESS, "channel": "post", "received_at": timezone.localtime().strftime("%Y-%m-%d %H:%M:%S")}
    response = client.post(url("rightsrequest_log"), base)
    assert set(response.context["form"].errors) == {"contact_email", "jurisdiction"}
    unknown = client.post(url("rightsrequest_log"), {**base, "subject_email": "nobody@example.org"})
    assert "No account has this address" in unknown.content.decode()
    future = client.post(
        url("rightsrequest_log"),
        {**base, "contact_email": "a@example.org", "jurisdiction": eu.pk, "received_at": "2999-01-01 00:00:00"},
    )
    assert "received_at" in future.context["form"].errors
    assert not RightsRequest.objects.exists()
    client.post(url("rightsrequest_log"), {**base, "contact_email": "letter@example.org", "jurisdiction": eu.pk})
    logged = RightsRequest.objects.get()
    assert logged.subject is None and logged.jurisdiction == eu and logged.channel == "post"


def test_a_second_open_request_for_the_same_right_is_logged_as_a_duplicate(client, eu):
    login(client, "DPO")
    subject = UserFactory(email="ada@example.org", country="DE")
    first = submitted(eu, subject=subject)
    client.post(
        url("rightsrequest_log"),
        {
            "subject_email": "ada@example.org",
            "right": Right.ACCESS,
            "channel": "phone",
            "received_at": timezone.localtime().strftime("%Y-%m-%d %H:%M:%S"),
        },
    )
    second = RightsRequest.objects.exclude(pk=first.pk).get()
    assert second.status == Status.DUPLICATE and second.duplicate_of == first


def test_the_web_channel_is_not_offered_for_a_logged_request(client, eu):
    login(client, "DPO")
    channels = dict(client.get(url("rightsrequest_log")).context["form"].fields["channel"].choices)
    assert set(channels) == {"email", "post", "phone"}


# --- Deadline rules ---------------------------------------------------------------------------------------------------


def test_deadline_rules_are_listed_by_jurisdiction_with_their_citation(client, eu):
    login(client, "DPO")
    response = client.get(url("deadlinerule_changelist"))
    assert response.status_code == 200
    rows = list(response.context["cl"].result_list)
    assert [r.jurisdiction.code for r in rows] == sorted(r.jurisdiction.code for r in rows)
    assert "GDPR Art. 12(3)" in response.content.decode() and "+2 calendar months, once" in response.content.decode()


def test_a_deadline_rule_change_is_validated_by_the_model_and_audited(client, eu):
    login(client, "DPO")
    rule = DeadlineRule.objects.get(jurisdiction=eu, right="")
    form = {
        "jurisdiction": eu.pk,
        "right": "",
        "citation": rule.citation,
        "notes": "",
        "period_value": 1,
        "period_unit": PeriodUnit.CALENDAR_MONTHS,
        "pauses_for_verification": "on",
        "clock_starts": rule.clock_starts,
        "roll": rule.roll,
        "holiday_calendar": rule.holiday_calendar,
        "extension_value": 2,
        "extension_unit": PeriodUnit.CALENDAR_MONTHS,
        "extensions_allowed": 0,
        "acknowledge_value": "",
        "acknowledge_unit": "",
    }
    bad = client.post(url("deadlinerule_change", rule.pk), form)
    assert bad.status_code == 200
    assert "Say how many times the period may be extended" in bad.content.decode()
    assert DeadlineRule.objects.get(pk=rule.pk).extensions_allowed == 1
    ok = client.post(url("deadlinerule_change", rule.pk), {**form, "extensions_allowed": 2})
    assert ok.status_code == 302
    assert DeadlineRule.objects.get(pk=rule.pk).extensions_allowed == 2
    audit = AuditEvent.objects.filter(action="register.deadlinerule.updated").latest("id")
    assert audit.details["fields"] == ["extensions_allowed"]


def test_a_bad_value_in_the_editable_list_is_shown_on_its_row(client, eu):
    login(client, "DPO")
    rules = list(DeadlineRule.objects.order_by("jurisdiction__code", "right"))
    data = {"form-TOTAL_FORMS": len(rules), "form-INITIAL_FORMS": len(rules), "_save": "Save"}
    for i, rule in enumerate(rules):
        data.update(
            {
                f"form-{i}-id": rule.pk,
                f"form-{i}-period_value": 0 if rule.jurisdiction == eu else rule.period_value,
                f"form-{i}-period_unit": rule.period_unit,
                f"form-{i}-pauses_for_verification": "on" if rule.pauses_for_verification else "",
            }
        )
    response = client.post(url("deadlinerule_changelist"), data)
    assert response.status_code == 200
    assert "Ensure this value is greater than or equal to 1." in response.content.decode()
    assert DeadlineRule.objects.get(jurisdiction=eu, right="").period_value == 1


@pytest.mark.parametrize("role", ["Privacy analyst", "Auditor", "Support agent"])
def test_only_the_dpo_edits_deadline_rules(client, eu, role):
    login(client, role)
    rule = DeadlineRule.objects.get(jurisdiction=eu, right="")
    page = client.get(url("deadlinerule_change", rule.pk))
    if role == "Support agent":
        assert page.status_code == 403
        return
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    client.post(url("deadlinerule_change", rule.pk), {"period_value": 5})
    assert DeadlineRule.objects.get(pk=rule.pk).period_value == 1


# --- The subject's data summary (audited) -------------------------------------------------------------------------


def _data_url(rights_request):
    return url("rightsrequest_personal_data", rights_request.pk)


def test_pm_ix_1_the_data_summary_counts_the_subjects_rows_per_model_category_and_store(client, eu):
    from chat.models import Conversation
    from tests.factories.chat import ConversationFactory

    subject = UserFactory(country="DE")
    ConversationFactory.create_batch(3, user=subject)
    ConversationFactory(user=UserFactory())  # someone else's
    rights_request = submitted(eu, subject=subject)
    RightsRequestFactory(jurisdiction=eu, subject=subject, right=Right.ERASURE)

    login(client, "DPO")
    summary = client.post(_data_url(rights_request)).context["summary"]
    by_model = {count.label: count.rows for count in summary.models}
    assert by_model["chat.Conversation"] == 3 == Conversation.objects.filter(user=subject).count()
    assert by_model["requests.RightsRequest"] == 2 and by_model["accounts.User"] == 1
    assert summary.rows == sum(by_model.values())
    stores = {total.code: total.rows for total in summary.stores}
    assert stores["django-chat"] >= 3 and sum(stores.values()) == summary.rows
    assert sum(total.rows for total in summary.categories) == summary.rows


def test_pm_ix_1_opening_the_data_summary_writes_the_viewed_personal_data_audit_event(client, eu):
    rights_request = submitted(eu)
    analyst = login(client, "Privacy analyst")
    page = client.get(url("rightsrequest_change", rights_request.pk))
    assert page.context["data_url"] == _data_url(rights_request) and "Show the subject's data" in page.content.decode()
    confirm = client.get(_data_url(rights_request))  # says it will be recorded; records nothing
    assert confirm.status_code == 200 and confirm.context["summary"] is None
    assert not AuditEvent.objects.filter(action="personal_data.viewed", details__what="rights_request_summary").exists()

    shown_ = client.post(_data_url(rights_request))
    assert shown_.status_code == 200 and shown_.context["summary"] is not None
    event = AuditEvent.objects.get(action="personal_data.viewed", details__what="rights_request_summary")
    assert event.actor_id == analyst.pk and event.subject_ref == rights_request.subject_ref
    assert event.details["reference"] == rights_request.reference and event.details["rows"] == shown_.context["summary"].rows
    assert rights_request.subject.email not in str(event.details)


@pytest.mark.parametrize("role", ["Support agent", "Auditor"])
def test_pm_ix_1_roles_without_the_permission_neither_see_nor_open_the_data_summary(client, eu, role):
    rights_request = submitted(eu)
    login(client, role)
    assert client.get(url("rightsrequest_change", rights_request.pk)).context["data_url"] == ""
    assert client.get(_data_url(rights_request)).status_code == 403
    assert client.post(_data_url(rights_request)).status_code == 403
    assert not AuditEvent.objects.filter(action="personal_data.viewed", details__what="rights_request_summary").exists()


def test_the_data_summary_takes_the_same_queries_for_few_and_many_rows(client, eu):
    from tests.factories.chat import ConversationFactory

    subject = UserFactory(country="DE")
    rights_request = submitted(eu, subject=subject)
    login(client, "DPO")
    few = _queries_post(client, _data_url(rights_request))
    ConversationFactory.create_batch(25, user=subject)
    assert _queries_post(client, _data_url(rights_request)) == few


def _queries_post(client, path) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.post(path).status_code == 200
    return len(ctx.captured_queries)
