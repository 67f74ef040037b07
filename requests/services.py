"""The rights-request workflow: every change to a request goes through one of these services (PM-IX).

The workflow's steps are here (`rights_request_<action>`: submit, verify, assign, hold, resume, extend,
approve, reject, close, withdraw, move, note); each kind of fulfilment has its own module beside this one,
named by what it does: `verification` (links, status links, the gate), `fulfil` (restriction, objection,
withdrawal of consent), `rectification`, `recipients` (Art. 19), `disclosures`, `exports`, `erasure`,
`reminders`, and `jobs` (the fulfilment jobs' state). All of them write the timeline and the audit trail
through `timeline.request_event_record`. Tasks (`tasks.py`) call them; they queue work only through
`jobs.fulfilment_queue`, after commit.

Invariants:
- A status changes only along `models.MOVES`; anything else raises `RequestActionError` naming the
  current status, the wanted one and the moves allowed from where the request stands. Moves that need
  more than a new status have their own service (hold: a reason; approve: a permission; reject: reasons;
  close: an outcome; duplicate: only at submission), and `rights_request_move` sends the caller there.
- Every service is one transaction that locks the request row (select_for_update) and re-reads it, so two
  staff acting at once act in turn on what the other left. Each writes a `RequestEvent` (the timeline)
  and an audit event whose details carry references and statuses, never names, addresses or content.
- Every closing move sets `closed_at` (the database refuses a closed request without it, and the reverse).
- A subject has at most one open request per right. A second one is created already closed as a
  duplicate of the open one, and the requester is told. Submissions for the same account are serialised
  by locking the account's row; the partial unique index is the backstop (IntegrityError -> duplicate).
- The clock (`requests.deadlines`) is computed there, never here: submit asks for `compute_due`, resume
  for `due_for` (only after a hold that stopped the clock), extend for `extension_due`.
- The instance passed in is updated in place with what was saved, and returned.
"""

from __future__ import annotations

import uuid

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from inventory.selectors import jurisdiction_for_subject

from . import deadlines
from .emails import request_email_send
from .jobs import fulfilment_queue
from .models import (
    CLOCK_STOPPING_HOLDS,
    CLOSED_STATUSES,
    MOVES,
    OPEN_STATUSES,
    Channel,
    ClockStart,
    HoldReason,
    Requester,
    RequestEvent,
    RequestPause,
    Right,
    RightsRequest,
    Status,
)
from .reminders import reminder_marks_for_new_due
from .selectors import requests_open_for
from .timeline import request_event_record

APPROVE = "requests.approve_rightsrequest"
APPROVE_ERASURE = "requests.approve_erasure_rightsrequest"

# Targets that need more than a status; rights_request_move points at the service that does them.
DEDICATED = {
    Status.ON_HOLD: "rights_request_hold (it needs a reason)",
    Status.FULFILLING: "rights_request_approve (it needs an approval)",
    Status.COMPLETED: "rights_request_close (it needs the outcome)",
    Status.PARTIALLY_COMPLETED: "rights_request_close (it needs the outcome)",
    Status.REJECTED: "rights_request_reject (it needs the reasons)",
    Status.DUPLICATE: "nothing: a request is closed as a duplicate only when it is submitted",
}
# Work on a request starts only once we know who asked (PM-IX: no data leaves before verification).
NEEDS_VERIFICATION = frozenset({Status.IN_PROGRESS})


class RequestActionError(ValidationError):
    """An action the workflow does not allow from where the request stands."""


# --- Helpers ----------------------------------------------------------------------------------------------


def _label(status: str) -> str:
    return Status(status).label.lower() if status in Status.values else repr(status)


def _allowed_text(status: str) -> str:
    allowed = sorted(MOVES.get(status, ()))
    return ", ".join(_label(s) for s in allowed) if allowed else "nothing (it is closed)"


def _lock(rights_request: RightsRequest) -> RightsRequest:
    return RightsRequest.objects.locked(rights_request.pk)


def _sync(target: RightsRequest, source: RightsRequest) -> RightsRequest:
    """Copy the saved field values onto the caller's instance (no query), and return it."""
    if target is not source:
        for field in RightsRequest._meta.concrete_fields:
            setattr(target, field.attname, getattr(source, field.attname))
    return target


def _check_move(rights_request: RightsRequest, to_status: str) -> None:
    current = rights_request.status
    if to_status not in Status.values:
        raise RequestActionError(f"{to_status!r} is not a request status.", code="unknown_status")
    if to_status not in MOVES[current]:
        raise RequestActionError(
            f"Request {rights_request.reference} is {_label(current)} and cannot move to {_label(to_status)}; "
            f"from {_label(current)} it can move to {_allowed_text(current)}.",
            code="illegal_move",
        )


def _end_hold(rights_request: RightsRequest, now) -> RequestPause | None:
    """Close the open pause of a request leaving "on hold" and clear its hold fields."""
    pause = RequestPause.objects.filter(request=rights_request, ended_at__isnull=True).first()
    if pause is not None:
        pause.ended_at = now
        pause.save(update_fields=["ended_at"])
    rights_request.held_from = ""
    rights_request.hold_reason = ""
    return pause


def _move(rights_request: RightsRequest, to_status: str, actor, *, note="", details=None, fields=()) -> RequestEvent:
    """Check and apply one move on a locked request; save it with `fields`; write its event and audit."""
    _check_move(rights_request, to_status)
    now = timezone.now()
    from_status = rights_request.status
    changed = {"status", "updated_at", *fields}
    if from_status == Status.ON_HOLD:
        _end_hold(rights_request, now)
        changed |= {"held_from", "hold_reason"}
    if to_status in CLOSED_STATUSES:
        rights_request.closed_at = now
        changed.add("closed_at")
    rights_request.status = to_status
    rights_request.save(update_fields=sorted(changed))
    return request_event_record(
        rights_request=rights_request,
        action="rights_request.moved",
        actor=actor,
        kind=RequestEvent.Kind.MOVE,
        from_status=from_status,
        to_status=to_status,
        message=note,
        details=details,
    )


def _require_text(value: str, what: str) -> str:
    value = (value or "").strip()
    if not value:
        raise RequestActionError(f"Give the {what}.", code="required")
    return value


# --- Submission -------------------------------------------------------------------------------------------


def rights_request_submit(
    *,
    right,
    contact_email,
    jurisdiction=None,
    subject=None,
    details="",
    channel=Channel.WEB,
    requester=Requester.SUBJECT,
    agent_name="",
    agent_authority=None,
    received_at=None,
    actor=None,
    verified=False,
) -> RightsRequest:
    """Record a new request, acknowledge it, and start its clock (PM-IX-9).

    `actor` is the staff member who logged it (email, post, phone), None when the requester submitted it.
    `verified=True` is for a subject signed in on the web: the session proves who asks, and work starts.
    Otherwise the request waits for verification. A request for a right the subject already has an open
    request for is closed at once as its duplicate, and the requester is told so.
    """
    if right not in Right.values:
        raise RequestActionError(f"{right!r} is not a right a request can exercise.", code="unknown_right")
    if channel not in Channel.values:
        raise RequestActionError(f"{channel!r} is not a channel.", code="unknown_channel")
    if requester not in Requester.values:
        raise RequestActionError(f"{requester!r} is not a kind of requester.", code="unknown_requester")
    if requester == Requester.AGENT and not (agent_name or "").strip():
        raise RequestActionError("A request by an agent names the agent.", code="agent_unnamed")
    if verified and (subject is None or requester != Requester.SUBJECT):
        raise RequestActionError("Only a subject signed in to their own account is verified on submission.", code="verified")
    if jurisdiction is None:
        if subject is None:
            raise RequestActionError("A request without an account needs the requester's jurisdiction.", code="jurisdiction")
        jurisdiction = jurisdiction_for_subject(subject=subject)
    received_at = received_at or timezone.now()
    due_at = deadlines.compute_due(jurisdiction, right, received_at)
    values = {
        "subject": subject,
        "subject_ref": getattr(subject, "subject_ref", None),
        "requester": requester,
        "agent_name": (agent_name or "").strip(),
        "contact_email": contact_email,
        "jurisdiction": jurisdiction,
        "right": right,
        "details": details,
        "channel": channel,
        "received_at": received_at,
        "due_at": due_at,
        "created_by": actor,
    }
    if agent_authority:
        values["agent_authority"] = agent_authority

    with transaction.atomic():
        original = None
        if subject is not None:
            # Serialise this subject's submissions: the second waits here, then sees the first one's row.
            get_user_model().objects.select_for_update().filter(pk=subject.pk).first()
            original = requests_open_for(subject.subject_ref, right).first()
        if original is not None:
            return _submit_duplicate(values, original, actor)
        try:
            with transaction.atomic():
                rights_request = RightsRequest.objects.create(reference=_provisional_reference(), **values)
        except IntegrityError:
            # The partial unique index caught a race the lock did not (an account row created mid-way).
            original = requests_open_for(values["subject_ref"], right).first() if values["subject_ref"] else None
            if original is None:
                raise
            return _submit_duplicate(values, original, actor)
        _assign_reference(rights_request)
        request_event_record(
            rights_request=rights_request,
            action="rights_request.submitted",
            actor=actor,
            kind=RequestEvent.Kind.MOVE,
            to_status=Status.RECEIVED,
            details={"channel": channel},
            audit_details={"right": right, "channel": channel, "jurisdiction": jurisdiction.code},
        )
        if verified:
            rights_request.verified_at = timezone.now()
            rights_request.save(update_fields=["verified_at", "updated_at"])
            request_event_record(
                rights_request=rights_request,
                action="rights_request.verified",
                actor=actor,
                kind=RequestEvent.Kind.VERIFY,
                details={"method": "session"},
            )
            _move(rights_request, Status.IN_PROGRESS, actor)
        else:
            _move(rights_request, Status.AWAITING_VERIFICATION, actor)
        rights_request.acknowledged_at = timezone.now()
        rights_request.save(update_fields=["acknowledged_at", "updated_at"])
        request_email_send(rights_request=rights_request, template="acknowledgement", actor=actor, verified=verified)
    return rights_request


def _provisional_reference() -> str:
    # Unique until the row has a pk to number it by, in the same transaction (20 characters at most).
    return "TMP-" + uuid.uuid4().hex[:16]


def _assign_reference(rights_request: RightsRequest) -> None:
    year = timezone.localtime(rights_request.received_at).year
    rights_request.reference = f"DSR-{year}-{rights_request.pk:06d}"
    rights_request.save(update_fields=["reference"])


def _submit_duplicate(values: dict, original: RightsRequest, actor) -> RightsRequest:
    now = timezone.now()
    duplicate = RightsRequest.objects.create(
        reference=_provisional_reference(), status=Status.DUPLICATE, duplicate_of=original, closed_at=now, **values
    )
    _assign_reference(duplicate)
    request_event_record(
        rights_request=duplicate,
        action="rights_request.submitted",
        actor=actor,
        kind=RequestEvent.Kind.MOVE,
        to_status=Status.DUPLICATE,
        message=f"Duplicate of {original.reference}, which is open for the same right.",
        details={"duplicate_of": original.reference, "channel": values["channel"]},
        audit_details={"right": duplicate.right, "channel": duplicate.channel, "duplicate_of": original.reference},
    )
    # A pointer for staff reading the original; the duplicate's own submission is the audited fact.
    request_event_record(
        rights_request=original,
        action="rights_request.note_added",
        actor=actor,
        message=f"{duplicate.reference} was closed as a duplicate of this request.",
        audited=False,
    )
    request_email_send(
        rights_request=duplicate,
        template="duplicate",
        actor=actor,
        original_reference=original.reference,
        original_due_at=original.effective_due_at,
    )
    return duplicate


# --- Moves ------------------------------------------------------------------------------------------------


def rights_request_move(*, rights_request: RightsRequest, to_status: str, actor, note: str = "") -> RightsRequest:
    """A plain move along `MOVES` (to awaiting verification, in progress, awaiting approval, closed
    unverified, withdrawn). Moves that need more go through their own service; this one says which."""
    with transaction.atomic():
        locked = _lock(rights_request)
        _check_move(locked, to_status)
        if to_status in DEDICATED:
            raise RequestActionError(
                f"Request {locked.reference} cannot move to {_label(to_status)} by a plain move: use {DEDICATED[to_status]}.",
                code="dedicated_move",
            )
        if to_status in NEEDS_VERIFICATION and locked.verified_at is None:
            raise RequestActionError(
                f"Request {locked.reference} is not verified: verify who asked before work starts.", code="unverified"
            )
        _move(locked, to_status, actor, note=note)
    return _sync(rights_request, locked)


def rights_request_verify(*, rights_request: RightsRequest, actor, method: str) -> RightsRequest:
    """Record that we know who asked (`method`: session, link, document, ...); a request waiting for it
    moves to in progress."""
    method = _require_text(method, "verification method")
    with transaction.atomic():
        locked = _lock(rights_request)
        if not locked.is_open:
            raise RequestActionError(f"Request {locked.reference} is {_label(locked.status)}: closed requests are not verified.")
        if locked.verified_at is not None:
            raise RequestActionError(f"Request {locked.reference} is already verified.", code="already_verified")
        locked.verified_at = timezone.now()
        fields = ["verified_at", "updated_at"]
        details = {"method": method}
        if deadlines.rule_for(locked.jurisdiction, locked.right).clock_starts == ClockStart.VERIFICATION:
            # PM-IX-9: where the period runs from the proof of identity (UK), it starts again now.
            fields += _due_recompute(locked)
            details["due_at"] = locked.effective_due_at.isoformat()
        locked.save(update_fields=fields)
        request_event_record(
            rights_request=locked,
            action="rights_request.verified",
            actor=actor,
            kind=RequestEvent.Kind.VERIFY,
            details=details,
        )
        if locked.status in (Status.RECEIVED, Status.AWAITING_VERIFICATION):
            _move(locked, Status.IN_PROGRESS, actor)
    return _sync(rights_request, locked)


def rights_request_agent_verify(*, rights_request: RightsRequest, actor) -> RightsRequest:
    """Staff have checked the agent's proof of authority (PM-XI-2); until then nothing of the subject's
    leaves or is erased for an agent's request (requests.verification.require_verified)."""
    with transaction.atomic():
        locked = _lock(rights_request)
        if locked.requester != Requester.AGENT:
            raise RequestActionError(f"Request {locked.reference} was made by the subject, not by an agent.", code="not_agent")
        if not locked.is_open:
            raise RequestActionError(f"Request {locked.reference} is {_label(locked.status)}: closed requests are not verified.")
        if not locked.agent_authority:
            raise RequestActionError(
                f"Request {locked.reference} has no proof of authority: upload the agent's document first.", code="no_authority"
            )
        if locked.agent_verified_at is not None:
            raise RequestActionError(f"The agent of request {locked.reference} is already verified.", code="already_verified")
        locked.agent_verified_at = timezone.now()
        locked.agent_verified_by = actor
        locked.save(update_fields=["agent_verified_at", "agent_verified_by", "updated_at"])
        request_event_record(
            rights_request=locked,
            action="rights_request.agent_verified",
            actor=actor,
            kind=RequestEvent.Kind.VERIFY,
            message="The agent's proof of authority was checked.",
            details={"agent": True},
            audit_details={},
        )
    return _sync(rights_request, locked)


def rights_request_assign(*, rights_request: RightsRequest, assignee, actor) -> RightsRequest:
    """Give the request to a staff member (None: nobody)."""
    if assignee is not None and not (assignee.is_active and assignee.is_staff):
        raise RequestActionError("Requests are assigned to active staff members only.", code="assignee")
    with transaction.atomic():
        locked = _lock(rights_request)
        if not locked.is_open:
            raise RequestActionError(f"Request {locked.reference} is {_label(locked.status)}: closed requests are not assigned.")
        previous = locked.assignee_id
        locked.assignee = assignee
        locked.save(update_fields=["assignee", "updated_at"])
        ids = {"from_user": previous, "to_user": getattr(assignee, "pk", None)}
        request_event_record(
            rights_request=locked, action="rights_request.assigned", actor=actor, kind=RequestEvent.Kind.ASSIGN, details=ids
        )
    return _sync(rights_request, locked)


def rights_request_hold(*, rights_request: RightsRequest, actor, reason: str, note: str = "") -> RightsRequest:
    """Put the request on hold. The legal clock stops only for a verification or clarification hold in a
    jurisdiction whose rule pauses (PM-IX-9); an internal hold lets it run."""
    if reason not in HoldReason.values:
        raise RequestActionError(f"{reason!r} is not a hold reason (one of: {', '.join(HoldReason.values)}).", code="hold_reason")
    with transaction.atomic():
        locked = _lock(rights_request)
        _check_move(locked, Status.ON_HOLD)
        rule = deadlines.rule_for(locked.jurisdiction, locked.right)
        stops_clock = reason in CLOCK_STOPPING_HOLDS and rule.pauses_for_verification
        RequestPause.objects.create(request=locked, reason=reason, note=note, stops_clock=stops_clock)
        locked.held_from = locked.status
        locked.hold_reason = reason
        _move(
            locked,
            Status.ON_HOLD,
            actor,
            note=note,
            details={"reason": reason, "stops_clock": stops_clock},
            fields=("held_from", "hold_reason"),
        )
    return _sync(rights_request, locked)


def _due_recompute(locked: RightsRequest) -> list[str]:
    """Set the request's deadlines afresh from its clock (receipt, verification, holds) and the reminder
    marks to match; the fields it changed, for the caller's save."""
    locked.due_at = deadlines.due_for(locked)
    fields = ["due_at", "reminders_sent"]
    if locked.extensions_used:
        # An extension runs on from the end of the period, so whatever moved the period moves it as well.
        locked.extended_due_at = deadlines.extended_due_for(locked)
        fields.append("extended_due_at")
    locked.reminders_sent = reminder_marks_for_new_due(locked)
    return fields


def rights_request_resume(*, rights_request: RightsRequest, actor) -> RightsRequest:
    """End the hold: back to the status it was held from, the deadline pushed by the pause when it
    stopped the clock (PM-IX-9)."""
    with transaction.atomic():
        locked = _lock(rights_request)
        if locked.status != Status.ON_HOLD:
            raise RequestActionError(f"Request {locked.reference} is {_label(locked.status)}, not on hold: nothing to resume.")
        back_to = locked.held_from
        # The hold was entered along the table; going back is legal only to an open status that could hold.
        if back_to not in OPEN_STATUSES or Status.ON_HOLD not in MOVES[back_to]:
            raise RequestActionError(f"Request {locked.reference} was held from {_label(back_to)} and cannot go back there.")
        now = timezone.now()
        pause = _end_hold(locked, now)
        fields = ["status", "held_from", "hold_reason", "updated_at"]
        details = {"reason": pause.reason if pause else "", "stops_clock": bool(pause and pause.stops_clock)}
        if pause is not None and pause.stops_clock:
            fields += _due_recompute(locked)
            details["due_at"] = locked.effective_due_at.isoformat()
        locked.status = back_to
        locked.save(update_fields=fields)
        request_event_record(
            rights_request=locked,
            action="rights_request.moved",
            actor=actor,
            kind=RequestEvent.Kind.MOVE,
            from_status=Status.ON_HOLD,
            to_status=back_to,
            details=details,
        )
    return _sync(rights_request, locked)


def rights_request_extend(*, rights_request: RightsRequest, actor, reason: str) -> RightsRequest:
    """Extend the period as far as the jurisdiction's rule allows, and tell the requester why (PM-IX-9)."""
    reason = _require_text(reason, "reason for the extension (the requester is told it)")
    with transaction.atomic():
        locked = _lock(rights_request)
        if not locked.is_open:
            raise RequestActionError(f"Request {locked.reference} is {_label(locked.status)}: only an open request is extended.")
        previous_due = locked.effective_due_at
        if timezone.now() > previous_due:
            # GDPR Art. 12(3) and CCPA alike: the requester is told of the extension within the first period.
            raise RequestActionError(f"Request {locked.reference} is already overdue: the period can no longer be extended.")
        try:
            new_due = deadlines.extension_due(locked)
        except ValueError as exc:
            raise RequestActionError(f"Request {locked.reference} cannot be extended: {exc}", code="no_extension") from exc
        locked.extended_due_at = new_due
        locked.extensions_used += 1
        locked.extension_reason = reason
        locked.extension_notice_sent_at = timezone.now()
        locked.reminders_sent = reminder_marks_for_new_due(locked)  # the longer period is reminded afresh
        locked.save(
            update_fields=[
                "extended_due_at",
                "extensions_used",
                "extension_reason",
                "extension_notice_sent_at",
                "reminders_sent",
                "updated_at",
            ]
        )
        details = {
            "due_at": new_due.isoformat(),
            "previous_due_at": previous_due.isoformat(),
            "extensions_used": locked.extensions_used,
        }
        request_event_record(
            rights_request=locked,
            action="rights_request.extended",
            actor=actor,
            kind=RequestEvent.Kind.EXTEND,
            message=reason,
            details=details,
        )
        request_email_send(rights_request=locked, template="extension", actor=actor, reason=reason, previous_due_at=previous_due)
    return _sync(rights_request, locked)


def approval_permission(rights_request: RightsRequest) -> str:
    """The permission that approving this request needs: the one rule the service enforces and the
    workbench's Approve button follows. An erasure needs a DPO's; so does a child report, which once
    confirmed is fulfilled by erasing the account; any other right a DPO's or a privacy analyst's."""
    return APPROVE_ERASURE if rights_request.right in (Right.ERASURE, Right.CHILD_REPORT) else APPROVE


def rights_request_approve(*, rights_request: RightsRequest, actor) -> RightsRequest:
    """Approve the request for fulfilment, if `actor` holds `approval_permission(request)`."""
    with transaction.atomic():
        locked = _lock(rights_request)
        perm = approval_permission(locked)
        if actor is None or not actor.has_perm(perm):
            raise PermissionDenied(f"Approving {locked.get_right_display().lower()} requests needs the permission {perm}.")
        _check_move(locked, Status.FULFILLING)
        locked.approved_by = actor
        locked.approved_at = timezone.now()
        _move(locked, Status.FULFILLING, actor, details={"approved": True}, fields=("approved_by", "approved_at"))
        fulfilment_queue(rights_request=locked)  # access, portability and erasure run as jobs, after commit
    return _sync(rights_request, locked)


def rights_request_reject(*, rights_request: RightsRequest, actor, reasons: str) -> RightsRequest:
    """Refuse the request with reasons; the requester is told where they can complain (PM-IX-7)."""
    reasons = _require_text(reasons, "reasons for the rejection (the requester is told them)")
    with transaction.atomic():
        locked = _lock(rights_request)
        locked.outcome = reasons
        _move(locked, Status.REJECTED, actor, fields=("outcome",))
        jurisdiction = locked.jurisdiction
        request_email_send(
            rights_request=locked,
            template="rejection",
            actor=actor,
            reasons=reasons,
            authority_name=jurisdiction.authority_name,
            complaint_url=jurisdiction.complaint_url,
        )
    return _sync(rights_request, locked)


def rights_request_withdraw(*, rights_request: RightsRequest, actor=None) -> RightsRequest:
    """The requester withdraws (actor None when they do it themselves)."""
    with transaction.atomic():
        locked = _lock(rights_request)
        _move(locked, Status.WITHDRAWN, actor)
    return _sync(rights_request, locked)


def rights_request_close(
    *, rights_request: RightsRequest, actor, outcome: str, partial: bool = False, notify: bool = True
) -> RightsRequest:
    """Close a request being fulfilled as completed (or partly), and tell the requester what was done --
    unless the caller has already told them in its own words (`notify=False`: the erasure's outcome)."""
    outcome = _require_text(outcome, "outcome (what was done; the requester is told it)")
    with transaction.atomic():
        locked = _lock(rights_request)
        locked.outcome = outcome
        to_status = Status.PARTIALLY_COMPLETED if partial else Status.COMPLETED
        _move(locked, to_status, actor, fields=("outcome",))
        if not notify:
            return _sync(rights_request, locked)
        jurisdiction = locked.jurisdiction
        request_email_send(
            rights_request=locked,
            template="completion",
            actor=actor,
            outcome=outcome,
            partial=partial,
            authority_name=jurisdiction.authority_name,
            complaint_url=jurisdiction.complaint_url,
        )
    return _sync(rights_request, locked)


def rights_request_note(*, rights_request: RightsRequest, actor, message: str) -> RequestEvent:
    """A staff note on the timeline (the audit event records that a note was added, not what it says)."""
    message = _require_text(message, "note")
    with transaction.atomic():
        locked = _lock(rights_request)
        event = request_event_record(
            rights_request=locked, action="rights_request.note_added", actor=actor, message=message, audit_details={}
        )
    return event
