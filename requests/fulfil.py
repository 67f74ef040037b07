"""Restriction, objection and withdrawal of consent (PM-IX-5, PM-IX-6), carried out for a rights request.

Everything that decides or records processing lives in the consents app: restrictions and objections are
placed with `consents.services.restriction_place`, withdrawals recorded with `consents.services.consent_set`
(staff method, the request's reference as the subject's documented instruction), and whether processing
may go on is answered by `consents.decisions.is_processing_allowed` alone. Nothing of that logic is here:
this module checks that the request may be carried out, calls those services, and writes what was done on
the request's timeline and in the audit trail.

Invariants:
- A request is carried out only once it is verified and approved (status `fulfilling`), for the right it
  names, and only for an account (restrictions and consents are kept per account).
- Each call is one transaction with the request row locked: the consents change, the timeline entry, the
  audit event and (for a restriction) the Art. 19 tasks commit together or not at all.
- The timeline records what `is_processing_allowed` answers right after the change, asked with an
  explicit time so the answer is never cached from inside a transaction that might still roll back.
- Art. 19 (recipients told) covers restriction, not objection or withdrawal: only a restriction creates
  recipient notices, for the categories the restricted purpose processes (all of the subject's
  categories when every purpose is restricted).
- The request is not closed here: the DPO closes it with `services.rights_request_close`, whose
  completion e-mail tells the requester the outcome.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from consents import services as consents_services
from consents.decisions import DecisionError, is_processing_allowed
from consents.models import ConsentEvent, ConsentPurpose, ProcessingRestriction
from consents.selectors import consent_states
from inventory.selectors import subject_record_counts

from .models import Right, RightsRequest, Status
from .recipients import recipient_notices_create
from .services import RequestActionError
from .timeline import request_event_record

Kind = ProcessingRestriction.Kind
RECORD_CONSENT = "consents.add_consentevent"


def _lock_for(rights_request: RightsRequest, right: str) -> RightsRequest:
    locked = RightsRequest.objects.locked(rights_request.pk)
    if locked.right != right:
        raise RequestActionError(
            f"Request {locked.reference} is for {locked.get_right_display().lower()}, not {Right(right).label.lower()}.",
            code="wrong_right",
        )
    if locked.status != Status.FULFILLING or locked.verified_at is None:
        raise RequestActionError(
            f"Request {locked.reference} is {locked.get_status_display().lower()}: it is carried out once verified and approved.",
            code="status",
        )
    if locked.subject_id is None:
        raise RequestActionError(
            f"Request {locked.reference} has no account: restrictions and consents are kept per account.", code="no_subject"
        )
    return locked


def _decision_now(subject, purpose) -> dict | None:
    """What the one answer says right after the change (explicit `at`: never cached mid-transaction)."""
    if purpose is None:
        return None
    try:
        return is_processing_allowed(subject, purpose, at=timezone.now()).as_dict()
    except DecisionError as error:
        return {"error": str(error)}


def _place(*, rights_request, actor, purpose, reason, kind, right, for_legal_claims=False, ends_at=None) -> ProcessingRestriction:
    with transaction.atomic():
        locked = _lock_for(rights_request, right)
        subject = locked.subject
        restriction = consents_services.restriction_place(
            actor=actor,
            subject=subject,
            kind=kind,
            reason=reason,
            purpose=purpose,
            ends_at=ends_at,
            for_legal_claims=for_legal_claims,
            reference=locked.reference,
        )
        scope = restriction.purpose.code if restriction.purpose_id else None
        decision = _decision_now(subject, restriction.purpose)
        details = {
            "restriction": restriction.pk,
            "kind": kind,
            "purpose": scope,
            "for_legal_claims": for_legal_claims,
            "legal_hold": restriction.legal_hold_id,
        }
        what = "Processing restricted" if kind == Kind.RESTRICTION else "Objection recorded"
        message = f"{what} for {'the purpose ' + scope if scope else 'every purpose'} (restriction #{restriction.pk})."
        if decision is not None and "allowed" in decision:
            message += (
                f" Processing for {scope} is now {'allowed' if decision['allowed'] else 'not allowed'}: {decision['reason']}"
            )
            details["allowed_now"] = decision["allowed"]
        action = "rights_request.restriction_placed" if kind == Kind.RESTRICTION else "rights_request.objection_recorded"
        request_event_record(rights_request=locked, action=action, actor=actor, message=message, details=details)
        if kind == Kind.RESTRICTION:
            recipient_notices_create(rights_request=locked, category_codes=_restricted_categories(subject, restriction))
    return restriction


def _restricted_categories(subject, restriction: ProcessingRestriction) -> list[str]:
    """The categories a restriction covers: what its purpose processes, or every category the subject has rows in."""
    if restriction.purpose_id:
        return sorted(restriction.purpose.categories.values_list("code", flat=True).distinct())
    counts = subject_record_counts(subject)["categories"]
    return sorted(code for code, n in counts.items() if n)


def fulfil_restriction(
    *, rights_request: RightsRequest, actor, purpose=None, reason: str, for_legal_claims: bool = False, ends_at=None
) -> ProcessingRestriction:
    """PM-IX-5, GDPR Art. 18: restrict the processing for one purpose (register or consent purpose, or its
    code) or, with `purpose=None`, for all; `for_legal_claims` also places a legal hold (Art. 18(1)(c)).
    Recipients of the covered categories get Art. 19 tasks."""
    return _place(
        rights_request=rights_request,
        actor=actor,
        purpose=purpose,
        reason=reason,
        kind=Kind.RESTRICTION,
        right=Right.RESTRICTION,
        for_legal_claims=for_legal_claims,
        ends_at=ends_at,
    )


def fulfil_objection(*, rights_request: RightsRequest, actor, purpose=None, reason: str) -> ProcessingRestriction:
    """PM-IX-5, GDPR Art. 21: record the subject's objection to one purpose (or all). An objection to direct
    marketing always wins (Art. 21(3)); `is_processing_allowed` says so."""
    return _place(
        rights_request=rights_request, actor=actor, purpose=purpose, reason=reason, kind=Kind.OBJECTION, right=Right.OBJECTION
    )


def fulfil_withdraw_consent(*, rights_request: RightsRequest, actor, purposes) -> list[ConsentEvent]:
    """PM-IX-6: withdraw the subject's consent to the consent purposes named by code, or, with
    `purposes=None`, to every purpose they currently consent to. Strictly necessary purposes cannot be
    withdrawn (the ledger refuses); they are named on the timeline. Returns the consent events written
    (none for a purpose with no current consent: there is nothing to withdraw)."""
    if actor is None or not actor.has_perm(RECORD_CONSENT):
        raise PermissionDenied(f"Recording a withdrawal on the subject's instruction needs the permission {RECORD_CONSENT}.")
    with transaction.atomic():
        locked = _lock_for(rights_request, Right.WITHDRAW_CONSENT)
        subject = locked.subject
        if purposes is None:
            offered = ConsentPurpose.objects.filter(is_necessary=False).values_list("pk", "code")
            ids = dict(offered)
            states = consent_states(subject_ref=subject.subject_ref, purpose_ids=list(ids))
            codes = sorted(ids[pk] for pk, state in states.items() if state.action == ConsentEvent.Action.GIVEN)
        else:
            codes = sorted({str(code).strip() for code in purposes if str(code).strip()})
            if not codes:
                raise ValidationError({"purposes": "Name the consent purposes to withdraw, or None for every one."})
        necessary = sorted(ConsentPurpose.objects.filter(code__in=codes, is_necessary=True).values_list("code", flat=True))
        events = consents_services.consent_set(
            choices=dict.fromkeys(codes, False),
            method=ConsentEvent.Method.STAFF,
            subject=subject,
            actor=actor,
            instruction=locked.reference,
        )
        after = {code: _decision_now(subject, code) for code in codes if code not in necessary}
        details = {
            "purposes": codes,
            "events": [str(event.receipt_id) for event in events],
            "actions": {event.purpose.code: event.action for event in events},
            "necessary_kept": necessary,
            "allowed_now": {code: answer.get("allowed") for code, answer in after.items() if answer},
        }
        changed = ", ".join(f"{code} {action}" for code, action in details["actions"].items()) or "nothing to withdraw"
        message = f"Consent withdrawn on the subject's request: {changed}."
        if necessary:
            message += f" Strictly necessary, cannot be withdrawn: {', '.join(necessary)}."
        request_event_record(
            rights_request=locked, action="rights_request.consent_withdrawn", actor=actor, message=message, details=details
        )
    return events
