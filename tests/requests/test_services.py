"""Submitting rights requests (issue 5 section 1): references, jurisdiction and clock, verification,
duplicates (also racing on PostgreSQL), the timeline and the audit trail, and the queue counts."""

import threading
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection
from django.utils import timezone

from privacyops.audit import audit_chain_verify
from privacyops.models import AuditEvent
from requests import deadlines, services
from requests.models import OPEN_STATUSES, HoldReason, Requester, RequestEvent, RequestPause, Right, RightsRequest, Status
from requests.selectors import request_queue_counts, requests_open_for
from requests.services import RequestActionError
from tests.factories.accounts import StaffFactory, UserFactory
from tests.factories.inventory import JurisdictionFactory
from tests.factories.requests import DeadlineRuleFactory, RightsRequestFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def singapore():
    jurisdiction = JurisdictionFactory(code="SG", countries=["SG"], authority_name="PDPC")
    DeadlineRuleFactory(jurisdiction=jurisdiction, period_value=30, period_unit="calendar_days", citation="PDPA s 21")
    return jurisdiction


def _submit(subject, **kwargs):
    values = {"right": Right.ACCESS, "contact_email": subject.email if subject else "someone@example.org", "subject": subject}
    return services.rights_request_submit(**(values | kwargs))


def test_submit_numbers_the_request_by_year_and_copies_the_subject_ref(singapore):
    subject = UserFactory(country="SG")
    received = timezone.now().replace(year=2026, month=4, day=14)
    rights_request = _submit(subject, received_at=received)
    assert rights_request.reference == f"DSR-{timezone.localtime(received).year}-{rights_request.pk:06d}"
    assert rights_request.subject_ref == subject.subject_ref
    assert rights_request.jurisdiction == singapore
    assert rights_request.due_at == deadlines.compute_due(singapore, Right.ACCESS, received)
    assert rights_request.acknowledged_at is not None and rights_request.created_by is None


def test_submit_takes_a_given_jurisdiction_and_works_without_an_account(singapore):
    elsewhere = JurisdictionFactory()
    DeadlineRuleFactory(jurisdiction=elsewhere, period_value=45, period_unit="calendar_days")
    rights_request = _submit(None, jurisdiction=elsewhere, right=Right.ERASURE)
    assert (rights_request.jurisdiction, rights_request.subject, rights_request.subject_ref) == (elsewhere, None, None)
    with pytest.raises(RequestActionError, match="jurisdiction"):
        _submit(None)


def test_submit_unverified_waits_for_verification_by_an_explicit_move(singapore):
    rights_request = _submit(UserFactory(country="SG"), channel="email", actor=StaffFactory())
    assert rights_request.status == Status.AWAITING_VERIFICATION and rights_request.verified_at is None
    moves = list(rights_request.events.filter(kind=RequestEvent.Kind.MOVE).values_list("from_status", "to_status"))
    assert moves == [("", Status.RECEIVED), (Status.RECEIVED, Status.AWAITING_VERIFICATION)]


def test_submit_by_a_signed_in_subject_is_verified_and_in_progress(singapore):
    rights_request = _submit(UserFactory(country="SG"), verified=True)
    assert rights_request.status == Status.IN_PROGRESS and rights_request.verified_at is not None
    kinds = list(rights_request.events.values_list("kind", "to_status"))
    assert kinds == [
        (RequestEvent.Kind.MOVE, Status.RECEIVED),
        (RequestEvent.Kind.VERIFY, ""),
        (RequestEvent.Kind.MOVE, Status.IN_PROGRESS),
        (RequestEvent.Kind.EMAIL, ""),
    ]
    with pytest.raises(RequestActionError, match="signed in"):
        _submit(None, jurisdiction=singapore, verified=True)


def test_submit_refuses_an_agent_without_a_name_and_an_unknown_right(singapore):
    subject = UserFactory(country="SG")
    with pytest.raises(RequestActionError, match="names the agent"):
        _submit(subject, requester=Requester.AGENT)
    with pytest.raises(RequestActionError, match="not a right"):
        _submit(subject, right="everything")
    assert not RightsRequest.objects.exists()


def test_a_second_request_for_the_same_right_is_closed_as_a_duplicate_of_the_open_one(
    singapore, mailoutbox, django_capture_on_commit_callbacks
):
    subject = UserFactory(country="SG")
    first = _submit(subject)
    with django_capture_on_commit_callbacks(execute=True):
        second = _submit(subject, details="Again, please.")
    assert (second.status, second.duplicate_of, second.closed_at is not None) == (Status.DUPLICATE, first, True)
    assert second.reference != first.reference and second.reference.startswith("DSR-")
    assert list(requests_open_for(subject.subject_ref, Right.ACCESS)) == [first]
    assert first.events.filter(kind=RequestEvent.Kind.NOTE, message__contains=second.reference).exists()
    [email] = mailoutbox
    assert email.to == [subject.email] and first.reference in email.subject and second.reference in email.body
    # Another right, or the same right once the first is closed, opens a new request.
    assert _submit(subject, right=Right.ERASURE).status == Status.AWAITING_VERIFICATION
    services.rights_request_withdraw(rights_request=first)
    assert _submit(subject).status == Status.AWAITING_VERIFICATION


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_submissions_racing_for_the_same_right_open_one_request_and_one_duplicate(singapore):
    subject = UserFactory(country="SG")
    barrier = threading.Barrier(4)
    results, errors = [], []

    def submit():
        try:
            barrier.wait(timeout=10)
            results.append(_submit(subject))
        except Exception as exc:
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    statuses = sorted(r.status for r in RightsRequest.objects.all())
    assert statuses == [Status.AWAITING_VERIFICATION] + [Status.DUPLICATE] * 3
    original = RightsRequest.objects.get(status__in=sorted(OPEN_STATUSES))
    assert set(RightsRequest.objects.filter(status=Status.DUPLICATE).values_list("duplicate_of", flat=True)) == {original.pk}


def test_every_service_writes_the_timeline_and_an_audit_event_without_personal_data(singapore):
    subject = UserFactory(country="SG", email="very.private@example.org", name="Private Person")
    staff = StaffFactory()
    rights_request = _submit(subject, details="My secret details", actor=staff)
    services.rights_request_verify(rights_request=rights_request, actor=staff, method="document")
    services.rights_request_assign(rights_request=rights_request, assignee=staff, actor=staff)
    services.rights_request_hold(rights_request=rights_request, actor=staff, reason=HoldReason.INTERNAL, note="Busy")
    services.rights_request_resume(rights_request=rights_request, actor=staff)
    services.rights_request_note(rights_request=rights_request, actor=staff, message="A private note")
    services.rights_request_move(rights_request=rights_request, to_status=Status.AWAITING_APPROVAL, actor=staff)
    services.rights_request_reject(rights_request=rights_request, actor=staff, reasons="Unfounded.")
    events = AuditEvent.objects.filter(target_id=str(rights_request.pk))
    actions = list(events.order_by("id").values_list("action", flat=True))
    assert actions == [
        "rights_request.submitted",
        "rights_request.moved",  # received -> awaiting verification
        "rights_request.email_sent",  # acknowledgement
        "rights_request.verified",
        "rights_request.moved",  # -> in progress
        "rights_request.assigned",
        "rights_request.moved",  # -> on hold
        "rights_request.moved",  # resumed
        "rights_request.note_added",
        "rights_request.moved",  # -> awaiting approval
        "rights_request.moved",  # -> rejected
        "rights_request.email_sent",  # rejection
    ]
    assert set(events.values_list("subject_ref", flat=True)) == {subject.subject_ref}
    assert all(e.details["reference"] == rights_request.reference for e in events)
    dumped = str(list(events.values_list("details", flat=True)))
    for personal in ("very.private", "Private Person", "secret", "private note", "Busy", "Unfounded"):
        assert personal not in dumped
    assert audit_chain_verify().ok
    kinds = list(rights_request.events.values_list("kind", flat=True))
    for kind in (
        RequestEvent.Kind.MOVE,
        RequestEvent.Kind.VERIFY,
        RequestEvent.Kind.ASSIGN,
        RequestEvent.Kind.NOTE,
        RequestEvent.Kind.EMAIL,
    ):
        assert kind in kinds


def test_a_failed_action_leaves_no_trace(singapore):
    rights_request = _submit(UserFactory(country="SG"))
    events, audits = RequestEvent.objects.count(), AuditEvent.objects.count()
    with pytest.raises(RequestActionError):
        services.rights_request_close(rights_request=rights_request, actor=None, outcome="Done.")
    assert (RequestEvent.objects.count(), AuditEvent.objects.count()) == (events, audits)


def test_queue_counts_for_the_dashboard():
    now = timezone.now()
    staff = StaffFactory()
    RightsRequestFactory(status=Status.IN_PROGRESS)  # new: nobody assigned
    RightsRequestFactory(status=Status.AWAITING_VERIFICATION, assignee=staff)
    RightsRequestFactory(status=Status.IN_PROGRESS, assignee=staff, due_at=now + timedelta(days=3))  # due soon
    RightsRequestFactory(  # extended: due in 20 days, neither soon nor overdue
        status=Status.IN_PROGRESS, assignee=staff, due_at=now + timedelta(days=2), extended_due_at=now + timedelta(days=20)
    )
    RightsRequestFactory(
        status=Status.FULFILLING, assignee=staff, received_at=now - timedelta(days=40), due_at=now - timedelta(days=1)
    )
    internal = RightsRequestFactory(
        status=Status.ON_HOLD, held_from=Status.IN_PROGRESS, hold_reason=HoldReason.INTERNAL, assignee=staff,
        received_at=now - timedelta(days=40), due_at=now - timedelta(days=2),
    )  # fmt: skip
    RequestPause.objects.create(request=internal, reason=HoldReason.INTERNAL, stops_clock=False)
    stopped = RightsRequestFactory(
        status=Status.ON_HOLD, held_from=Status.IN_PROGRESS, hold_reason=HoldReason.AWAITING_CLARIFICATION,
        received_at=now - timedelta(days=40), due_at=now - timedelta(days=2),
    )  # fmt: skip
    RequestPause.objects.create(request=stopped, reason=HoldReason.AWAITING_CLARIFICATION, stops_clock=True)
    RightsRequestFactory(status=Status.COMPLETED, due_at=now - timedelta(days=1), received_at=now - timedelta(days=40))
    counts = request_queue_counts(now=now)
    # overdue: the fulfilling one and the internal hold (its clock runs); not the clarification hold.
    assert counts == {"new": 1, "awaiting_verification": 1, "due_soon": 1, "overdue": 2, "on_hold": 2}


def test_the_partial_unique_index_turns_a_missed_race_into_a_duplicate(singapore, monkeypatch):
    """If the lock ever misses a race (the first look finds nothing open), the index refuses the second open
    request and the submission closes it as a duplicate instead of failing."""
    subject = UserFactory(country="SG")
    first = _submit(subject)
    real = services.requests_open_for
    calls = []

    def blind_first_look(subject_ref, right):
        calls.append(right)
        return real(subject_ref, right).none() if len(calls) == 1 else real(subject_ref, right)

    monkeypatch.setattr(services, "requests_open_for", blind_first_look)
    second = _submit(subject)
    assert len(calls) == 2
    assert (second.status, second.duplicate_of) == (Status.DUPLICATE, first)
    assert RightsRequest.objects.filter(status__in=sorted(OPEN_STATUSES)).count() == 1
