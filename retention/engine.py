"""The purge engine: runs one PurgeRun of one retention rule, batch by batch (POLICY-MAP VI).

Design
- A run walks a *plan*: the models the rule governs (selectors.rule_models), children before parents in
  the order their foreign keys give. The plan's labels are stored on the run when it is created, with the
  cutoff, so a resumed run walks exactly the same models against exactly the same moment.
- Each step walks its table in key ranges. The range's upper key is the `batch_size`-th expired row after
  the last key reached (`pk > last ORDER BY pk LIMIT n`); then one statement per kind of write covers
  `last < pk <= upper AND expired AND NOT held AND no kept child`. Nothing larger than a batch of keys
  (and, for file-bearing models, that batch's file names) is ever held in Python, and the collector
  (`QuerySet.delete()`) is never used: rows go by `_raw_delete` (one DELETE) and anonymising is one
  UPDATE with the registry's strategies (privacyops.privacy.strategies.anonymise_updates).
- Each batch is one transaction that also writes the run's progress (position, counts, batches done),
  renews the lease and appends one audit event. A batch that fails rolls back alone; the run is marked
  failed with the error. A worker that dies loses at most its uncommitted batch: the next worker to take
  the lease starts from the recorded key.

Invariants
- A held row is never changed: the hold check is a NOT EXISTS against the active holds inside every
  statement that writes (and every count), so a hold placed mid-run counts from the next batch.
- A row another row still needs is kept: a parent goes only when none of its children is *kept*. A child
  is kept when the run will not remove it: it is not expired, or it is held, or (transitively) it has a
  kept child of its own; a child outside the plan (another category, an unregistered table) is kept
  whenever it exists, whatever its on_delete. For SET_NULL children (a feedback's message) only a held
  child keeps the parent; the others have their link nulled in the same transaction as the parent's
  delete (a held row is never changed, not even by a set-null).
- Dry run and real run use the same predicates: the dry run counts, batch by batch, what the real run's
  statements would touch, so its counts equal a real run's on the same data by construction. (Children
  are walked first, so by the time a parent is reached only kept children remain, and "no kept child"
  is what both evaluate.) A dry run writes nothing but its own PurgeRun row.
- Anonymise touches only rows not yet anonymised (`anonymised_at IS NULL` where the model has the column,
  else rows still linked to an account): running a batch twice changes nothing the second time. Deleting
  twice finds nothing the second time. So a batch redone after a crash gives the same final state.
- Attachment files of deleted rows are removed from storage only after the batch commits, and only for
  rows that really went; a file already missing is fine.
- The lease (owner, expiry) is taken with one conditional UPDATE; every batch re-reads the run under the
  lease (`SELECT ... FOR UPDATE` on PostgreSQL) and renews it, so a worker that lost its lease stops
  without writing.

Counts per model: matched = expired rows in scope; held = matched rows under a hold; kept = matched,
unheld rows kept because a child needs them; deleted / anonymised = the rest.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from functools import reduce

from django.apps import apps
from django.conf import settings
from django.db import connections, models, router, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from privacyops.audit import audit_record
from privacyops.privacy import Declaration, registry
from privacyops.privacy.strategies import anonymise_updates

from . import selectors
from .models import PurgeRun, RetentionRule

logger = logging.getLogger("retention.engine")

COUNT_KEYS = ("matched", "held", "kept", "deleted", "anonymised")
ACTIVE = (PurgeRun.Status.QUEUED, PurgeRun.Status.RUNNING)


class LeaseLost(Exception):
    """Another worker took the run (our lease expired) or the run was cancelled: stop without writing."""


class PlanError(Exception):
    pass


# --- The plan --------------------------------------------------------------------------------------------


def reverse_foreign_keys(model: type[models.Model]) -> list[models.ForeignObjectRel]:
    """Every foreign key (or one-to-one) of any model that points at `model`, hidden ones included."""
    return [
        rel
        for rel in model._meta.get_fields(include_hidden=True)
        if rel.auto_created
        and not rel.concrete
        and (rel.one_to_many or rel.one_to_one)
        and isinstance(rel.field, models.ForeignKey)
    ]


def children_first(declarations: list[Declaration]) -> list[Declaration]:
    """Order models so that each comes before every model it points at (children before parents).

    Kahn's algorithm over the foreign keys among the given models, ties broken by label so the order is
    stable. Should the keys form a cycle, the remaining models follow in label order: their rows with
    children in the cycle are then kept (a child outside the walked order counts as kept).
    """
    by_model = {d.model: d for d in declarations}
    parents = {d.model: set() for d in declarations}  # model -> plan models it points at
    for d in declarations:
        for f in d.model._meta.concrete_fields:
            target = getattr(f, "related_model", None)
            if f.is_relation and target in by_model and target is not d.model:
                parents[d.model].add(target)
    children = {m: {c for c, ps in parents.items() if m in ps} for m in parents}
    order, done = [], set()
    while len(order) < len(declarations):
        ready = sorted((m for m in parents if m not in done and children[m] <= done), key=lambda m: m._meta.label)
        if not ready:
            ready = sorted((m for m in parents if m not in done), key=lambda m: m._meta.label)
        for m in ready:
            order.append(by_model[m])
            done.add(m)
    return order


@dataclass
class Step:
    index: int
    decl: Declaration
    scope: selectors.HoldScope
    expired: Q
    guard: Q
    file_fields: list[str] = field(default_factory=list)

    @property
    def model(self) -> type[models.Model]:
        return self.decl.model

    @property
    def label(self) -> str:
        return self.decl.label


class Plan:
    """The steps of one run, and the predicates its statements share (built once per worker session)."""

    def __init__(self, run: PurgeRun, labels: list[str]):
        self.run = run
        self.rule = run.rule
        self.delete = self.rule.action == RetentionRule.Action.DELETE
        self._scopes: dict[type[models.Model], selectors.HoldScope | None] = {}
        self.steps: list[Step] = []
        for index, label in enumerate(labels):
            try:
                decl = registry.get(apps.get_model(label))
            except LookupError as exc:
                raise PlanError(f"{label} is in this run's plan but no longer a declared model: {exc}") from None
            self.steps.append(
                Step(
                    index=index,
                    decl=decl,
                    scope=self.scope(decl.model),
                    expired=selectors.expired_q(decl, self.rule, run.cutoff),
                    guard=self._guard(decl),
                    file_fields=[f.attname for f in decl.model._meta.concrete_fields if isinstance(f, models.FileField)],
                )
            )
        self.by_model = {s.model: s for s in self.steps}

    def scope(self, model) -> selectors.HoldScope | None:
        if model not in self._scopes:
            self._scopes[model] = selectors.HoldScope(registry.get(model)) if registry.is_registered(model) else None
        return self._scopes[model]

    def _guard(self, decl: Declaration) -> Q:
        if self.delete:
            return Q()
        names = {f.name for f in decl.model._meta.concrete_fields}
        if "anonymised_at" in names:
            return Q(anonymised_at__isnull=True)
        return Q(**{f"{decl.subject_fk}__isnull": False})

    # The predicates below build fresh expressions on each call: a query resolves (and binds) its own.

    def held(self, step: Step) -> Q:
        return Q(step.scope.held())

    def kept_row(self, step: Step, visiting: frozenset) -> Q:
        """A row of a plan model that this run does not delete: not expired, held, or with a kept child."""
        q = ~step.expired | self.held(step)
        child = self.has_kept_child(step.model, visiting)
        return q | child if child is not None else q

    def has_kept_child(self, model, visiting: frozenset = frozenset()) -> Q | None:
        """True for a row of `model` that some kept row points at (None if no row ever could)."""
        visiting = visiting | {model}
        parts = []
        for rel in reverse_foreign_keys(model):
            child, fk = rel.related_model, rel.field
            rows = child._base_manager.filter(**{fk.attname: OuterRef(fk.target_field.attname)})
            if rel.on_delete is models.SET_NULL:
                scope = self.scope(child)
                if scope is None:
                    continue  # nothing can hold it; its link is nulled with the parent
                parts.append(Q(Exists(rows.filter(scope.held()))))
                continue
            child_step = self.by_model.get(child)
            if child_step is not None and self.delete and child not in visiting:
                parts.append(Q(Exists(rows.filter(self.kept_row(child_step, visiting)))))
            else:
                parts.append(Q(Exists(rows)))
        return reduce(lambda a, b: a | b, parts) if parts else None

    def set_null_children(self, model) -> list[tuple[type[models.Model], models.ForeignKey]]:
        return [(rel.related_model, rel.field) for rel in reverse_foreign_keys(model) if rel.on_delete is models.SET_NULL]


def plan_labels(rule: RetentionRule) -> list[str]:
    """The labels of the models a run of `rule` walks, children before parents."""
    return [d.label for d in children_first(selectors.rule_models(rule))]


# --- One batch -------------------------------------------------------------------------------------------


def _range_end(step: Step, last_key, batch_size: int):
    """The key of the `batch_size`-th expired row after `last_key` (or the last one), None when none is left."""
    qs = step.model._base_manager.filter(step.expired, step.guard)
    if last_key is not None:
        qs = qs.filter(pk__gt=last_key)
    inner = qs.order_by("pk").values(_k=F("pk"))[:batch_size]
    # MAX over the limited subquery: the planner runs the keyset scan and stops after `batch_size` rows
    # (`pk IN (subquery)` may scan the table instead). `sql` is the ORM's own compiled query; every value
    # in it is a bound parameter.
    sql, params = inner.query.sql_with_params()
    with connections[qs.db].cursor() as cursor:
        cursor.execute(f"SELECT MAX(_k) FROM ({sql}) AS batch", params)  # noqa: S608
        row = cursor.fetchone()
    return row[0] if row else None


def _in_range(step: Step, lo, hi):
    qs = step.model._base_manager.filter(pk__lte=hi).filter(step.expired, step.guard)
    return qs.filter(pk__gt=lo) if lo is not None else qs


def _batch(plan: Plan, step: Step, lo, hi, *, dry_run: bool) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Count (and unless dry_run, write) one key range of one step. Returns its counts and the files to remove."""
    rows = _in_range(step, lo, hi)
    held = plan.held(step)
    counts = dict.fromkeys(COUNT_KEYS, 0)
    files: list[tuple[str, str]] = []
    if not plan.delete:
        agg = rows.aggregate(matched=Count("pk"), held=Count("pk", filter=held), anonymised=Count("pk", filter=~plan.held(step)))
        counts.update(matched=agg["matched"], held=agg["held"])
        if dry_run:
            counts["anonymised"] = agg["anonymised"]
        else:
            counts["anonymised"] = rows.filter(~plan.held(step)).update(**anonymise_updates(step.decl))
        return counts, files

    kept_child = plan.has_kept_child(step.model)
    unheld = ~held
    aggregates = {"matched": Count("pk"), "held": Count("pk", filter=held)}
    if kept_child is not None:
        aggregates["kept"] = Count("pk", filter=~plan.held(step) & kept_child)
        aggregates["deleted"] = Count("pk", filter=~plan.held(step) & ~plan.has_kept_child(step.model))
    else:
        aggregates["deleted"] = Count("pk", filter=~plan.held(step))
    agg = rows.aggregate(**aggregates)
    counts.update(matched=agg["matched"], held=agg["held"], kept=agg.get("kept", 0))
    if dry_run:
        counts["deleted"] = agg["deleted"]
        return counts, files

    deletable = rows.filter(unheld)
    if kept_child is not None:
        deletable = deletable.filter(~plan.has_kept_child(step.model))
    file_rows = []
    if step.file_fields:
        file_rows = list(deletable.values_list("pk", *step.file_fields))
    for child, fk in plan.set_null_children(step.model):
        children = child._base_manager.filter(**{f"{fk.name}__in": deletable.values(fk.target_field.attname)})
        scope = plan.scope(child)
        if scope is not None:
            children = children.filter(~Q(scope.held()))
        children.update(**{fk.attname: None})
    counts["deleted"] = deletable._raw_delete(deletable.db)
    if file_rows:
        survivors = set(step.model._base_manager.filter(pk__in=[r[0] for r in file_rows]).values_list("pk", flat=True))
        storages = [step.model._meta.get_field(name).storage for name in _field_names(step)]
        for row in file_rows:
            if row[0] in survivors:
                continue
            files.extend((storage, name) for storage, name in zip(storages, row[1:], strict=True) if name)
    return counts, files


def _field_names(step: Step) -> list[str]:
    meta = step.model._meta
    return [next(f.name for f in meta.concrete_fields if f.attname == attname) for attname in step.file_fields]


def _remove_files(files) -> None:
    """After commit: remove the files of rows that are gone. A file already missing is fine."""
    for storage, name in files:
        try:
            storage.delete(name)
        except FileNotFoundError:
            pass
        except Exception:  # storage errors must not undo a committed purge; the sweep can retry later
            logger.exception("Could not remove a purged row's file from storage")


# --- The run ---------------------------------------------------------------------------------------------


def _now():
    return timezone.now()


def _lease_until(now):
    return now + timedelta(seconds=settings.RETENTION_LEASE_SECONDS)


def empty_counts(labels) -> dict:
    return {label: dict.fromkeys(COUNT_KEYS, 0) for label in labels}


def _take_lease(run_id: int, worker: str) -> PurgeRun | None:
    """One conditional UPDATE: the run is ours if it is active and its lease is free, expired or already ours."""
    now = _now()
    with transaction.atomic():
        taken = (
            PurgeRun.objects.filter(pk=run_id, status__in=ACTIVE)
            .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now) | Q(lease_owner=worker))
            .update(
                status=PurgeRun.Status.RUNNING,
                lease_owner=worker,
                lease_expires_at=_lease_until(now),
                heartbeat_at=now,
                attempts=F("attempts") + 1,
                started_at=Coalesce(F("started_at"), Value(now)),
            )
        )
        if not taken:
            return None
        run = PurgeRun.objects.select_related("rule", "rule__category", "rule__store").get(pk=run_id)
        if "plan" not in run.position:  # a run created without purge_run_start
            labels = plan_labels(run.rule)
            run.position = {"plan": labels, "step": 0, "last_key": None}
            run.total_steps = len(labels)
            run.counts = {**empty_counts(labels), **run.counts}
            run.save(update_fields=["position", "total_steps", "counts"])
        if run.attempts == 1:
            audit_record(
                actor=None,
                action="retention.run_started",
                target=run,
                details={"rule": run.rule.code, "dry_run": run.dry_run, "cutoff": run.cutoff, "models": run.position["plan"]},
            )
        return run


def _locked_run(run_id: int, worker: str) -> PurgeRun:
    run = (
        PurgeRun.objects.select_for_update()
        .filter(pk=run_id, status=PurgeRun.Status.RUNNING, lease_owner=worker)
        .select_related("rule")
        .first()
    )
    if run is None:
        raise LeaseLost(run_id)
    return run


def _renew(run: PurgeRun, now) -> None:
    run.heartbeat_at = now
    run.lease_expires_at = _lease_until(now)


def _release(run_id: int, worker: str) -> None:
    PurgeRun.objects.filter(pk=run_id, lease_owner=worker).update(lease_owner="", lease_expires_at=None)


def _complete(run: PurgeRun, now) -> None:
    run.status = PurgeRun.Status.COMPLETED
    run.finished_at = now
    run.heartbeat_at = now
    run.lease_owner = ""
    run.lease_expires_at = None
    run.save()
    if not run.dry_run:
        RetentionRule.objects.filter(pk=run.rule_id).update(last_run_at=now)
    audit_record(
        actor=None,
        action="retention.run_completed",
        target=run,
        details={"rule": run.rule.code, "dry_run": run.dry_run, "batches": run.batches_done, "counts": run.counts},
    )


def _fail(run_id: int, worker: str, exc: BaseException) -> None:
    now = _now()
    with transaction.atomic():
        run = PurgeRun.objects.select_for_update().filter(pk=run_id, lease_owner=worker, status__in=ACTIVE).first()
        if run is None:
            return
        run.status = PurgeRun.Status.FAILED
        run.error = f"{type(exc).__name__}: {exc}"[:10000]
        run.finished_at = now
        run.lease_owner = ""
        run.lease_expires_at = None
        run.save()
        audit_record(
            actor=None,
            action="retention.run_failed",
            target=run,
            details={"rule": run.rule.code, "dry_run": run.dry_run, "error": type(exc).__name__, "position": run.position},
        )


def _advance(plan: Plan, run_id: int, worker: str, *, dry_run: bool) -> tuple[bool, list, bool]:
    """One transaction: one batch of the current step, or moving to the next step, or completing.

    Returns (did a batch, files to remove after commit, run finished).
    """
    run = _locked_run(run_id, worker)
    now = _now()
    index = run.position.get("step", 0)
    if index >= len(plan.steps):
        _complete(run, now)
        return False, [], True
    step = plan.steps[index]
    lo = run.position.get("last_key")
    hi = _range_end(step, lo, run.batch_size)
    if hi is None:
        run.position = {**run.position, "step": index + 1, "last_key": None}
        _renew(run, now)
        if index + 1 >= len(plan.steps):
            _complete(run, now)
            return False, [], True
        run.save(update_fields=["position", "heartbeat_at", "lease_expires_at"])
        return False, [], False
    counts, files = _batch(plan, step, lo, hi, dry_run=dry_run)
    totals = run.counts.setdefault(step.label, dict.fromkeys(COUNT_KEYS, 0))
    for key, value in counts.items():
        totals[key] = totals.get(key, 0) + value
    run.position = {**run.position, "step": index, "model": step.label, "last_key": hi}
    run.batches_done += 1
    _renew(run, now)
    run.save(update_fields=["position", "counts", "batches_done", "heartbeat_at", "lease_expires_at"])
    if not dry_run:
        audit_record(
            actor=None,
            action="retention.batch",
            target=run,
            details={"rule": run.rule.code, "model": step.label, "from_key": lo, "to_key": hi, "counts": counts},
        )
    return True, files, False


def purge_run_work(run_id: int, *, worker: str, max_seconds: float | None = None, max_batches: int | None = None) -> PurgeRun:
    """Work on run `run_id` as `worker` until it finishes, or `max_seconds` / `max_batches` are used up.

    Returns at once (with the run as it is) when another worker's lease is live or the run is not active.
    Never enqueues anything: continuing is the caller's business (retention.tasks). PM-VI-3, PM-VI-4.
    """
    run = _take_lease(run_id, worker)
    if run is None:
        return PurgeRun.objects.get(pk=run_id)
    started = time.monotonic()
    batches = 0
    try:
        plan = Plan(run, run.position["plan"])
    except Exception as exc:
        logger.exception("Purge run %s cannot build its plan", run_id)
        _fail(run_id, worker, exc)
        return PurgeRun.objects.get(pk=run_id)
    using = router.db_for_write(PurgeRun)
    while True:
        try:
            with transaction.atomic(using=using):
                did_batch, files, finished = _advance(plan, run_id, worker, dry_run=run.dry_run)
                if files:
                    transaction.on_commit(lambda files=files: _remove_files(files), using=using)
        except LeaseLost:
            logger.info("Purge run %s: %s no longer holds the lease; stopping", run_id, worker)
            break
        except Exception as exc:
            logger.exception("Purge run %s failed in a batch", run_id)
            _fail(run_id, worker, exc)
            break
        if finished:
            break
        batches += did_batch
        if max_batches is not None and batches >= max_batches:
            _release(run_id, worker)
            break
        if max_seconds is not None and time.monotonic() - started >= max_seconds:
            _release(run_id, worker)
            break
    return PurgeRun.objects.get(pk=run_id)
