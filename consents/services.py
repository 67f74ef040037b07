"""Consent services: restrictions and objections (PM-IX-5), the choice every UI records (PM-IX-6, PM-III-6),
and the expiry of consents past their lifetime.

Design and invariants:
- Sign-up's writes (`account_signup`): the account, the policy acceptance, the marketing choice and the
  audit event in one transaction; the form only validates.
- Every consent event goes through `consents.ledger.consent_record`; every change to a restriction bumps
  the subject's chain version (`chain_version_bump`) in the transaction that makes it, so a cached
  decision about the subject dies when the change commits.
- `consent_set` locks the principal's chain *before* it reads the state it compares the choices with, so
  two tabs sending the same choice at once write one event, not two.
- Expiry: a consent lapses when `consents.lapse` says so (the one rule); the `expired` event is dated
  at that moment, so the ledger says when the consent really ended, however late the job ran. It goes on
  the chain of the principal whose event it ends (a visitor's event that an account inherited through a
  link is expired on the visitor's chain, and the account follows through the link), and only after the
  state has been read again under that chain's lock: if anything was recorded meanwhile, the candidate is
  left alone. That makes the job idempotent and safe to run twice or concurrently.
- Each expiry is its own short transaction. A batch-wide transaction would hold many chains' locks (and
  the audit trail's) at once, and could deadlock with a linked visitor's click, which locks the visitor's
  chain and then the account's.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from dataclasses import dataclass

from django.contrib.auth import password_validation
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from inventory.models import Purpose
from policies.models import PolicyVersion
from policies.services import policy_accept
from privacyops.audit import audit_record
from retention.services import hold_place

from .lapse import LifetimeUnreadable, consent_lapsed, lapsed_if_given_by, lifetime_end
from .ledger import Principal, chain_lock, chain_version_bump, consent_record
from .models import ConsentEvent, ConsentNotice, ConsentPurpose, ConsentState, ProcessingRestriction

logger = logging.getLogger(__name__)

Action = ConsentEvent.Action
Method = ConsentEvent.Method


# --- Sign-up (PM-0-1, PM-II-2, PM-VIII-1) -------------------------------------------------------------------


def account_signup(
    *,
    email: str,
    password: str,
    name: str,
    country: str,
    region: str,
    date_of_birth: datetime.date,
    policy_version: PolicyVersion,
    marketing: bool,
    marketing_notice: ConsentNotice | None,
    ip: str | None = None,
    user_agent: str | None = None,
) -> User:
    """Create the account, record its acceptance of the policy in force (PM-0-1) and its marketing choice
    (PM-II-2: unticked is a refusal, recorded only when a notice text proves what was asked), and audit the
    sign-up: all in one transaction, or nothing. The sign-up form has checked the age, the password and the
    fields; this refuses an address that another sign-up took in the meantime."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                user = User.objects.create_user(
                    email=email, password=password, name=name, country=country, region=region, date_of_birth=date_of_birth
                )
        except IntegrityError:
            raise ValidationError({"email": "An account with this email address already exists. Sign in instead."}) from None
        password_validation.password_changed(password, user)
        policy_accept(subject=user, version=policy_version, method="signup", client="web", user_agent=user_agent)
        if marketing_notice is not None:
            consent_record(
                purpose=marketing_notice.purpose,
                action=ConsentEvent.Action.GIVEN if marketing else ConsentEvent.Action.REFUSED,
                method=ConsentEvent.Method.SIGNUP,
                subject=user,
                notice=marketing_notice,
                policy_version=policy_version,
                language=marketing_notice.language,
                ip=ip,
                user_agent=user_agent,
            )
        audit_record(
            actor=None,
            action="account.signed_up",
            target=user,
            subject=user,
            details={"policy_version": policy_version.label, "marketing": bool(marketing)},
        )
    return user


# --- Restrictions and objections (PM-IX-5) -----------------------------------------------------------------


def _may(actor, perm: str, *, subject=None) -> bool:
    """The system (actor None) and the subject acting on their own behalf may; staff need the permission."""
    if actor is None:
        return True
    if subject is not None and getattr(actor, "pk", None) == subject.pk:
        return True
    return actor.has_perm(perm)


def _register_purpose(purpose) -> Purpose | None:
    """A register Purpose from a Purpose, a ConsentPurpose, or either's code; None means every purpose."""
    if purpose is None or isinstance(purpose, Purpose):
        return purpose
    if isinstance(purpose, ConsentPurpose):
        return purpose.purpose
    if isinstance(purpose, str):
        found = Purpose.objects.filter(code=purpose).first()
        if found is None:
            consent_purpose = ConsentPurpose.objects.select_related("purpose").filter(code=purpose).first()
            found = consent_purpose.purpose if consent_purpose else None
        if found is None:
            raise ValidationError({"purpose": f"No purpose {purpose!r} in the register or among the consent purposes."})
        return found
    raise ValidationError({"purpose": f"Expected a purpose, a consent purpose or a code, not {type(purpose).__name__}."})


def restriction_place(
    *,
    actor,
    subject,
    kind: str,
    reason: str,
    purpose=None,
    starts_at: datetime.datetime | None = None,
    ends_at: datetime.datetime | None = None,
    for_legal_claims: bool = False,
    reference: str = "",
) -> ProcessingRestriction:
    """PM-IX-5: restrict (Art. 18) or object to (Art. 21) the processing of a subject's data, for one purpose
    (a register purpose, a consent purpose or a code) or for all (`purpose=None`).

    A restriction kept for legal claims (Art. 18(1)(c)) also places a legal hold on the subject's data, so
    no purge or erasure removes what the subject needs for the claim; the hold is stored on the restriction.
    Cached decisions about the subject die when this commits.
    """
    if not _may(actor, "consents.add_processingrestriction", subject=subject):
        raise PermissionDenied("Recording a restriction or objection needs consents.add_processingrestriction.")
    errors: dict[str, str] = {}
    if kind not in ProcessingRestriction.Kind.values:
        errors["kind"] = f"Unknown kind {kind!r}; use one of {', '.join(ProcessingRestriction.Kind.values)}."
    if not (reason or "").strip():
        errors["reason"] = "Say why (the subject's request or the ground for the objection)."
    starts_at = starts_at or timezone.now()
    if ends_at is not None and ends_at <= starts_at:
        errors["ends_at"] = "A restriction must end after it starts."
    if for_legal_claims and kind != ProcessingRestriction.Kind.RESTRICTION:
        errors["for_legal_claims"] = "Only a restriction (Art. 18(1)(c)) is kept for legal claims, not an objection."
    if errors:
        raise ValidationError(errors)
    register_purpose = _register_purpose(purpose)

    with transaction.atomic():
        restriction = ProcessingRestriction.objects.create(
            subject=subject,
            purpose=register_purpose,
            kind=kind,
            starts_at=starts_at,
            ends_at=ends_at,
            reason=reason.strip(),
            for_legal_claims=for_legal_claims,
            reference=reference.strip(),
            created_by=actor,
        )
        if for_legal_claims:
            restriction.legal_hold = hold_place(
                actor=actor,
                subject=subject,
                reason=(
                    f"Processing restricted for legal claims (GDPR Art. 18(1)(c)): restriction #{restriction.pk}. "
                    "Keep the subject's data until the claim is settled."
                ),
                reference=restriction.reference or f"consents restriction #{restriction.pk}",
                review_date=ends_at.date() if ends_at else None,
            )
            restriction.save(update_fields=["legal_hold"])
        chain_version_bump(subject_ref=subject.subject_ref)
        audit_record(
            actor=actor,
            action="consent.objection_recorded" if kind == ProcessingRestriction.Kind.OBJECTION else "consent.restriction_placed",
            target=restriction,
            subject=subject,
            details={
                "purpose": register_purpose.code if register_purpose else None,
                "kind": kind,
                "reference": restriction.reference,
                "for_legal_claims": for_legal_claims,
                "legal_hold": restriction.legal_hold_id,
                "starts_at": starts_at,
                "ends_at": ends_at,
            },
        )
    return restriction


def restriction_lift(*, actor, restriction: ProcessingRestriction, reason: str) -> ProcessingRestriction:
    """End a restriction or objection now (PM-IX-5); cached decisions about the subject die on commit.

    A legal hold the restriction placed stays: lifting a hold needs `retention.lift_legalhold`, a DPO's
    decision made separately (the audit event names the hold so the DPO can review it). A subject may lift
    only what they recorded themselves.
    """
    subject = restriction.subject
    own = actor is not None and restriction.created_by_id is not None and restriction.created_by_id == getattr(actor, "pk", None)
    if not (actor is None or (own and actor.pk == subject.pk) or actor.has_perm("consents.lift_processingrestriction")):
        raise PermissionDenied("Lifting a restriction or objection needs consents.lift_processingrestriction.")
    if not (reason or "").strip():
        raise ValidationError({"reason": "Say why the restriction or objection ends."})
    with transaction.atomic():
        restriction = (
            ProcessingRestriction.objects.select_for_update(of=("self",)).select_related("purpose").get(pk=restriction.pk)
        )
        if restriction.lifted_at is not None:
            raise ValidationError("This restriction or objection has already been lifted.")
        restriction.lifted_at = timezone.now()
        restriction.lifted_by = actor
        restriction.lift_reason = reason.strip()
        restriction.save(update_fields=["lifted_at", "lifted_by", "lift_reason"])
        chain_version_bump(subject_ref=subject.subject_ref)
        details = {
            "purpose": restriction.purpose.code if restriction.purpose_id else None,
            "kind": restriction.kind,
            "reference": restriction.reference,
        }
        if restriction.legal_hold_id:
            details["legal_hold_kept"] = restriction.legal_hold_id
            details["legal_hold_note"] = "The legal hold this restriction placed stays until a DPO reviews and lifts it."
        objection = restriction.kind == ProcessingRestriction.Kind.OBJECTION
        audit_record(
            actor=actor,
            action="consent.objection_withdrawn" if objection else "consent.restriction_lifted",
            target=restriction,
            subject=subject,
            details=details,
        )
    return restriction


# --- The choice every UI records ---------------------------------------------------------------------------


def _choice_action(purpose: ConsentPurpose, state: tuple[str, datetime.datetime] | None, agree: bool, now) -> str | None:
    """The event a yes/no answer writes given the current state, or None when it changes nothing.

    current state            yes        no
    none                     given      refused
    given (within lifetime)  -          withdrawn
    given (lapsed)           given      refused     (the answer to the question asked again)
    refused / withdrawn      given      -
    expired                  given      refused     (the answer to the question asked again)
    """
    action, effective_at = state if state else (None, None)
    live = action == Action.GIVEN and not consent_lapsed(given_at=effective_at, lifetime=purpose.lifetime, at=now)
    if agree:
        return None if live else Action.GIVEN
    if live:
        return Action.WITHDRAWN
    if action in (Action.REFUSED, Action.WITHDRAWN):
        return None
    return Action.REFUSED


def consent_set(
    *, choices: dict[str, bool], method: str, subject=None, visitor_id: uuid.UUID | None = None, **context
) -> list[ConsentEvent]:
    """Record a person's yes/no per consent purpose (codes), writing only the events that change their state.

    PM-IX-6 and PM-III-6: one call per click, whatever the UI (banner, portal, sign-up, API, GPC). A no to
    a current consent withdraws it; a no without one refuses; a yes gives unless already given and within
    its lifetime. Strictly necessary purposes are skipped (they are never refused). `context` goes to
    `consent_record` (language, ip, user_agent, gpc, actor, instruction, jurisdiction, effective_at,
    policy_version, ...); `notice=` is used for the purpose it belongs to and `notices={code: notice}` per
    purpose, else each purpose's current notice. One transaction; returns the events written.
    """
    if (subject is None) == (visitor_id is None):
        raise ValidationError("A choice is made by exactly one account or one visitor.")
    purposes = {p.code: p for p in ConsentPurpose.objects.filter(code__in=list(choices))}
    unknown = sorted(set(choices) - set(purposes))
    if unknown:
        raise ValidationError({"choices": f"Unknown consent purposes: {', '.join(unknown)}."})
    notices = context.pop("notices", None) or {}
    notice = context.pop("notice", None)
    principal = Principal(subject_ref=subject.subject_ref) if subject is not None else Principal(visitor_id=visitor_id)
    now = timezone.now()
    written: list[ConsentEvent] = []
    with transaction.atomic():
        chain_lock(principal)
        states = {
            purpose_id: (action, effective_at)
            for purpose_id, action, effective_at in ConsentState.objects.filter(
                purpose__in=purposes.values(), **principal.lookup
            ).values_list("purpose_id", "action", "effective_at")
        }
        for purpose in sorted(purposes.values(), key=lambda p: (p.position, p.code)):
            if purpose.is_necessary:
                continue
            action = _choice_action(purpose, states.get(purpose.pk), bool(choices[purpose.code]), now)
            if action is None:
                continue
            chosen = notices.get(purpose.code)
            if chosen is None and notice is not None and notice.purpose_id == purpose.pk:
                chosen = notice
            written.append(
                consent_record(
                    purpose=purpose,
                    action=action,
                    method=method,
                    subject=subject,
                    visitor_id=visitor_id,
                    notice=chosen,
                    **context,
                )
            )
    return written


# --- Expiry --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpiryCandidate:
    """A state whose `given` event may have outlived its purpose's lifetime (checked again under the lock)."""

    state_id: int
    event_id: int
    principal: Principal
    given_at: datetime.datetime


def expiry_candidates(
    *, purpose: ConsentPurpose, now: datetime.datetime, after_id: int = 0, limit: int = 1000
) -> list[ExpiryCandidate]:
    """The next `limit` states (by id, after `after_id`) of `purpose` that are `given` and may be past the
    lifetime. Raises LifetimeUnreadable for a lifetime that cannot be read."""
    bound = lapsed_if_given_by(lifetime=purpose.lifetime, at=now)
    if bound is None:
        return []
    rows = (
        ConsentState.objects.filter(purpose=purpose, action=Action.GIVEN, effective_at__lte=bound, pk__gt=after_id)
        .order_by("pk")
        .values_list("pk", "event_id", "event__subject_ref", "event__visitor_id", "effective_at")[:limit]
    )
    return [
        ExpiryCandidate(
            state_id=pk,
            event_id=event_id,
            principal=Principal(subject_ref=subject_ref) if subject_ref else Principal(visitor_id=visitor_id),
            given_at=effective_at,
        )
        for pk, event_id, subject_ref, visitor_id, effective_at in rows
    ]


def consent_expire(*, purpose: ConsentPurpose, candidate: ExpiryCandidate, now: datetime.datetime) -> ConsentEvent | None:
    """Write the `expired` event for one candidate if, under its chain's lock, its principal's state is still
    that `given` event and it has lapsed; otherwise nothing (someone answered meanwhile, or another run won)."""
    expires = lifetime_end(candidate.given_at, purpose.lifetime)
    if expires is None or expires > now:
        return None
    principal = candidate.principal
    subject = None
    if principal.subject_ref is not None:
        subject = User.objects.filter(subject_ref=principal.subject_ref).first()
        if subject is None:
            return None  # the account is erased: nobody left to ask again, and nothing is processed
    with transaction.atomic():
        chain_lock(principal)
        state = ConsentState.objects.filter(purpose=purpose, **principal.lookup).values_list("event_id", "action").first()
        if state != (candidate.event_id, Action.GIVEN):
            return None
        given = ConsentEvent.objects.select_related("notice").get(pk=candidate.event_id)
        return consent_record(
            purpose=purpose,
            action=Action.EXPIRED,
            method=Method.EXPIRY,
            subject=subject,
            visitor_id=principal.visitor_id,
            notice=given.notice,
            jurisdiction=given.jurisdiction,
            language=given.language or "en",
            effective_at=lifetime_end(given.effective_at, purpose.lifetime),
        )


def consent_expire_due(*, now: datetime.datetime | None = None, batch_size: int = 1000) -> int:
    """Write an `expired` event for every consent past its purpose's lifetime; the person is asked again.

    Reads candidates in batches of `batch_size` (keyset by state id, so memory stays bounded and the run
    ends), and expires each in its own transaction after checking it again under its chain's lock. Safe to
    run twice or concurrently: a consent is expired once. Returns how many consents expired.
    """
    now = now or timezone.now()
    expired = 0
    purposes = ConsentPurpose.objects.filter(is_necessary=False).exclude(lifetime="").order_by("pk")
    for purpose in purposes:
        try:
            lifetime_end(now, purpose.lifetime)
        except LifetimeUnreadable:
            logger.exception("Consent purpose %s: its lifetime is not an ISO 8601 period; nothing expires", purpose.code)
            continue
        after_id = 0
        while True:
            batch = expiry_candidates(purpose=purpose, now=now, after_id=after_id, limit=batch_size)
            if not batch:
                break
            for candidate in batch:
                if consent_expire(purpose=purpose, candidate=candidate, now=now) is not None:
                    expired += 1
            after_id = batch[-1].state_id
    if expired:
        with transaction.atomic():
            audit_record(actor=None, action="consent.expired_due", details={"expired": expired, "at": now})
    return expired
