"""Reads of consent state and restrictions that more than one caller needs (the decision, the API, the pages).

A subject's current consent per purpose is the `ConsentState` row (the ledger's latest event, visitor events
of linked browsers included); a consent as it stood at an earlier moment is read from the ledger itself.
A restriction or objection is active at a moment when it has started, has not ended and had not been lifted
by then; `purpose` empty covers every purpose (PM-IX-5).
"""

from __future__ import annotations

import datetime
import functools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import User

from .models import ConsentChain, ConsentEvent, ConsentState, ProcessingRestriction, VisitorLink


@dataclass(frozen=True)
class SubjectSnapshot:
    """What a decision about a subject needs before anything else, read in one query: the account, where it
    lives, and its chain version (None while the subject has no consent chain yet)."""

    user_id: int
    subject_ref: uuid.UUID
    country: str
    region: str
    chain_version: int | None


@dataclass(frozen=True)
class StateView:
    """A subject's consent for one consent purpose: the deciding ledger event's action and effective time."""

    purpose_id: int
    action: str
    effective_at: datetime.datetime
    event_id: int


@functools.lru_cache(maxsize=64)
def _snapshot_sql(placeholders: int) -> str:
    """The snapshot query for `placeholders` subject_refs; names from the models' meta, never from input."""
    quote = connection.ops.quote_name
    user, chain = User._meta, ConsentChain._meta
    ref, chain_ref = quote(user.get_field("subject_ref").column), quote(chain.get_field("subject_ref").column)
    columns = [f"u.{quote(user.get_field(name).column)}" for name in ("id", "subject_ref", "country", "region")]
    columns.append(f"c.{quote(chain.get_field('version').column)}")
    return (
        f"SELECT {', '.join(columns)} FROM {quote(user.db_table)} u "  # noqa: S608 -- model names only
        f"LEFT OUTER JOIN {quote(chain.db_table)} c ON c.{chain_ref} = u.{ref} "
        f"WHERE u.{ref} IN ({', '.join(['%s'] * placeholders)})"
    )


def subject_snapshots(*, subject_refs: Iterable[uuid.UUID]) -> dict[uuid.UUID, SubjectSnapshot]:
    """subject_ref -> snapshot for the accounts that exist, in ONE query (the account LEFT JOINed to its chain).

    The decision cache keys on the chain version read here, so it must come from the database on every
    check, in a statement that runs before any read of consents or restrictions (see `consents.decisions`).
    Every consent check runs this, and the ORM takes several times longer to build the query than the
    database takes to answer it, so it is plain SQL (names from the models' meta, portable SQL).
    """
    refs = list(set(subject_refs))
    if not refs:
        return {}
    field = User._meta.get_field("subject_ref")
    params = [field.get_db_prep_value(ref, connection) for ref in refs]
    with connection.cursor() as cursor:
        cursor.execute(_snapshot_sql(len(params)), params)
        rows = cursor.fetchall()
    snapshots = {}
    for pk, ref, country, region, version in rows:
        ref = ref if isinstance(ref, uuid.UUID) else uuid.UUID(ref)  # SQLite keeps UUIDs as hex text
        snapshots[ref] = SubjectSnapshot(pk, ref, country, region, version)
    return snapshots


def restrictions_active(*, subject, at: datetime.datetime | None = None) -> QuerySet[ProcessingRestriction]:
    """The subject's restrictions and objections in force at `at` (now by default), any purpose."""
    at = at or timezone.now()
    return ProcessingRestriction.objects.filter(
        Q(lifted_at__isnull=True) | Q(lifted_at__gt=at),
        Q(ends_at__isnull=True) | Q(ends_at__gt=at),
        subject=subject,
        starts_at__lte=at,
    )


def restrictions_covering(*, subject_id: int, purpose_id: int, at: datetime.datetime) -> list[ProcessingRestriction]:
    """Restrictions and objections of a subject that cover a register purpose (or every purpose) and are in
    force at `at` or will start later (not lifted by `at`, not ended by `at`). The caller tells the two apart
    by `starts_at`; the later ones bound how long an answer may be cached."""
    return list(
        ProcessingRestriction.objects.filter(
            Q(purpose__isnull=True) | Q(purpose_id=purpose_id),
            Q(lifted_at__isnull=True) | Q(lifted_at__gt=at),
            Q(ends_at__isnull=True) | Q(ends_at__gt=at),
            subject_id=subject_id,
        ).order_by("starts_at", "pk")
    )


def consent_states(
    *, subject_ref: uuid.UUID, purpose_ids: Iterable[int], at: datetime.datetime | None = None
) -> dict[int, StateView]:
    """consent purpose id -> the subject's consent for it: now (the state cache), or at `at` (from the ledger:
    the latest event by effective time at or before `at`, the events of linked visitors included)."""
    purpose_ids = list(purpose_ids)
    if not purpose_ids:
        return {}
    if at is None:
        rows = ConsentState.objects.filter(subject_ref=subject_ref, purpose_id__in=purpose_ids).values_list(
            "purpose_id", "action", "effective_at", "event_id"
        )
        return {row[0]: StateView(*row) for row in rows}
    visitors = VisitorLink.objects.filter(subject_ref=subject_ref).values("visitor_id")
    events = (
        ConsentEvent.objects.filter(Q(subject_ref=subject_ref) | Q(visitor_id__in=visitors))
        .filter(purpose_id__in=purpose_ids, effective_at__lte=at)
        .order_by("purpose_id", "-effective_at", "-id")
        .values_list("purpose_id", "action", "effective_at", "id")
    )
    states: dict[int, StateView] = {}
    for row in events:
        states.setdefault(row[0], StateView(*row))
    return states
