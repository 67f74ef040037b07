"""Writing and verifying the audit trail. See the invariants at the top of `privacyops.models`.

Anchors: the chain alone proves that no event was edited or removed *relative to the others*; someone
with write access could still rewrite the whole table consistently. So once a day the verified head
(id, hash, count) is written outside the database -- a line in settings.AUDIT_ANCHOR_LOG, a log
record and an email to the DPO -- and `audit_anchors_verify` checks every anchored id still carries
its anchored hash. Because each hash covers everything before it, one matching anchor vouches for the
whole prefix of the chain up to that event.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.mail import send_mail
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from .audit_actions import PERSONAL_DATA_VIEWED, audit_action_check
from .models import GENESIS_HASH, AuditEvent

anchor_logger = logging.getLogger("privacyops.audit.anchor")

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
    audit_action_check(action)
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


def audit_personal_data_viewed(*, actor, subject, what: str, target=None, details: dict | None = None) -> AuditEvent:
    """The one way to record that a staff member saw one person's data on a screen (the account page, a
    request's data summary, a consent proof ...): `what` names the screen, `details` holds counts and
    references only. Callers record it in the transaction that reads the data, so nobody sees the data
    without the record."""
    return audit_record(
        actor=actor,
        action=PERSONAL_DATA_VIEWED,
        target=target,
        subject=subject,
        details={"what": what, **(details or {})},
    )


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


@dataclass(frozen=True)
class Anchor:
    at: str
    head_id: int | None
    head_hash: str
    count: int

    def as_json(self) -> str:
        return json.dumps(
            {"at": self.at, "head_id": self.head_id, "head_hash": self.head_hash, "count": self.count}, sort_keys=True
        )


@dataclass(frozen=True)
class AnchorReport:
    ok: bool
    path: str
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    first_bad_id: int | None = None


def _anchor_append(path: str, anchor: Anchor) -> None:
    """Append one line and force it to disk: an anchor that a crash can lose proves nothing."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(anchor.as_json() + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def audit_head_anchor() -> Anchor | None:
    """Record the verified head of the chain outside the database (PM-VII-2).

    Appends the anchor to settings.AUDIT_ANCHOR_LOG, logs it, emails it to the DPO and records an
    `audit.head_anchored` event. When the chain does not verify nothing is anchored (anchoring a
    tampered head would bless it): the failure is logged at ERROR and the DPO is alerted instead.
    Running it twice only adds a second, equally true anchor.
    """
    now = timezone.now()
    day = now.date().isoformat()
    report = audit_chain_verify()
    if not report.ok:
        anchor_logger.error("audit chain does not verify: event #%s: %s; nothing anchored", report.first_bad_id, report.problem)
        send_mail(
            subject=f"Audit trail verification FAILED {day}",
            message=(
                f"The daily check of the audit trail found that event #{report.first_bad_id} does not verify: "
                f"{report.problem}.\n{report.checked} events before it verified; the last good hash is "
                f"{report.head_hash}.\nNo anchor was recorded. Follow docs/audit.md (when verification fails)."
            ),
            from_email=None,
            recipient_list=[settings.DPO_EMAIL],
        )
        return None

    anchor = Anchor(at=now.isoformat(), head_id=report.head_id, head_hash=report.head_hash, count=report.checked)
    _anchor_append(settings.AUDIT_ANCHOR_LOG, anchor)
    anchor_logger.info("audit head anchored %s", anchor.as_json())
    emailed = True
    try:
        send_mail(
            subject=f"Audit trail anchor {day}",
            message=(
                "Keep this message: it records the state of the audit trail today, so that any later rewrite of "
                f"the trail can be detected.\n\n{anchor.as_json()}\n"
            ),
            from_email=None,
            recipient_list=[settings.DPO_EMAIL],
        )
    except Exception:
        # The file and the log line already hold the anchor; the event below records the missing email.
        emailed = False
        anchor_logger.exception("could not email the audit anchor to the DPO")
    with transaction.atomic():
        audit_record(
            actor=None,
            action="audit.head_anchored",
            target=("privacyops.auditevent", anchor.head_id) if anchor.head_id else None,
            details={"head_id": anchor.head_id, "head_hash": anchor.head_hash, "count": anchor.count, "emailed": emailed},
        )
    return anchor


def _anchors_read(path: str) -> tuple[list[Anchor], list[str]]:
    anchors, problems = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                anchors.append(Anchor(str(raw["at"]), raw["head_id"], str(raw["head_hash"]), int(raw["count"])))
            except (ValueError, KeyError, TypeError):
                problems.append(f"line {number} of the anchor file is not a valid anchor")
    return anchors, problems


def audit_anchors_verify(*, path: str, batch_size: int = 1000) -> AnchorReport:
    """Check that every anchored (event id, hash) is still in the table, unchanged.

    Used together with `audit_chain_verify`: a consistent rewrite of the table passes the chain but
    changes the hash of every anchored event at or after the first rewritten one.
    """
    anchors, problems = _anchors_read(path)
    first_bad = None
    with_head = [a for a in anchors if a.head_id is not None]
    for start in range(0, len(with_head), batch_size):
        batch = with_head[start : start + batch_size]
        stored = dict(AuditEvent.objects.filter(pk__in={a.head_id for a in batch}).values_list("pk", "hash"))
        for anchor in batch:
            if anchor.head_id not in stored:
                problems.append(f"event #{anchor.head_id}, anchored at {anchor.at}, is missing from the table")
            elif stored[anchor.head_id] != anchor.head_hash:
                problems.append(
                    f"event #{anchor.head_id} no longer has the hash anchored at {anchor.at} "
                    f"({anchor.head_hash[:16]}... then, {stored[anchor.head_id][:16]}... now)"
                )
            else:
                continue
            if first_bad is None or anchor.head_id < first_bad:
                first_bad = anchor.head_id
    return AnchorReport(ok=not problems, path=str(path), checked=len(anchors), problems=problems, first_bad_id=first_bad)


# Columns that `audit_distinct_values` may read: each leads an index, so the walk below is cheap.
_DISTINCT_COLUMNS = {"action": "action", "actor_label": "actor_label"}


def audit_distinct_values(*, field: str, limit: int = 200) -> list[str]:
    """The distinct values of an indexed column, for the admin's filters, without scanning the table.

    `SELECT DISTINCT` reads every row; this recursive query hops from one value to the next through
    the index (a "loose index scan"), so its cost grows with the number of distinct values, not rows.
    """
    column = _DISTINCT_COLUMNS[field]
    table = AuditEvent._meta.db_table
    # Column and table come from the whitelist above and the model, never from the request.
    first = f"SELECT MIN({column}) FROM {table}"  # noqa: S608
    step = f"SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > walk.v) FROM walk WHERE walk.v IS NOT NULL"  # noqa: S608
    sql = f"WITH RECURSIVE walk(v) AS ({first} UNION ALL {step}) SELECT v FROM walk WHERE v IS NOT NULL LIMIT %s"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [limit])
        return [row[0] for row in cursor.fetchall()]
