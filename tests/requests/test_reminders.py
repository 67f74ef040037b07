"""PM-IX-9: staff reminders at half and four fifths of a request's period and when it is overdue."""

import datetime

import pytest
from django.core import mail

from accounts.roles import ROLE_AUDITOR, ROLE_DPO
from privacyops.models import AuditEvent
from requests import reminders, tasks
from requests.models import HoldReason, RequestEvent, RequestPause, RightsRequest, Status
from tests.factories.accounts import StaffFactory
from tests.factories.inventory import staff_in_role
from tests.factories.requests import RightsRequestFactory

pytestmark = pytest.mark.django_db

RECEIVED = datetime.datetime(2026, 3, 2, 1, tzinfo=datetime.UTC)
DUE = RECEIVED + datetime.timedelta(days=10)  # half at +5 d, four fifths at +8 d


def _request(**values) -> RightsRequest:
    values.setdefault("received_at", RECEIVED)
    values.setdefault("due_at", DUE)
    return RightsRequestFactory(**values)


def _run(capture, at: datetime.datetime):
    with capture(execute=True):
        return reminders.reminders_send(now=at)


def _marks(rights_request) -> list:
    rights_request.refresh_from_db()
    return rights_request.reminders_sent


def test_pm_ix_9_each_mark_is_sent_once_to_the_assignee(django_capture_on_commit_callbacks):
    assignee = StaffFactory()
    staff_in_role(ROLE_DPO)  # a DPO is not told about an assigned request
    rights_request = _request(assignee=assignee)

    steps = [
        (RECEIVED + datetime.timedelta(days=4, hours=23), []),
        (RECEIVED + datetime.timedelta(days=5), ["half"]),
        (RECEIVED + datetime.timedelta(days=6), ["half"]),
        (RECEIVED + datetime.timedelta(days=8, hours=1), ["half", "four_fifths"]),
        (DUE, ["half", "four_fifths"]),  # due, not yet overdue
        (DUE + datetime.timedelta(seconds=1), ["half", "four_fifths", "overdue"]),
        (DUE + datetime.timedelta(days=3), ["half", "four_fifths", "overdue"]),
    ]
    for at, expected in steps:
        _run(django_capture_on_commit_callbacks, at)
        assert _marks(rights_request) == expected, at

    assert [m.to for m in mail.outbox] == [[assignee.email]] * 3
    subjects = [m.subject for m in mail.outbox]
    assert subjects[0].startswith("Half of the time to answer")
    assert subjects[1].startswith("Four fifths")
    assert subjects[2].startswith("OVERDUE")
    assert all(rights_request.reference in s for s in subjects)
    events = RequestEvent.objects.filter(request=rights_request, kind=RequestEvent.Kind.REMINDER).order_by("id")
    assert [e.details["mark"] for e in events] == ["half", "four_fifths", "overdue"]
    assert all(e.details["recipients"] == [assignee.pk] for e in events)
    audits = AuditEvent.objects.filter(action=reminders.AUDIT_ACTION, target_id=str(rights_request.pk))
    assert [a.details["mark"] for a in audits.order_by("id")] == ["half", "four_fifths", "overdue"]


def test_pm_ix_9_unassigned_requests_go_to_every_active_dpo(django_capture_on_commit_callbacks):
    dpos = [staff_in_role(ROLE_DPO), staff_in_role(ROLE_DPO)]
    staff_in_role(ROLE_DPO, is_active=False)
    staff_in_role(ROLE_AUDITOR)
    StaffFactory()
    rights_request = _request()

    _run(django_capture_on_commit_callbacks, RECEIVED + datetime.timedelta(days=5, hours=1))

    assert len(mail.outbox) == 1
    assert sorted(mail.outbox[0].to) == sorted(u.email for u in dpos)
    assert "you receive this as the DPO" in mail.outbox[0].body
    event = RequestEvent.objects.get(request=rights_request, kind=RequestEvent.Kind.REMINDER)
    assert sorted(event.details["recipients"]) == sorted(u.pk for u in dpos)


def test_pm_ix_9_an_inactive_assignee_is_replaced_by_the_dpos(django_capture_on_commit_callbacks):
    dpo = staff_in_role(ROLE_DPO)
    _request(assignee=StaffFactory(is_active=False))
    _run(django_capture_on_commit_callbacks, RECEIVED + datetime.timedelta(days=5, hours=1))
    assert mail.outbox[0].to == [dpo.email]


def test_pm_ix_9_without_a_dpo_account_the_dpo_address_is_told(django_capture_on_commit_callbacks, settings):
    settings.DPO_EMAIL = "dpo@example.org"
    _request()
    _run(django_capture_on_commit_callbacks, RECEIVED + datetime.timedelta(days=5, hours=1))
    assert mail.outbox[0].to == ["dpo@example.org"]


def test_pm_ix_9_several_marks_at_once_send_one_email_for_the_latest(django_capture_on_commit_callbacks):
    staff_in_role(ROLE_DPO)
    rights_request = _request()

    report = _run(django_capture_on_commit_callbacks, DUE + datetime.timedelta(hours=2))

    assert _marks(rights_request) == ["half", "four_fifths", "overdue"]
    assert len(mail.outbox) == 1 and mail.outbox[0].subject.startswith("OVERDUE")
    assert "(2 hours over)" in mail.outbox[0].body
    assert report.sent == {"half": 0, "four_fifths": 0, "overdue": 1}
    event = RequestEvent.objects.get(request=rights_request, kind=RequestEvent.Kind.REMINDER)
    assert event.details["marks"] == ["half", "four_fifths", "overdue"]


def test_pm_ix_9_the_period_runs_to_the_extended_deadline(django_capture_on_commit_callbacks):
    staff_in_role(ROLE_DPO)
    rights_request = _request(extended_due_at=RECEIVED + datetime.timedelta(days=30), extensions_used=1)

    _run(django_capture_on_commit_callbacks, DUE + datetime.timedelta(days=1))  # past the old due, 11 of 30 days

    assert _marks(rights_request) == []
    _run(django_capture_on_commit_callbacks, RECEIVED + datetime.timedelta(days=15))
    assert _marks(rights_request) == ["half"]


def test_pm_ix_9_hour_periods_are_reminded_within_the_hour(django_capture_on_commit_callbacks):
    staff_in_role(ROLE_DPO)
    rights_request = _request(due_at=RECEIVED + datetime.timedelta(hours=72))
    _run(django_capture_on_commit_callbacks, RECEIVED + datetime.timedelta(hours=36))
    assert _marks(rights_request) == ["half"]
    assert "36 hours left" in mail.outbox[0].body


def test_pm_ix_9_closed_requests_and_stopped_clocks_get_no_reminder(django_capture_on_commit_callbacks):
    staff_in_role(ROLE_DPO)
    closed = _request(status=Status.COMPLETED)
    stopped = _request(status=Status.ON_HOLD, held_from=Status.IN_PROGRESS, hold_reason=HoldReason.AWAITING_VERIFICATION)
    RequestPause.objects.create(request=stopped, reason=HoldReason.AWAITING_VERIFICATION, stops_clock=True, started_at=RECEIVED)
    internal = _request(status=Status.ON_HOLD, held_from=Status.IN_PROGRESS, hold_reason=HoldReason.INTERNAL)
    RequestPause.objects.create(request=internal, reason=HoldReason.INTERNAL, stops_clock=False, started_at=RECEIVED)

    report = _run(django_capture_on_commit_callbacks, DUE + datetime.timedelta(days=1))

    assert _marks(closed) == [] and _marks(stopped) == []
    assert _marks(internal) == ["half", "four_fifths", "overdue"]  # an internal hold does not stop the clock
    assert report.checked == 1 and report.total == 1


def test_pm_ix_9_staff_emails_name_no_requester(django_capture_on_commit_callbacks):
    staff_in_role(ROLE_DPO)
    rights_request = _request(contact_email="alice.requester@example.org", details="Please send me everything about Alice.")
    _run(django_capture_on_commit_callbacks, RECEIVED + datetime.timedelta(days=5, hours=1))
    body = mail.outbox[0].subject + mail.outbox[0].body
    assert rights_request.reference in body
    assert "alice" not in body.lower()
    audit = AuditEvent.objects.get(action=reminders.AUDIT_ACTION)
    assert "alice" not in str(audit.details).lower()


def test_pm_ix_9_nothing_is_sent_when_the_transaction_rolls_back(django_capture_on_commit_callbacks):
    staff_in_role(ROLE_DPO)
    _request()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        reminders.reminders_send(now=RECEIVED + datetime.timedelta(days=5, hours=1))
    assert len(callbacks) == 1 and mail.outbox == []  # the e-mail waits for the commit


def test_pm_ix_9_the_hourly_task_runs_the_service_and_is_scheduled(settings, django_capture_on_commit_callbacks):
    entry = settings.PERIODIC_TASKS["requests: deadline reminders to staff"]
    assert entry["task"] == "requests.tasks.deadline_reminders_send"
    assert entry["schedule"].minute == {0} and len(entry["schedule"].hour) == 24
    staff_in_role(ROLE_DPO)
    received = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=6)
    _request(received_at=received, due_at=received + datetime.timedelta(days=10))
    with django_capture_on_commit_callbacks(execute=True):
        result = tasks.deadline_reminders_send.apply().get()
    assert result["sent"]["half"] == 1 and result["checked"] == 1
    assert len(mail.outbox) == 1


def test_pm_ix_9_after_an_extension_the_marks_the_new_period_has_not_passed_are_sent_again(django_capture_on_commit_callbacks):
    staff_in_role(ROLE_DPO)
    rights_request = _request()
    _run(django_capture_on_commit_callbacks, RECEIVED + datetime.timedelta(days=8, hours=1))
    assert _marks(rights_request) == ["half", "four_fifths"]

    # Extended to 30 days on day 9: day 9 passes no mark of the new period, so both marks are dropped (the
    # caller stores the result) and come back at 15 and 24 days.
    rights_request.extended_due_at = RECEIVED + datetime.timedelta(days=30)
    now = RECEIVED + datetime.timedelta(days=9)
    assert reminders.reminder_marks_for_new_due(rights_request, now=now) == []
    assert reminders.reminder_marks_for_new_due(rights_request, now=RECEIVED + datetime.timedelta(days=16)) == ["half"]
    RightsRequest.objects.filter(pk=rights_request.pk).update(extended_due_at=rights_request.extended_due_at, reminders_sent=[])
    _run(django_capture_on_commit_callbacks, RECEIVED + datetime.timedelta(days=15))
    assert _marks(rights_request) == ["half"]
    assert [m.subject.split()[0] for m in mail.outbox] == ["Four", "Half"]  # the first run sent the latest mark only


def test_pm_ix_9_extending_through_the_service_clears_the_marks_the_longer_period_has_not_passed(
    django_capture_on_commit_callbacks,
):
    from django.utils import timezone

    from requests.services import rights_request_extend
    from tests.factories.requests import DeadlineRuleFactory

    received = timezone.now() - datetime.timedelta(days=20)
    rights_request = _request(received_at=received, due_at=received + datetime.timedelta(days=30), reminders_sent=["half"])
    DeadlineRuleFactory(jurisdiction=rights_request.jurisdiction, gdpr=True)
    with django_capture_on_commit_callbacks(execute=True):
        rights_request_extend(rights_request=rights_request, actor=staff_in_role(ROLE_DPO), reason="Many requests at once")
    assert rights_request.extended_due_at > rights_request.due_at
    assert _marks(rights_request) == []  # 20 days into a three-month period: half is still to come
