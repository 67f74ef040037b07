"""The rights-request workflow (issue 5 section 1, PM-IX): the moves table, holds and the clock (PM-IX-9),
extensions, and who may approve."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from accounts.roles import ROLE_AUDITOR, ROLE_DPO, ROLE_PRIVACY_ANALYST, ROLE_SUPPORT_AGENT
from requests import deadlines, services
from requests.models import CLOSED_STATUSES, MOVES, HoldReason, RequestEvent, RequestPause, Right, RightsRequest, Status
from requests.services import RequestActionError
from tests.factories.inventory import staff_in_role
from tests.factories.requests import DeadlineRuleFactory, RightsRequestFactory

pytestmark = pytest.mark.django_db


def _in_status(status, **kwargs) -> RightsRequest:
    """A verified request standing in `status`, with the fields the database asks of that status."""
    now = timezone.now()
    values = {"status": status, "verified_at": now, **kwargs}
    if status == Status.ON_HOLD:
        values |= {"held_from": Status.IN_PROGRESS, "hold_reason": HoldReason.INTERNAL}
    if status == Status.DUPLICATE:
        values["duplicate_of"] = RightsRequestFactory(status=Status.IN_PROGRESS, subject=None)
    rights_request = RightsRequestFactory(**values)
    DeadlineRuleFactory(jurisdiction=rights_request.jurisdiction, gdpr=True)
    if status == Status.ON_HOLD:
        RequestPause.objects.create(request=rights_request, reason=HoldReason.INTERNAL, stops_clock=False)
    return rights_request


def _do_move(rights_request, to_status, actor):
    """Reach `to_status` the way the workbench would: through the service that makes that move."""
    if to_status == Status.ON_HOLD:
        return services.rights_request_hold(rights_request=rights_request, actor=actor, reason=HoldReason.INTERNAL)
    if to_status == Status.FULFILLING:
        return services.rights_request_approve(rights_request=rights_request, actor=actor)
    if to_status in (Status.COMPLETED, Status.PARTIALLY_COMPLETED):
        return services.rights_request_close(
            rights_request=rights_request, actor=actor, outcome="Done.", partial=to_status == Status.PARTIALLY_COMPLETED
        )
    if to_status == Status.REJECTED:
        return services.rights_request_reject(rights_request=rights_request, actor=actor, reasons="Manifestly unfounded.")
    if to_status == Status.WITHDRAWN:
        return services.rights_request_withdraw(rights_request=rights_request, actor=actor)
    return services.rights_request_move(rights_request=rights_request, to_status=to_status, actor=actor)


# A duplicate is only ever created closed at submission (tests/requests/test_services.py); no service moves
# an existing request there.
PAIRS = [(a, b) for a in Status for b in Status if a != b and b != Status.DUPLICATE]


@pytest.mark.parametrize(("from_status", "to_status"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_pm_ix_every_move_the_table_allows_succeeds_and_every_other_is_refused(from_status, to_status):
    dpo = staff_in_role(ROLE_DPO)
    rights_request = _in_status(from_status)
    events_before = RequestEvent.objects.filter(request=rights_request, kind=RequestEvent.Kind.MOVE).count()
    if to_status in MOVES[from_status]:
        _do_move(rights_request, to_status, dpo)
        rights_request.refresh_from_db()
        assert rights_request.status == to_status
        assert (rights_request.closed_at is not None) == (to_status in CLOSED_STATUSES)
        move = RequestEvent.objects.filter(request=rights_request, kind=RequestEvent.Kind.MOVE).latest("id")
        assert (move.from_status, move.to_status, move.actor) == (from_status, to_status, dpo)
    else:
        with pytest.raises(RequestActionError) as refused:
            _do_move(rights_request, to_status, dpo)
        rights_request.refresh_from_db()
        assert rights_request.status == from_status
        assert RequestEvent.objects.filter(request=rights_request, kind=RequestEvent.Kind.MOVE).count() == events_before
        message = refused.value.messages[0]
        assert Status(from_status).label.lower() in message and Status(to_status).label.lower() in message


def test_pm_ix_an_illegal_move_names_both_statuses_and_what_is_allowed():
    rights_request = _in_status(Status.IN_PROGRESS)
    with pytest.raises(RequestActionError) as refused:
        services.rights_request_move(rights_request=rights_request, to_status=Status.COMPLETED, actor=None)
    message = refused.value.messages[0]
    assert "is in progress and cannot move to completed" in message
    assert "awaiting approval" in message and "rejected" in message and "withdrawn" in message


def test_pm_ix_duplicate_is_reachable_only_at_submission():
    assert [s for s, targets in MOVES.items() if Status.DUPLICATE in targets] == [Status.RECEIVED]
    with pytest.raises(RequestActionError, match="only when it is submitted"):
        services.rights_request_move(rights_request=_in_status(Status.RECEIVED), to_status=Status.DUPLICATE, actor=None)


def test_pm_ix_work_starts_only_after_verification():
    rights_request = _in_status(Status.AWAITING_VERIFICATION, verified_at=None)
    with pytest.raises(RequestActionError, match="not verified"):
        services.rights_request_move(rights_request=rights_request, to_status=Status.IN_PROGRESS, actor=None)
    services.rights_request_verify(rights_request=rights_request, actor=None, method="link")
    assert rights_request.status == Status.IN_PROGRESS and rights_request.verified_at is not None
    kinds = list(rights_request.events.values_list("kind", flat=True))
    assert kinds == [RequestEvent.Kind.VERIFY, RequestEvent.Kind.MOVE]


def test_the_caller_instance_is_updated_in_place_and_returned():
    rights_request = _in_status(Status.IN_PROGRESS)
    returned = services.rights_request_move(rights_request=rights_request, to_status=Status.AWAITING_APPROVAL, actor=None)
    assert returned is rights_request and rights_request.status == Status.AWAITING_APPROVAL


# --- Holds and the clock (PM-IX-9) ----------------------------------------------------------------------


def _held_for(rights_request, days: int):
    """Pretend the open pause started `days` ago (the pause table is not append-only; the timeline is)."""
    RequestPause.objects.filter(request=rights_request, ended_at__isnull=True).update(
        started_at=timezone.now() - timedelta(days=days)
    )


@pytest.mark.parametrize("reason", [HoldReason.AWAITING_VERIFICATION, HoldReason.AWAITING_CLARIFICATION])
def test_pm_ix_9_a_verification_or_clarification_hold_stops_the_clock_where_the_rule_pauses(reason):
    rights_request = _in_status(Status.IN_PROGRESS, received_at=timezone.now() - timedelta(days=10))
    rights_request.due_at = deadlines.due_for(rights_request)
    rights_request.save()
    before = rights_request.due_at
    services.rights_request_hold(rights_request=rights_request, actor=None, reason=reason, note="Sent a question.")
    assert (rights_request.status, rights_request.held_from, rights_request.hold_reason) == (
        Status.ON_HOLD,
        Status.IN_PROGRESS,
        reason,
    )
    assert RequestPause.objects.get(request=rights_request).stops_clock
    _held_for(rights_request, 5)
    services.rights_request_resume(rights_request=rights_request, actor=None)
    pause = RequestPause.objects.get(request=rights_request)
    assert pause.ended_at is not None
    assert (rights_request.status, rights_request.held_from, rights_request.hold_reason) == (Status.IN_PROGRESS, "", "")
    pushed = rights_request.due_at - before
    assert pushed == pause.ended_at - pause.started_at
    assert timedelta(days=5) <= pushed < timedelta(days=5, minutes=1)


def test_pm_ix_9_an_internal_hold_lets_the_clock_run():
    rights_request = _in_status(Status.IN_PROGRESS)
    before = rights_request.due_at
    services.rights_request_hold(rights_request=rights_request, actor=None, reason=HoldReason.INTERNAL)
    assert not RequestPause.objects.get(request=rights_request).stops_clock
    _held_for(rights_request, 5)
    services.rights_request_resume(rights_request=rights_request, actor=None)
    assert rights_request.due_at == before


def test_pm_ix_9_a_verification_hold_does_not_stop_the_clock_where_the_rule_does_not_pause():
    rights_request = _in_status(Status.AWAITING_VERIFICATION, verified_at=None)
    rights_request.jurisdiction.deadline_rules.update(pauses_for_verification=False)
    before = rights_request.due_at
    services.rights_request_hold(rights_request=rights_request, actor=None, reason=HoldReason.AWAITING_VERIFICATION)
    assert not RequestPause.objects.get(request=rights_request).stops_clock
    _held_for(rights_request, 5)
    services.rights_request_resume(rights_request=rights_request, actor=None)
    assert rights_request.status == Status.AWAITING_VERIFICATION and rights_request.due_at == before


def test_pm_ix_9_a_pause_pushes_an_extended_deadline_too():
    rights_request = _in_status(Status.IN_PROGRESS, received_at=timezone.now() - timedelta(days=10))
    services.rights_request_extend(rights_request=rights_request, actor=None, reason="Many requests this month.")
    extended = rights_request.extended_due_at
    services.rights_request_hold(rights_request=rights_request, actor=None, reason=HoldReason.AWAITING_CLARIFICATION)
    _held_for(rights_request, 3)
    services.rights_request_resume(rights_request=rights_request, actor=None)
    assert rights_request.extended_due_at == deadlines.extended_due_for(rights_request)
    assert timedelta(days=3) <= rights_request.extended_due_at - extended < timedelta(days=3, minutes=1)


def test_pm_ix_9_rejecting_a_request_on_hold_ends_its_pause():
    rights_request = _in_status(Status.ON_HOLD)
    services.rights_request_reject(rights_request=rights_request, actor=None, reasons="Manifestly excessive.")
    assert (rights_request.status, rights_request.held_from, rights_request.hold_reason) == (Status.REJECTED, "", "")
    assert not RequestPause.objects.filter(request=rights_request, ended_at__isnull=True).exists()


def test_resume_refuses_a_request_not_on_hold_and_hold_refuses_an_unknown_reason():
    rights_request = _in_status(Status.IN_PROGRESS)
    with pytest.raises(RequestActionError, match="not on hold"):
        services.rights_request_resume(rights_request=rights_request, actor=None)
    with pytest.raises(RequestActionError, match="not a hold reason"):
        services.rights_request_hold(rights_request=rights_request, actor=None, reason="lunch")


# --- Extensions (PM-IX-9) -------------------------------------------------------------------------------


def test_pm_ix_9_extension_as_often_as_the_rule_allows_with_a_reason_and_a_notice(mailoutbox):
    rights_request = _in_status(Status.IN_PROGRESS)  # the GDPR-shaped rule: one extension of two months
    with pytest.raises(RequestActionError, match="reason"):
        services.rights_request_extend(rights_request=rights_request, actor=None, reason="  ")
    expected = deadlines.extension_due(rights_request)
    services.rights_request_extend(rights_request=rights_request, actor=None, reason="Complex: five systems to search.")
    assert (rights_request.extended_due_at, rights_request.extensions_used) == (expected, 1)
    assert rights_request.effective_due_at == expected
    assert rights_request.extension_reason == "Complex: five systems to search."
    assert rights_request.extension_notice_sent_at is not None
    assert rights_request.events.filter(kind=RequestEvent.Kind.EXTEND).count() == 1
    with pytest.raises(RequestActionError, match="already extended 1 time"):
        services.rights_request_extend(rights_request=rights_request, actor=None, reason="Again.")
    rights_request.refresh_from_db()
    assert rights_request.extensions_used == 1 and rights_request.extended_due_at == expected


def test_pm_ix_9_no_extension_where_the_rule_allows_none():
    rights_request = _in_status(Status.IN_PROGRESS)
    rights_request.jurisdiction.deadline_rules.update(extension_value=0, extension_unit="", extensions_allowed=0)
    with pytest.raises(RequestActionError, match="allows no extension"):
        services.rights_request_extend(rights_request=rights_request, actor=None, reason="Complex.")


def test_pm_ix_9_no_extension_of_a_closed_or_overdue_request():
    with pytest.raises(RequestActionError, match="only an open request"):
        services.rights_request_extend(rights_request=_in_status(Status.COMPLETED), actor=None, reason="Complex.")
    overdue = _in_status(Status.IN_PROGRESS, received_at=timezone.now() - timedelta(days=60))
    overdue.due_at = overdue.received_at + timedelta(days=30)
    overdue.save()
    with pytest.raises(RequestActionError, match="overdue"):
        services.rights_request_extend(rights_request=overdue, actor=None, reason="Complex.")


# --- Approval (issue 5: erasure by a DPO, other rights by a DPO or analyst) ------------------------------


@pytest.mark.parametrize(
    ("role", "right", "allowed"),
    [
        (ROLE_DPO, Right.ERASURE, True),
        (ROLE_DPO, Right.ACCESS, True),
        (ROLE_PRIVACY_ANALYST, Right.ERASURE, False),
        (ROLE_PRIVACY_ANALYST, Right.ACCESS, True),
        (ROLE_PRIVACY_ANALYST, Right.RECTIFICATION, True),
        (ROLE_AUDITOR, Right.ACCESS, False),
        (ROLE_SUPPORT_AGENT, Right.ACCESS, False),
        (ROLE_SUPPORT_AGENT, Right.ERASURE, False),
    ],
)
def test_pm_ix_2_approval_per_role(role, right, allowed):
    actor = staff_in_role(role)
    rights_request = _in_status(Status.AWAITING_APPROVAL, right=right)
    if allowed:
        services.rights_request_approve(rights_request=rights_request, actor=actor)
        rights_request.refresh_from_db()
        assert (rights_request.status, rights_request.approved_by) == (Status.FULFILLING, actor)
        assert rights_request.approved_at is not None
    else:
        with pytest.raises(PermissionDenied):
            services.rights_request_approve(rights_request=rights_request, actor=actor)
        rights_request.refresh_from_db()
        assert (rights_request.status, rights_request.approved_by) == (Status.AWAITING_APPROVAL, None)


def test_approval_needs_a_person():
    with pytest.raises(PermissionDenied):
        services.rights_request_approve(rights_request=_in_status(Status.AWAITING_APPROVAL), actor=None)


# --- Assigning, notes ------------------------------------------------------------------------------------


def test_assign_to_staff_only_and_notes_on_the_timeline():
    analyst = staff_in_role(ROLE_PRIVACY_ANALYST)
    rights_request = _in_status(Status.IN_PROGRESS)
    services.rights_request_assign(rights_request=rights_request, assignee=analyst, actor=analyst)
    assert rights_request.assignee == analyst
    with pytest.raises(RequestActionError, match="staff"):
        services.rights_request_assign(rights_request=rights_request, assignee=rights_request.subject, actor=analyst)
    event = services.rights_request_note(rights_request=rights_request, actor=analyst, message="Called the requester.")
    assert (event.kind, event.message, event.actor) == (RequestEvent.Kind.NOTE, "Called the requester.", analyst)
    with pytest.raises(RequestActionError):
        services.rights_request_note(rights_request=rights_request, actor=analyst, message="")
