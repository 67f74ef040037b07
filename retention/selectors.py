"""Reads that the engine, the services, the admin and the commands share: which models a rule governs,
which rows are expired under it, and which rows a legal hold keeps (POLICY-MAP VI).

Every predicate here is a database expression, evaluated inside the query that uses it: the hold check is
an anti-join (`NOT EXISTS` against the active holds), never a list of ids carried through Python, so a
hold placed while a purge is running counts from the purge's next batch and memory does not grow with
the number of held rows.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce

from django.contrib.auth import get_user_model
from django.db import models
from django.db.models import Exists, ExpressionWrapper, OuterRef, Q
from django.db.models.functions import Lower

from inventory.models import DataCategory, DataStore
from privacyops.privacy import Declaration, Erase, registry

from .models import LegalHold, PurgeRun, RetentionRule

# --- Which models a rule governs -----------------------------------------------------------------


def subject_path(decl: Declaration) -> str | None:
    """The lookup from a row of `decl.model` to its account's primary key: "user", "conversation__user",
    "pk" for the account model itself, or None for rows that have no subject."""
    if decl.subject:
        return decl.subject
    if decl.is_account_model:
        return "pk"
    return None


def _subject_field(path: str, name: str) -> str:
    """The lookup of the account's field `name` through `path` ("conversation__user" -> "..._user__closed_at")."""
    return name if path == "pk" else f"{path}__{name}"


def is_retained(decl: Declaration) -> bool:
    """A model that keeps a field under a legal duty with no end (the audit trail, hold records) is never
    purged; one whose duty lasts a fixed time (`duty_ends`, a rights request's record) may be deleted by a rule."""
    return not decl.duty_ends and any(f.erase == Erase.RETAIN for f in decl.fields.values())


def governed_models(rule: RetentionRule) -> list[Declaration]:
    """The registry's models of the rule's category that this rule governs, before asking whether it can
    express their expiry.

    A store-specific rule governs the category's models in its store. A category-wide rule governs the
    category's models in every store that has no enabled rule of its own for the category: the
    store-specific rule wins (PM-VI-1).
    """
    declarations = registry.for_category(rule.category.code)
    if rule.store_id:
        return [d for d in declarations if d.store_code == rule.store.code]
    own_rules = set(
        RetentionRule.objects.filter(enabled=True, category_id=rule.category_id, store__isnull=False)
        .exclude(pk=rule.pk)
        .values_list("store__code", flat=True)
    )
    return [d for d in declarations if d.store_code not in own_rules]


def expiry_supported(decl: Declaration, rule: RetentionRule) -> bool:
    """Whether the rule's clock can be read for rows of this model (see `expired_q`)."""
    kind = rule.counts_from
    if kind == RetentionRule.CountsFrom.CREATED:
        return bool(decl.created)
    if kind == RetentionRule.CountsFrom.TIMESTAMP:
        return decl.timestamp_path(rule.timestamp_field) is not None
    if kind == RetentionRule.CountsFrom.LAST_ACTIVITY:
        return subject_path(decl) is not None or bool(decl.created)
    if kind == RetentionRule.CountsFrom.ACCOUNT_CLOSURE:
        return subject_path(decl) is not None
    return False


def rule_models(rule: RetentionRule) -> list[Declaration]:
    """The models a run of `rule` walks: governed by it, with a readable clock, not kept under a legal duty.

    For a rule that counts from another timestamp, only the models that declare that timestamp are in.
    """
    return [d for d in governed_models(rule) if expiry_supported(d, rule) and not is_retained(d)]


# --- Which rows are expired --------------------------------------------------------------------------


def expired_q(decl: Declaration, rule: RetentionRule, cutoff: datetime) -> Q:
    """The rows of `decl.model` whose retention clock under `rule` started before `cutoff`.

    - created: the declared creation field;
    - timestamp: the rule's declared timestamp field (a row where it is empty has not started its clock);
    - last_activity: the account's `last_activity_at`, or when the account never recorded activity its
      `date_joined` (the account's own start is the latest activity we can prove). A row without an
      account counts from its own creation: the row itself is the last activity we know of;
    - account_closure: the account's `closed_at`. Rows of open accounts and rows without an account never
      match.
    """
    kind = rule.counts_from
    if kind == RetentionRule.CountsFrom.CREATED:
        return Q(**{f"{decl.created}__lt": cutoff})
    if kind == RetentionRule.CountsFrom.TIMESTAMP:
        return Q(**{f"{decl.timestamp_path(rule.timestamp_field)}__lt": cutoff})
    path = subject_path(decl)
    if kind == RetentionRule.CountsFrom.LAST_ACTIVITY:
        q = Q()
        if path is not None:
            q = Q(**{f"{_subject_field(path, 'last_activity_at')}__lt": cutoff}) | Q(
                **{
                    f"{_subject_field(path, 'last_activity_at')}__isnull": True,
                    f"{_subject_field(path, 'date_joined')}__lt": cutoff,
                }
            )
        if decl.created and path != "pk":
            no_account = Q(**{f"{decl.created}__lt": cutoff})
            if path is not None:
                no_account &= Q(**{f"{path}__isnull": True})
            q = q | no_account if path is not None else no_account
        return q
    if kind == RetentionRule.CountsFrom.ACCOUNT_CLOSURE:
        return Q(**{f"{_subject_field(path, 'closed_at')}__lt": cutoff})
    raise ValueError(f"Unknown counts_from {kind!r}")


# --- Legal holds ---------------------------------------------------------------------------------------


def active_holds():
    """Holds in force (not lifted), newest first."""
    return LegalHold.objects.filter(lifted_at__isnull=True).select_related("subject", "category", "store")


def _register_ids(decl: Declaration) -> tuple[int | None, int | None]:
    """The ids of the DataCategory and DataStore rows of a model's row category and store (None if absent)."""
    category_id = DataCategory.objects.filter(code=decl.category).values_list("pk", flat=True).first()
    store_id = DataStore.objects.filter(code=decl.store_code).values_list("pk", flat=True).first()
    return category_id, store_id


class HoldScope:
    """The static part of the hold check for one model: which holds could ever apply to its rows.

    A hold applies to a row when every scope it names matches: its category is the model's row category,
    its store is the model's store, its subject is the row's subject. The first two do not depend on the
    row, so they are fixed once per model (as SQL constants); the subject part is a correlated condition
    on each row.
    """

    def __init__(self, decl: Declaration, ids: tuple[int | None, int | None] | None = None):
        self.decl = decl
        self.category_id, self.store_id = ids if ids is not None else _register_ids(decl)
        self.path = subject_path(decl)

    def _static(self) -> Q:
        q = Q(lifted_at__isnull=True)
        q &= Q(category__isnull=True) | Q(category_id=self.category_id) if self.category_id else Q(category__isnull=True)
        q &= Q(store__isnull=True) | Q(store_id=self.store_id) if self.store_id else Q(store__isnull=True)
        return q

    def _identifier_match(self, outer) -> Q | None:
        """A subject hold also holds rows found by the identifier (a support email sent without an account)."""
        name = self.decl.identifier
        if not name:
            return None
        account_field = get_user_model()._meta.get_field(name)
        if isinstance(account_field, models.CharField | models.TextField):
            return Q(models.lookups.Exact(Lower(f"subject__{name}"), Lower(outer(name))))
        return Q(**{f"subject__{name}": outer(name)})

    def held(self, shapes: set[HoldShape] | None = None, *, subject=None) -> Exists | None:
        """True for a row (of the query this is used in) that an active hold covers.

        With `shapes` (see `active_hold_shapes`), the condition keeps only the parts some active hold can
        satisfy for this model, and is None when no active hold can reach it at all. That keeps the common
        cases cheap for the database: no hold (no subquery), only subject holds (an equality anti-join it
        can hash or probe by index), a whole-category hold (a subquery that does not depend on the row).
        Without `shapes`, the full condition. `subject` is the expression for the row's account id as seen
        from the hold subquery (default: `OuterRef(<subject path>)`).
        """
        whole, by_subject = True, True
        if shapes is not None:
            reaching = [s for s in shapes if s.category_id in (None, self.category_id) and s.store_id in (None, self.store_id)]
            whole = any(not s.has_subject for s in reaching)
            by_subject = any(s.has_subject for s in reaching)
        parts = []
        if whole:
            parts.append(Q(subject__isnull=True))
        if by_subject:
            if subject is not None:
                parts.append(Q(subject_id=subject))
            elif self.path is not None:
                parts.append(Q(subject_id=OuterRef(self.path)))
            by_identifier = self._identifier_match(OuterRef)
            if by_identifier is not None:
                parts.append(by_identifier)
        if not parts:
            return None
        return Exists(LegalHold.objects.filter(self._static()).filter(reduce(operator.or_, parts)))

    def rows_of(self, hold: LegalHold) -> Q | None:
        """The rows of this model that `hold` covers, or None when it cannot cover any."""
        if hold.category_id and hold.category_id != self.category_id:
            return None
        if hold.store_id and hold.store_id != self.store_id:
            return None
        if not hold.subject_id:
            return Q()
        q = None
        if self.path is not None:
            q = Q(**{self.path: hold.subject_id})
        name = self.decl.identifier
        if name:
            value = getattr(hold.subject, name, None)
            if value not in (None, ""):
                lookup = "iexact" if isinstance(value, str) else "exact"
                by_identifier = Q(**{f"{name}__{lookup}": value})
                q = by_identifier if q is None else q | by_identifier
        return q


@dataclass(frozen=True)
class HoldShape:
    """What one kind of active hold names: its category and store (or None), and whether it names a subject."""

    category_id: int | None
    store_id: int | None
    has_subject: bool


def active_hold_shapes() -> set[HoldShape]:
    """The distinct shapes of the active holds: a handful of rows whatever the number of holds (no subject ids)."""
    rows = (
        LegalHold.objects.filter(lifted_at__isnull=True)
        .annotate(_has_subject=ExpressionWrapper(Q(subject__isnull=False), output_field=models.BooleanField()))
        .values_list("category_id", "store_id", "_has_subject")
        .order_by()
        .distinct()
    )
    return {HoldShape(*row) for row in rows}


def held_q(decl: Declaration) -> Exists:
    """The hold check for rows of `decl.model`, as an expression: `filter(~held_q(decl))` keeps unheld rows."""
    return HoldScope(decl).held()


def hold_kept_counts(hold: LegalHold) -> dict[str, int]:
    """Per model label, how many rows `hold` covers now, expired or not (PM-VI-3: what the hold keeps).

    Models the hold cannot reach (another category or store, no way to find the subject) are left out, and
    so are models kept under a legal duty anyway (the hold records themselves); a model in scope with no
    rows shows 0.
    """
    counts: dict[str, int] = {}
    for decl in registry.personal():
        if is_retained(decl):
            continue
        rows = HoldScope(decl).rows_of(hold)
        if rows is None:
            continue
        counts[decl.label] = decl.model._base_manager.filter(rows).count()
    return counts


def rules_due_to_run():
    """The enabled, confirmed rules with no real run in progress: what the daily job starts."""
    active = PurgeRun.objects.filter(dry_run=False, status__in=PurgeRun.ACTIVE_STATUSES)
    return (
        RetentionRule.objects.filter(enabled=True, confirmed_at__isnull=False)
        .exclude(pk__in=active.values("rule_id"))
        .select_related("category", "store")
    )


def purge_runs_stalled(*, now: datetime, lease_seconds: int) -> list[int]:
    """Ids of the runs nobody is working on: running with an expired (or no) lease -- its worker died, or
    the continuation between two tasks was lost -- and queued ones no worker took within a lease's length."""
    lease = timedelta(seconds=lease_seconds)
    return list(
        PurgeRun.objects.filter(
            Q(status=PurgeRun.Status.RUNNING, lease_expires_at__isnull=True)
            | Q(status=PurgeRun.Status.RUNNING, lease_expires_at__lt=now)
            | Q(status=PurgeRun.Status.QUEUED, lease_expires_at__isnull=True, created_at__lt=now - lease)
            | Q(status=PurgeRun.Status.QUEUED, lease_expires_at__lt=now)
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
