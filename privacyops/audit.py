"""Writing and verifying the audit trail. See the invariants at the top of `privacyops.models`."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction

from .models import GENESIS_HASH, AuditEvent

# Any fixed 64-bit number: the key of the PostgreSQL advisory lock that orders the chain.
_CHAIN_LOCK_KEY = 0x50524956_41554454  # "PRIV" "AUDT"


def _lock_chain() -> None:
    """Serialise chain writers until the surrounding transaction ends.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: transactions are BEGIN IMMEDIATE (see
    settings), so the transaction already holds the database's single write lock.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])


def _label(target) -> tuple[str, str]:
    if target is None:
        return "", ""
    if isinstance(target, tuple):
        return str(target[0]), str(target[1])
    return target._meta.label_lower, str(target.pk)


def _subject_ref(subject) -> uuid.UUID | None:
    if subject is None:
        return None
    if isinstance(subject, uuid.UUID):
        return subject
    if isinstance(subject, str):
        return uuid.UUID(subject)
    return subject.subject_ref


def audit_record(*, actor, action: str, target=None, subject=None, details: dict | None = None) -> AuditEvent:
    """Append one event to the chain, inside the caller's transaction.

    `actor` is a staff user, or None for the system (jobs, commands without a user). `target` is a model
    instance or a `(type, id)` pair. `subject` is a User, a subject_ref, or None; only its `subject_ref`
    is stored. `details` must hold references and counts, never a person's name, email or content.
    """
    target_type, target_id = _label(target)
    # Round-trip through JSON so the hashed form is exactly what the database gives back later.
    clean_details = json.loads(json.dumps(details or {}, cls=DjangoJSONEncoder, sort_keys=True))
    with transaction.atomic():
        _lock_chain()
        head = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        event = AuditEvent(
            actor_id=getattr(actor, "pk", None),
            actor_label=actor.get_username() if actor is not None else AuditEvent.SYSTEM_ACTOR,
            action=action,
            target_type=target_type,
            target_id=target_id,
            subject_ref=_subject_ref(subject),
            details=clean_details,
            prev_hash=head or GENESIS_HASH,
        )
        event.hash = event.compute_hash()
        event.save(force_insert=True)
    return event


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    head_id: int | None
    head_hash: str
    first_bad_id: int | None = None
    problem: str = ""


def audit_chain_verify(*, chunk_size: int = 2000) -> ChainReport:
    """Walk the whole chain in id order, in bounded memory; stop at the first event that fails."""
    prev = GENESIS_HASH
    checked = 0
    last_id = None
    fields = [
        "id",
        "occurred_at",
        "actor_id",
        "actor_label",
        "action",
        "target_type",
        "target_id",
        "subject_ref",
        "details",
        "prev_hash",
        "hash",
    ]
    for event in AuditEvent.objects.order_by("id").only(*fields).iterator(chunk_size=chunk_size):
        if event.prev_hash != prev:
            return ChainReport(
                False,
                checked,
                last_id,
                prev,
                event.pk,
                "its previous hash does not match the event before it (an event was removed, inserted or reordered)",
            )
        if event.compute_hash() != event.hash:
            return ChainReport(
                False, checked, last_id, prev, event.pk, "its content does not match its hash (the event was edited)"
            )
        prev = event.hash
        last_id = event.pk
        checked += 1
    return ChainReport(True, checked, last_id, prev)
