"""Proof of consent (PM-0-2, GDPR Art. 7(1)): a subject's whole ledger for a regulator, and the checks that
the ledger is what was written.

A chain verifies when, walking its events in `seq` order: the positions run 1, 2, 3 ... with no gap; each
event names the chain's principal; each event's `prev_hash` is the hash of the one before (the genesis
hash for the first); each stored hash is the hash of the event's content recomputed now; the chain row's
length and head hash match the last event; and every notice text an event points at still hashes to the
`notice_sha256` the event recorded. So an edited, removed, inserted or reordered event, or a notice text
changed behind the trigger's back, is found. A consistent rewrite of a whole chain by someone with full
database access is not (the same limit as the audit trail's chain; the audit events that mirror every
account's consent events are anchored outside the database, see docs/audit.md).

The state cache is checked too: for every principal, `ConsentState` must equal `state_from_ledger`.

Everything here reads in bounded memory: chains are walked one at a time, in keyset pages, and each
chain's events in pages of `chunk_size`.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import asdict, dataclass, field

from django.db.models import Q

from policies.models import PolicyAcceptance

from .ledger import state_from_ledger, state_of
from .models import (
    GENESIS_HASH,
    ConsentChain,
    ConsentEvent,
    ConsentNotice,
    ConsentPurpose,
    ConsentState,
    ProcessingRestriction,
    VisitorLink,
)

# A chain broken everywhere would otherwise list every event; the first problems say enough. Likewise a
# disaster that breaks every chain is reported by count beyond the first reports, to keep memory bounded.
MAX_PROBLEMS_PER_CHAIN = 50
MAX_REPORTS = 1000


def _principal_label(subject_ref, visitor_id) -> str:
    return f"subject {subject_ref}" if subject_ref else f"visitor {visitor_id}"


@dataclass
class ChainReport:
    """The result of checking one principal's chain."""

    principal: str
    chain_id: int
    checked: int = 0
    length: int = 0
    head_hash: str = GENESIS_HASH
    problems: list[str] = field(default_factory=list)
    first_bad_seq: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, message: str, *, seq: int | None = None) -> None:
        if seq is not None and self.first_bad_seq is None:
            self.first_bad_seq = seq
        if len(self.problems) < MAX_PROBLEMS_PER_CHAIN:
            self.problems.append(message)

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


@dataclass
class StateMismatch:
    """A principal whose state cache differs from what its ledger says, per purpose code."""

    principal: str
    differences: dict[str, dict]

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ChainsSummary:
    """The result of checking every chain (or one subject's) and the state cache."""

    chains: int = 0
    events: int = 0
    broken_chains: int = 0
    mismatched_principals: int = 0
    broken: list[ChainReport] = field(default_factory=list)  # the first MAX_REPORTS
    state_mismatches: list[StateMismatch] = field(default_factory=list)  # the first MAX_REPORTS
    orphan_states: int = 0

    @property
    def ok(self) -> bool:
        return not self.broken_chains and not self.mismatched_principals and not self.orphan_states

    def add(self, report: ChainReport) -> None:
        self.chains += 1
        self.events += report.checked
        if not report.ok:
            self.broken_chains += 1
            if len(self.broken) < MAX_REPORTS:
                self.broken.append(report)

    def mismatch(self, mismatch: StateMismatch | None) -> None:
        if mismatch is not None:
            self.mismatched_principals += 1
            if len(self.state_mismatches) < MAX_REPORTS:
                self.state_mismatches.append(mismatch)

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "chains": self.chains,
            "events": self.events,
            "broken_chains": self.broken_chains,
            "mismatched_principals": self.mismatched_principals,
            "broken": [report.as_dict() for report in self.broken],
            "state_mismatches": [mismatch.as_dict() for mismatch in self.state_mismatches],
            "orphan_states": self.orphan_states,
        }


def _events_in_order(chain: ConsentChain, *, chunk_size: int):
    """The chain's events by seq, read in keyset pages (bounded memory, no server-side cursor)."""
    after = 0
    while True:
        events = ConsentEvent.objects.filter(chain=chain, seq__gt=after).select_related("purpose", "notice")
        page = list(events.order_by("seq")[:chunk_size])
        if not page:
            return
        yield from page
        after = page[-1].seq


def _notice_problem(event: ConsentEvent) -> str | None:
    if event.notice_id is None:
        return "it records a notice hash but no notice text" if event.notice_sha256 else None
    notice = event.notice
    if ConsentNotice.digest(notice.text) != event.notice_sha256:
        return "the notice text it points at no longer hashes to the recorded notice hash (the text was changed)"
    if notice.version != event.notice_version:
        return "the notice it points at carries another version than the one recorded"
    return None


def chain_verify(chain: ConsentChain, *, chunk_size: int = 1000) -> ChainReport:
    """Check one principal's chain: seq continuity, links, hashes, head and length, notice texts."""
    report = ChainReport(principal=_principal_label(chain.subject_ref, chain.visitor_id), chain_id=chain.pk)
    prev = GENESIS_HASH
    expected_seq = 1
    for event in _events_in_order(chain, chunk_size=chunk_size):
        if event.seq != expected_seq:
            report.problem(
                f"seq {expected_seq}: missing (the next event is seq {event.seq}): an event was removed", seq=expected_seq
            )
            expected_seq = event.seq
        if (event.subject_ref, event.visitor_id) != (chain.subject_ref, chain.visitor_id):
            report.problem(f"seq {event.seq}: it names another principal than its chain's", seq=event.seq)
        if event.prev_hash != prev:
            report.problem(
                f"seq {event.seq}: its previous hash does not match the event before it "
                "(an event was removed, inserted or reordered)",
                seq=event.seq,
            )
        if event.compute_hash(purpose_code=event.purpose.code) != event.hash:
            report.problem(f"seq {event.seq}: its content does not match its hash (the event was edited)", seq=event.seq)
        notice_problem = _notice_problem(event)
        if notice_problem:
            report.problem(f"seq {event.seq}: {notice_problem}", seq=event.seq)
        prev = event.hash
        expected_seq += 1
        report.checked += 1
    report.length = report.checked
    report.head_hash = prev
    if chain.length != expected_seq - 1:
        report.problem(f"the chain says it has {chain.length} events but its last is seq {expected_seq - 1}")
    if chain.head_hash != prev:
        report.problem("the chain's head hash is not the hash of its last event (events were removed from its end)")
    return report


def _purpose_codes(ids) -> dict[int, str]:
    return dict(ConsentPurpose.objects.filter(pk__in=set(ids)).values_list("pk", "code"))


def state_check(*, subject_ref: uuid.UUID | None = None, visitor_id: uuid.UUID | None = None) -> StateMismatch | None:
    """Compare one principal's state cache with the ledger; None when they agree."""
    cached = state_of(subject_ref=subject_ref, visitor_id=visitor_id)
    ledger = state_from_ledger(subject_ref=subject_ref, visitor_id=visitor_id)
    if cached == ledger:
        return None
    codes = _purpose_codes([*cached, *ledger])
    differences = {
        codes.get(purpose_id, str(purpose_id)): {"state_event": cached.get(purpose_id), "ledger_event": ledger.get(purpose_id)}
        for purpose_id in sorted(set(cached) | set(ledger))
        if cached.get(purpose_id) != ledger.get(purpose_id)
    }
    return StateMismatch(principal=_principal_label(subject_ref, visitor_id), differences=differences)


def _orphan_states() -> int:
    """States of a principal that has no chain (a state always comes from an event on some chain)."""
    subjects = ConsentChain.objects.filter(subject_ref__isnull=False).values("subject_ref")
    visitors = ConsentChain.objects.filter(visitor_id__isnull=False).values("visitor_id")
    return (
        ConsentState.objects.filter(subject_ref__isnull=False).exclude(subject_ref__in=subjects).count()
        + ConsentState.objects.filter(visitor_id__isnull=False).exclude(visitor_id__in=visitors).count()
    )


def _check(summary: ChainsSummary, chain: ConsentChain, *, chunk_size: int) -> None:
    summary.add(chain_verify(chain, chunk_size=chunk_size))
    summary.mismatch(state_check(subject_ref=chain.subject_ref, visitor_id=chain.visitor_id))


def subject_chains(subject_ref: uuid.UUID | str) -> list[ConsentChain]:
    """A subject's own chain and the chains of the visitors linked to it."""
    visitors = VisitorLink.objects.filter(subject_ref=subject_ref).values("visitor_id")
    return list(ConsentChain.objects.filter(Q(subject_ref=subject_ref) | Q(visitor_id__in=visitors)).order_by("pk"))


def chains_verify(*, subject_ref: uuid.UUID | str | None = None, chunk_size: int = 1000) -> ChainsSummary:
    """Check every chain (or one subject's own and linked visitors' chains) and that every principal's state
    equals its ledger. Bounded memory: one chain at a time, chains in keyset pages of `chunk_size`."""
    summary = ChainsSummary()
    if subject_ref is not None:
        for chain in subject_chains(subject_ref):
            _check(summary, chain, chunk_size=chunk_size)
        if not ConsentChain.objects.filter(subject_ref=subject_ref).exists():
            summary.mismatch(state_check(subject_ref=uuid.UUID(str(subject_ref))))
        return summary
    after = 0
    while True:
        page = list(ConsentChain.objects.filter(pk__gt=after).order_by("pk")[:chunk_size])
        if not page:
            break
        for chain in page:
            _check(summary, chain, chunk_size=chunk_size)
        after = page[-1].pk
    summary.orphan_states = _orphan_states()
    return summary


# --- The proof for a regulator ---------------------------------------------------------------------------


def _iso(value: datetime.datetime | None) -> str | None:
    return value.astimezone(datetime.UTC).isoformat() if value else None


def _event_record(event: ConsentEvent, chain_label: str) -> dict:
    notice = event.notice
    return {
        "chain": chain_label,
        "seq": event.seq,
        "receipt_id": str(event.receipt_id),
        "purpose": {"code": event.purpose.code, "name": event.purpose.name},
        "action": event.action,
        "method": event.method,
        "method_label": event.get_method_display(),
        "effective_at": _iso(event.effective_at),
        "recorded_at": _iso(event.recorded_at),
        "notice": {
            "version": event.notice_version,
            "sha256": event.notice_sha256,
            "language": notice.language if notice else "",
            "text": notice.text if notice else "",
            "text_matches_hash": (ConsentNotice.digest(notice.text) == event.notice_sha256) if notice else None,
        },
        "policy_version": event.policy_label,
        "jurisdiction": event.jurisdiction,
        "language": event.language,
        "ip_hash": event.ip_hash,
        "ua_hash": event.ua_hash,
        "gpc": event.gpc,
        "recorded_by": event.actor_label,
        "instruction": event.instruction,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def consent_proof(*, subject_ref: uuid.UUID | str) -> dict:
    """PM-0-2: everything that proves what a subject consented to, as JSON-ready data for a regulator.

    Their own chain and the chains of the visitors linked to their account, every event with the notice
    text it was given under and its hash; the current state; their restrictions and objections; the policy
    versions they accepted; and the result of checking those chains and that state now.
    """
    subject_ref = uuid.UUID(str(subject_ref))
    links = {link.visitor_id: link for link in VisitorLink.objects.filter(subject_ref=subject_ref)}
    chains = subject_chains(subject_ref)
    summary = ChainsSummary()
    chain_records, events = [], []
    for chain in chains:
        label = "account" if chain.subject_ref else f"visitor:{chain.visitor_id}"
        report = chain_verify(chain)
        summary.add(report)
        record = {"chain": label, "length": chain.length, "head_hash": chain.head_hash, "check": report.as_dict()}
        if chain.visitor_id in links:
            link = links[chain.visitor_id]
            record["linked"] = {"method": link.method, "linked_at": _iso(link.linked_at)}
        chain_records.append(record)
        events.extend(
            _event_record(event, label)
            for event in ConsentEvent.objects.filter(chain=chain).select_related("purpose", "notice").order_by("seq")
        )
    summary.mismatch(state_check(subject_ref=subject_ref))
    state = [
        {
            "purpose": s.purpose.code,
            "action": s.action,
            "since": _iso(s.effective_at),
            "receipt_id": str(s.event.receipt_id),
        }
        for s in ConsentState.objects.filter(subject_ref=subject_ref).select_related("purpose", "event").order_by("purpose__code")
    ]
    restriction_rows = ProcessingRestriction.objects.filter(subject__subject_ref=subject_ref).select_related("purpose")
    restrictions = [
        {
            "kind": r.kind,
            "purpose": r.purpose.code if r.purpose_id else None,
            "starts_at": _iso(r.starts_at),
            "ends_at": _iso(r.ends_at),
            "reason": r.reason,
            "reference": r.reference,
            "for_legal_claims": r.for_legal_claims,
            "legal_hold": r.legal_hold_id,
            "created_at": _iso(r.created_at),
            "lifted_at": _iso(r.lifted_at),
            "lift_reason": r.lift_reason,
            "active": r.is_active(),
        }
        for r in restriction_rows.order_by("created_at", "pk")
    ]
    acceptances = [
        {
            "version": a.version.label,
            "last_updated": a.version.last_updated.isoformat(),
            "effective_at": _iso(a.version.effective_at),
            "accepted_at": _iso(a.accepted_at),
            "method": a.method,
            "client": a.client,
        }
        for a in PolicyAcceptance.objects.filter(subject_ref=subject_ref).select_related("version").order_by("accepted_at", "pk")
    ]
    return {
        "subject_ref": str(subject_ref),
        "generated_at": _iso(datetime.datetime.now(datetime.UTC)),
        "chains": chain_records,
        "events": events,
        "state": state,
        "restrictions": restrictions,
        "policy_acceptances": acceptances,
        "verification": summary.as_dict(),
    }
