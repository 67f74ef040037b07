"""The consent ledger: appending events, keeping the state cache, linking visitors to accounts.

Invariants (see also the module docstring of `consents.models`):
- One writer per principal at a time: appending locks the principal's `ConsentChain` row (SELECT ... FOR
  UPDATE on PostgreSQL; SQLite transactions hold the single write lock from BEGIN), reads its head, inserts
  the event with `seq = length + 1` and `prev_hash = head`, and moves the head -- all in one transaction.
  There is no global lock, so the banner's hot path scales with the number of visitors.
- Lock order is always visitor chain before account chain (recording a linked visitor's event, linking a
  visitor), so two writers never wait on each other in a cycle.
- `ConsentState` is updated in the same transaction as the event and equals, for every principal and
  purpose, the event with the greatest (effective_at, id) among the principal's events -- for an account,
  its own events and those of every visitor linked to it. `state_from_ledger` recomputes it from the
  ledger alone, for the tests and for `verify_consents`.
- Every change to a principal's consents or restrictions bumps `ConsentChain.version` in the changing
  transaction; decision caches key on it (see `consents.decisions`).
- Events about an account also go to the audit trail. A visitor's own clicks do not: the visitor is not
  a known person, their chain is the record, and the audit trail's global lock stays off the hot path.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from inventory.models import Jurisdiction
from inventory.selectors import jurisdiction_for_subject
from policies.models import PolicyVersion
from policies.selectors import policy_version_in_force
from privacyops.audit import audit_record

from .hashing import keyed_hash
from .models import (
    GENESIS_HASH,
    ConsentChain,
    ConsentEvent,
    ConsentNotice,
    ConsentPurpose,
    ConsentState,
    VisitorLink,
)

Action = ConsentEvent.Action
Method = ConsentEvent.Method

# Methods where the person was shown a notice text; the event must point at it.
NOTICE_METHODS = frozenset({Method.SIGNUP, Method.BANNER, Method.PORTAL})


def notice_current(*, purpose: ConsentPurpose, language: str = "en") -> ConsentNotice | None:
    """The latest notice text for a purpose in a language, falling back to English."""
    notices = ConsentNotice.objects.filter(purpose=purpose).order_by("-created_at", "-id")
    return notices.filter(language=language).first() or notices.filter(language="en").first()


@dataclass(frozen=True)
class Principal:
    """An account (by subject_ref) or an anonymous visitor (by the id in their choice cookie)."""

    subject_ref: uuid.UUID | None = None
    visitor_id: uuid.UUID | None = None

    def __post_init__(self):
        if (self.subject_ref is None) == (self.visitor_id is None):
            raise ValueError("A principal is exactly one of a subject_ref and a visitor_id.")

    @property
    def lookup(self) -> dict:
        return {"subject_ref": self.subject_ref} if self.subject_ref else {"visitor_id": self.visitor_id}


def chain_lock(principal: Principal) -> ConsentChain:
    """The principal's chain row, created if missing and locked until the surrounding transaction ends."""
    chain, _ = ConsentChain.objects.get_or_create(**principal.lookup)
    return ConsentChain.objects.select_for_update().get(pk=chain.pk)


def chain_version_bump(*, subject_ref: uuid.UUID) -> int:
    """Invalidate every cached decision about a subject (restrictions, objections, links call this).

    Must run inside the transaction that makes the change."""
    with transaction.atomic():
        chain = chain_lock(Principal(subject_ref=subject_ref))
        chain.version += 1
        chain.updated_at = timezone.now()
        chain.save(update_fields=["version", "updated_at"])
    return chain.version


def _state_apply(principal: Principal, event: ConsentEvent) -> bool:
    """Make `event` the principal's state for its purpose if it is the latest. True when the state changed."""
    state = ConsentState.objects.select_for_update().filter(purpose_id=event.purpose_id, **principal.lookup).first()
    if state is None:
        ConsentState.objects.create(
            purpose_id=event.purpose_id, event=event, action=event.action, effective_at=event.effective_at, **principal.lookup
        )
        return True
    if (event.effective_at, event.pk) <= (state.effective_at, state.event_id):
        return False
    state.event = event
    state.action = event.action
    state.effective_at = event.effective_at
    state.updated_at = timezone.now()
    state.save(update_fields=["event", "action", "effective_at", "updated_at"])
    return True


def _validate(*, purpose: ConsentPurpose, action: str, method: str, actor, instruction: str, effective_at) -> None:
    if action not in Action.values:
        raise ValidationError({"action": f"Unknown action {action!r}; use one of {', '.join(Action.values)}."})
    if method not in Method.values:
        raise ValidationError({"method": f"Unknown method {method!r}; use one of {', '.join(Method.values)}."})
    if purpose.is_necessary and action != Action.GIVEN:
        raise ValidationError({"purpose": f"{purpose.name} is strictly necessary: it cannot be refused or withdrawn."})
    if action == Action.GIVEN and not purpose.is_active:
        raise ValidationError({"purpose": f"{purpose.name} is no longer offered; consent to it cannot be given."})
    if method == Method.STAFF and (actor is None or not instruction.strip()):
        raise ValidationError(
            {"instruction": "Staff record a consent only on the subject's documented instruction: give its reference."}
        )
    if (method == Method.EXPIRY) != (action == Action.EXPIRED):
        raise ValidationError({"method": "Only the lifetime check expires a consent, and it only expires."})
    if effective_at > timezone.now() + settings.CONSENT_CLOCK_SKEW:
        raise ValidationError({"effective_at": "A consent cannot take effect in the future."})


def consent_record(
    *,
    purpose: ConsentPurpose,
    action: str,
    method: str,
    subject=None,
    visitor_id: uuid.UUID | None = None,
    notice: ConsentNotice | None = None,
    policy_version: PolicyVersion | None = None,
    jurisdiction: str = "",
    language: str = "en",
    ip: str | None = None,
    user_agent: str | None = None,
    gpc: bool = False,
    effective_at=None,
    actor=None,
    actor_label: str = "",
    instruction: str = "",
) -> ConsentEvent:
    """Append one consent event for an account (`subject`, a User) or a visitor, and update the state.

    PM-0-2: nothing is overwritten; the state follows the latest event per purpose. The notice defaults to
    the current text for the purpose and language (required for banner, portal and sign-up events), the
    policy version to the one in force, the jurisdiction to the subject's (visitors: DEFAULT).
    """
    if (subject is None) == (visitor_id is None):
        raise ValidationError("A consent event is about exactly one account or one visitor.")
    now = timezone.now()
    effective_at = effective_at or now
    _validate(purpose=purpose, action=action, method=method, actor=actor, instruction=instruction, effective_at=effective_at)
    if notice is None and method in NOTICE_METHODS:
        notice = notice_current(purpose=purpose, language=language)
        if notice is None:
            raise ValidationError({"notice": f"No notice text for {purpose.name}: write one in the workbench first."})
    if notice is not None and notice.purpose_id != purpose.pk:
        raise ValidationError({"notice": "The notice belongs to another purpose."})
    if policy_version is None:
        policy_version = policy_version_in_force(at=effective_at)
    if not jurisdiction:
        jurisdiction = _jurisdiction_code(subject)
    principal = Principal(subject_ref=subject.subject_ref) if subject is not None else Principal(visitor_id=visitor_id)
    if actor is not None and not actor_label:
        actor_label = actor.get_username()

    with transaction.atomic():
        chain = chain_lock(principal)
        linked_ref = None
        if principal.visitor_id is not None:
            # Read under the visitor's chain lock: visitor_link takes it before it creates the link, so a link
            # made by a transaction that committed while we waited is seen here (READ COMMITTED).
            linked_ref = VisitorLink.objects.filter(visitor_id=principal.visitor_id).values_list("subject_ref", flat=True).first()
        event = ConsentEvent(
            chain=chain,
            seq=chain.length + 1,
            purpose=purpose,
            action=action,
            method=method,
            notice=notice,
            notice_version=notice.version if notice else "",
            notice_sha256=notice.sha256 if notice else "",
            policy_version=policy_version,
            policy_label=policy_version.label if policy_version else "",
            jurisdiction=jurisdiction,
            language=language,
            ip_hash=keyed_hash(ip, scope="ip"),
            ua_hash=keyed_hash(user_agent, scope="ua"),
            gpc=gpc,
            effective_at=effective_at,
            recorded_at=now,
            actor_label=actor_label,
            instruction=instruction.strip(),
            prev_hash=chain.head_hash or GENESIS_HASH,
            **principal.lookup,
        )
        event.hash = event.compute_hash(purpose_code=purpose.code)
        event.save(force_insert=True)
        chain.head_hash = event.hash
        chain.length = event.seq
        chain.version += 1
        chain.updated_at = now
        chain.save(update_fields=["head_hash", "length", "version", "updated_at"])
        _state_apply(principal, event)
        if linked_ref is not None:
            # The account's state takes its linked visitors' events into account (lock order: visitor, account).
            account_chain = chain_lock(Principal(subject_ref=linked_ref))
            if _state_apply(Principal(subject_ref=linked_ref), event):
                account_chain.version += 1
                account_chain.save(update_fields=["version"])
        subject_ref = principal.subject_ref or linked_ref
        if subject_ref is not None:
            audit_record(
                actor=actor,
                action=f"consent.{action}",
                target=event,
                subject=subject_ref,
                details={"purpose": purpose.code, "method": method, "receipt_id": str(event.receipt_id), "seq": event.seq},
            )
    return event


def _jurisdiction_code(subject) -> str:
    if subject is None:
        return Jurisdiction.DEFAULT
    try:
        return jurisdiction_for_subject(subject=subject).code
    except Jurisdiction.DoesNotExist:
        return Jurisdiction.DEFAULT


def visitor_link(*, visitor_id: uuid.UUID, subject, method: str) -> VisitorLink | None:
    """Join a browser's visitor id to the account that signed in or up on it; merge the visitor's state.

    Ledger rows are never rewritten: the account's state simply points at a visitor event where that is
    the latest for a purpose. A visitor id already joined to another account is left alone (None): the
    caller gives the browser a fresh visitor id, so one person's clicks never decide another's consents.
    """
    with transaction.atomic():
        chain_lock(Principal(visitor_id=visitor_id))
        existing = VisitorLink.objects.filter(visitor_id=visitor_id).first()
        if existing is not None:
            return existing if existing.subject_ref == subject.subject_ref else None
        account_chain = chain_lock(Principal(subject_ref=subject.subject_ref))
        link = VisitorLink.objects.create(visitor_id=visitor_id, subject_ref=subject.subject_ref, method=method)
        changed = 0
        for state in ConsentState.objects.filter(visitor_id=visitor_id).select_related("event"):
            changed += _state_apply(Principal(subject_ref=subject.subject_ref), state.event)
        account_chain.version += 1
        account_chain.save(update_fields=["version"])
        audit_record(
            actor=None,
            action="consent.visitor_linked",
            target=link,
            subject=subject,
            details={"method": method, "states_taken": changed},
        )
    return link


def state_from_ledger(*, subject_ref: uuid.UUID | None = None, visitor_id: uuid.UUID | None = None) -> dict[int, int]:
    """purpose id -> event id of the latest event, recomputed from the ledger alone (the state's definition)."""
    if subject_ref is not None:
        visitors = list(VisitorLink.objects.filter(subject_ref=subject_ref).values_list("visitor_id", flat=True))
        events = ConsentEvent.objects.filter(Q(subject_ref=subject_ref) | Q(visitor_id__in=visitors))
    else:
        events = ConsentEvent.objects.filter(visitor_id=visitor_id)
    latest: dict[int, tuple] = {}
    for event_id, purpose_id, effective_at in events.values_list("id", "purpose_id", "effective_at"):
        key = (effective_at, event_id)
        if purpose_id not in latest or key > latest[purpose_id]:
            latest[purpose_id] = key
    return {purpose_id: key[1] for purpose_id, key in latest.items()}


def state_of(*, subject_ref: uuid.UUID | None = None, visitor_id: uuid.UUID | None = None) -> dict[int, int]:
    """purpose id -> event id, as the state cache holds it."""
    lookup = {"subject_ref": subject_ref} if subject_ref is not None else {"visitor_id": visitor_id}
    return dict(ConsentState.objects.filter(**lookup).values_list("purpose_id", "event_id"))
