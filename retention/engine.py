"""The purge engine: runs one PurgeRun of one retention rule, batch by batch (POLICY-MAP VI).

Design
- A run walks a *plan*: the models the rule governs (selectors.rule_models), children before parents in
  the order their foreign keys give. The plan's labels are stored on the run when it is created, with the
  cutoff, so a resumed run walks exactly the same models against exactly the same moment.
- Each step walks its table in keyset batches: ONE read picks the batch, the first `batch_size` expired
  rows after the last key reached (`pk > last ORDER BY pk LIMIT n`), and marks each row held or going
  (unheld and, for a delete, with no kept child), each condition an EXISTS / NOT EXISTS the database
  evaluates by index for those rows only; the batch's last key is where the run stands afterwards. The
  ORM builds that query once per step and hold shapes (every value a bound parameter; the lower key
  changes per batch). The rows to go are deleted (`_raw_delete`, one DELETE by key) or anonymised (one
  UPDATE by key with the registry's strategies, privacyops.privacy.strategies.anonymise_updates). Nothing
  larger than one batch's rows (key, the two marks and, for file-bearing models, file names) is ever held
  in Python, and the collector (`QuerySet.delete()`) is never used. On PostgreSQL a batch's transaction runs
  without JIT (see `_tune_transaction`).
- Each batch is one transaction that also writes the run's progress (position, counts, batches done),
  renews the lease and appends one audit event. A batch that fails rolls back alone; the run is marked
  failed with the error. A worker that dies loses at most its uncommitted batch: the next worker to take
  the lease starts from the recorded key.

- The same machinery erases one subject (requests.erasure, PM-IX-2): a plan built with `Plan(None)` and
  `add_step`, whose steps walk the subject's rows instead of the expired ones, each step deleting its
  rows or updating them with its own values (the registry's `erase_updates`). `plan_batch` is the
  batch step both use (inside the caller's transaction: tuned, one batch, files removed after commit);
  each caller keeps the position where it keeps its progress, under its own lease. The public API for
  that is `Plan`, `Plan.add_step`, `plan_batch`, `children_first`, `reverse_foreign_keys`, `COUNT_KEYS`.

Invariants
- A held row is never changed: the hold check is part of the query that picks each batch's rows, so a
  hold placed mid-run counts from the next batch. (A hold committed between a batch's read and its
  writes, milliseconds inside one transaction, counts from the batch after; for a set-null child the
  write re-checks the hold, and the parent's delete then fails on the foreign key rather than touch it.)
- A row another row still needs is kept: a parent goes only when none of its children is *kept*. A child
  is kept when the run will not remove it: it is not expired, or it is held, or (transitively) it has a
  kept child of its own; a child outside the plan (another category, an unregistered table) is kept
  whenever it exists, whatever its on_delete. For SET_NULL children (a feedback's message) only a held
  child keeps the parent; the others have their link nulled in the same transaction as the parent's
  delete (a held row is never changed, not even by a set-null).
- Dry run and real run share the read: a dry run stops after it, a real run writes exactly the rows
  it marked going. So a dry run's counts equal a real run's on the same data by
  construction. (Children are walked first, so when a parent is reached only kept children remain, and
  "no kept child" is what both evaluate.) A dry run writes nothing but its own PurgeRun row.
- Anonymise touches only rows not yet anonymised (`anonymised_at IS NULL` where the model has the column,
  else rows still linked to an account): running a batch twice changes nothing the second time. Deleting
  twice finds nothing the second time. So a batch redone after a crash gives the same final state.
- Attachment files of deleted rows are removed from storage only after the batch commits (a rolled-back
  batch removes none); a file already missing is fine.
- The lease is the core's owned lease (privacyops.leases): a token per claim, taken with one conditional
  UPDATE; every batch renews it first (the conditional UPDATE locks the run's row till the batch
  commits), so a worker that lost its lease, or whose run was cancelled, gets LeaseLost and stops
  without writing.

Counts per model: matched = expired rows in scope; held = matched rows under a hold; kept = matched,
unheld rows kept because a child needs them; deleted / anonymised = the rest.
"""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce

from django.apps import apps
from django.conf import settings
from django.db import connections, models, router, transaction
from django.db.models import Exists, ExpressionWrapper, F, OuterRef, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from privacyops.audit import audit_record
from privacyops.leases import Lease, LeaseColumns, LeaseLost, lease_release, lease_renew, lease_take
from privacyops.privacy import Declaration, registry
from privacyops.privacy.strategies import anonymise_updates

from . import selectors
from .models import PurgeRun, RetentionRule

logger = logging.getLogger("retention.engine")

COUNT_KEYS = ("matched", "held", "kept", "deleted", "anonymised")
LEASE_COLUMNS = LeaseColumns(owner="lease_owner", until="lease_expires_at", heartbeat="heartbeat_at")


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


@dataclass(frozen=True)
class Anchor:
    """Where a row's subject is found: lookup `path` in the query `levels` levels out from the row's own.

    A hold check sits in a subquery of the row's query, so it reaches the subject one level further out.
    """

    path: str
    levels: int = 0

    def expression(self) -> OuterRef:
        expression = OuterRef(self.path)
        for _ in range(self.levels):
            expression = OuterRef(expression)
        return expression


@dataclass
class Step:
    index: int
    decl: Declaration
    scope: selectors.HoldScope
    expired: Q
    guard: Q
    file_fields: list[str] = field(default_factory=list)
    # What a real run writes to the step's going rows: delete them, or one UPDATE with `updates()` (a fresh
    # dict of values and expressions per statement; default: the registry's anonymising strategies).
    delete: bool = True
    updates: Callable[[], dict] | None = None

    def update_values(self) -> dict:
        return self.updates() if self.updates is not None else anonymise_updates(self.decl)

    def cut_links(self) -> frozenset[str]:
        """The foreign keys (attnames) a step's update sets to NULL: a row updated that way stops being its
        parent's child, so only the rows the step leaves alone keep the parent."""
        if self.delete:
            return frozenset()
        links = {key: f.attname for f in self.model._meta.concrete_fields if f.is_relation for key in (f.name, f.attname)}
        return frozenset(links[name] for name, value in self.update_values().items() if name in links and value is None)

    def removed_file_fields(self) -> list[str]:
        """The file columns whose files leave storage with the step's going rows: all of them when the rows
        are deleted, those an update clears when they are updated (a cleared name would orphan its file)."""
        if self.delete or not self.file_fields:
            return self.file_fields
        values = self.update_values()
        return [name for name in self.file_fields if name in values and values[name] in ("", None)]

    @property
    def model(self) -> type[models.Model]:
        return self.decl.model

    @property
    def label(self) -> str:
        return self.decl.label


class Plan:
    """The steps of one run, and the predicates its statements share (built once per worker session)."""

    def __init__(self, run: PurgeRun | None, labels: list[str] = ()):
        """The plan of a purge run (`run`, walking `labels`); with run=None an empty plan that `add_step`
        fills (an erasure's: one subject's rows, see requests.erasure)."""
        self.run = run
        self.rule = run.rule if run is not None else None
        self.delete = self.rule.action == RetentionRule.Action.DELETE if run is not None else None
        self._scopes: dict[type[models.Model], selectors.HoldScope | None] = {}
        # None means "every kind of hold": forgetting to read the active shapes costs speed, never a hold.
        self.shapes: set[selectors.HoldShape] | None = None
        self.steps: list[Step] = []
        self.by_model: dict[type[models.Model], Step] = {}
        self.batch_queries: dict[tuple, tuple[str, list]] = {}  # see _batch_query
        for label in labels:
            try:
                decl = registry.get(apps.get_model(label))
            except LookupError as exc:
                raise PlanError(f"{label} is in this run's plan but no longer a declared model: {exc}") from None
            self.add_step(decl, selectors.expired_q(decl, self.rule, run.cutoff), guard=self._guard(decl), delete=self.delete)

    def add_step(self, decl: Declaration, scope_q: Q, *, guard: Q | None = None, delete: bool = True, updates=None) -> Step:
        """Append a step walking the rows of `decl.model` that match `scope_q` (the rows the plan may touch:
        expired ones for a purge, one subject's for an erasure), deleting them or updating them with
        `updates()`. Steps must be added children before parents."""
        model = decl.model
        step = Step(
            index=len(self.steps),
            decl=decl,
            scope=self.scope(model),
            expired=scope_q,
            guard=guard if guard is not None else Q(),
            file_fields=[f.attname for f in model._meta.concrete_fields if isinstance(f, models.FileField)],
            delete=delete,
            updates=updates,
        )
        self.steps.append(step)
        self.by_model[model] = step
        return step

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
    # They read `self.shapes`, the shapes of the active holds, refreshed at the start of every batch.

    def held(self, step: Step, anchor: Anchor | None = None) -> Q | None:
        """The hold check for the step's rows; None when no active hold can reach the model."""
        if step.scope is None:  # a model outside the registry (a many-to-many link): no hold names it
            return None
        held = step.scope.held(self.shapes, subject=anchor.expression() if anchor else None)
        return Q(held) if held is not None else None

    def kept_row(self, step: Step, visiting: frozenset, anchor: Anchor | None) -> Q:
        """A row of a plan model that this run does not delete: not expired, held, or with a kept child."""
        q = ~step.expired
        held = self.held(step, anchor)
        if held is not None:
            q |= held
        child = self.has_kept_child(step.model, visiting, anchor)
        return q | child if child is not None else q

    def _child_anchor(self, model, anchor: Anchor | None, child, fk) -> Anchor | None:
        """Where a child row's subject is found, when it is its parent's subject (Attachment -> Message)."""
        if anchor is None or not registry.is_registered(child) or not registry.is_registered(model):
            return None
        own = selectors.subject_path(registry.get(model))
        through_parent = fk.name if own == "pk" else f"{fk.name}__{own}"
        return Anchor(anchor.path, anchor.levels + 1) if registry.get(child).subject == through_parent else None

    def kept_child_parts(
        self, model, visiting: frozenset = frozenset(), anchor: Anchor | None = None, key_range=None
    ) -> list[Exists]:
        """One EXISTS per foreign key into `model`: true for a row that a kept row of that relation points at.

        `anchor` says where the subject of `model`'s row is found (so a child that shares it checks its
        holds against the parent's subject, without joining back through the parent); `key_range`
        (lo, hi) bounds the children to the parents of one batch, so the database reads only those.
        """
        if anchor is None and registry.is_registered(model):
            path = selectors.subject_path(registry.get(model))
            anchor = Anchor(path, 0) if path else None
        visiting = visiting | {model}
        parts = []
        for rel in reverse_foreign_keys(model):
            child, fk = rel.related_model, rel.field
            rows = child._base_manager.filter(**{fk.attname: OuterRef(fk.target_field.attname)})
            if key_range is not None and fk.target_field.primary_key:
                lo, hi = key_range
                if hi is not None:
                    rows = rows.filter(**{f"{fk.attname}__lte": hi})
                if lo is not None:
                    rows = rows.filter(**{f"{fk.attname}__gt": lo})
            child_anchor = self._child_anchor(model, anchor, child, fk)
            if rel.on_delete is models.SET_NULL:
                scope = self.scope(child)
                held = scope.held(self.shapes, subject=child_anchor.expression() if child_anchor else None) if scope else None
                if held is not None:
                    parts.append(Exists(rows.filter(held)))
                continue  # an unheld child has its link nulled with the parent
            child_step = self.by_model.get(child)
            if child_step is not None and child_step.delete and child not in visiting:
                parts.append(Exists(rows.filter(self.kept_row(child_step, visiting, child_anchor))))
            elif child_step is not None and not child_step.delete and fk.attname in child_step.cut_links():
                # An erasure's update cuts this link: only the rows it does not reach, or a hold keeps, remain.
                kept = ~child_step.expired
                held = self.held(child_step, child_anchor)
                parts.append(Exists(rows.filter(kept | held if held is not None else kept)))
            else:
                parts.append(Exists(rows))
        return parts

    def has_kept_child(self, model, visiting: frozenset = frozenset(), anchor: Anchor | None = None) -> Q | None:
        """True for a row of `model` that some kept row points at (None if no row can be kept that way)."""
        parts = self.kept_child_parts(model, visiting, anchor)
        return reduce(operator.or_, (Q(p) for p in parts)) if parts else None

    def set_null_children(self, model) -> list[tuple[type[models.Model], models.ForeignKey]]:
        return [(rel.related_model, rel.field) for rel in reverse_foreign_keys(model) if rel.on_delete is models.SET_NULL]


def plan_labels(rule: RetentionRule) -> list[str]:
    """The labels of the models a run of `rule` walks, children before parents."""
    return [d.label for d in children_first(selectors.rule_models(rule))]


# --- One batch -------------------------------------------------------------------------------------------


class _LowerKey(models.Expression):
    """The batch's lower key in a query compiled once per step: it compiles to a parameter that is a marker,
    which `_batch_rows` replaces by the key of each batch."""

    MARK = object()

    def as_sql(self, compiler, connection):
        return "%s", [self.MARK]


def _batch_query(plan: Plan, step: Step, first: bool, batch_size: int) -> tuple[str, list]:
    """The SQL of `_batch_rows` for `step`, compiled by the ORM once per (step, hold shapes, first batch or not)."""
    cache_key = (step.index, frozenset(plan.shapes) if plan.shapes is not None else None, first, batch_size)
    if cache_key in plan.batch_queries:
        return plan.batch_queries[cache_key]
    lo = None if first else _LowerKey(output_field=step.model._meta.pk)
    qs = step.model._base_manager.filter(step.expired, step.guard)
    if lo is not None:
        qs = qs.filter(pk__gt=lo)
    held = plan.held(step)
    going = ~plan.held(step) if held is not None else Q()
    if step.delete:
        for part in plan.kept_child_parts(step.model, key_range=(lo, None)):
            going &= ~Q(part)
    flags = {
        "_held": ExpressionWrapper(held, output_field=models.BooleanField()) if held is not None else Value(False),
        "_going": ExpressionWrapper(going, output_field=models.BooleanField()) if going else Value(True),
    }
    files = step.removed_file_fields()
    rows = qs.order_by("pk").annotate(**flags).values_list("pk", "_held", "_going", *files)[:batch_size]
    plan.batch_queries[cache_key] = compiled = rows.query.sql_with_params()
    return compiled


def _batch_rows(plan: Plan, step: Step, lo, batch_size: int) -> list[tuple]:
    """The batch: the first `batch_size` expired rows after key `lo`, in key order, each as (key, held, going,
    *file names). One query, shared by dry and real runs.

    `held` and `going` (unheld and, for a delete, with no kept child) are computed in the same query, as
    EXISTS / NOT EXISTS against the active holds and the children. Driven by `pk > lo ORDER BY pk LIMIT n`,
    the database walks the primary key and stops after `batch_size` rows, probing parents (a message's
    conversation, for its subject), holds and children by index for those rows only; a range form
    (`lo < pk <= hi`) lets the planner hash whole parent tables instead, every batch.

    The ORM builds the query (the registry's predicates, the hold check for the current hold shapes) once
    per step; each batch runs it with its own lower key. Every value in it is a bound parameter.
    """
    sql, params = _batch_query(plan, step, lo is None, batch_size)
    params = [lo if param is _LowerKey.MARK else param for param in params]
    with connections[router.db_for_read(step.model)].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# Keys per write statement. A batch is written in one statement up to this size (SQLite takes 32766
# bound parameters by default since 3.32); larger batches are written in several, still in one transaction.
WRITE_CHUNK = 30000


def _chunks(keys: list, size: int = WRITE_CHUNK):
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


class KeysIn(models.Lookup):
    """`column IN (keys)`, written `column = ANY(%s::<type>[])` on PostgreSQL with the keys as ONE parameter:
    a 5,000-item IN list costs more to parse and plan than the write it restricts. Integer keys travel as
    one array literal (`{1,2,3}`): the driver's client-side binding would otherwise quote every element of
    a list one by one in Python, which costs more than the statement itself."""

    lookup_name = "retention_keys_in"
    prepare_rhs = False

    def get_prep_lookup(self):
        return list(self.rhs)

    def as_sql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        return f"{lhs} IN ({', '.join(['%s'] * len(self.rhs))})", (*params, *self.rhs)

    def as_postgresql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        keys = list(self.rhs)
        if all(type(key) is int for key in keys):
            array_type = self.lhs.output_field.cast_db_type(connection)
            return f"{lhs} = ANY(%s::{array_type}[])", (*params, "{" + ",".join(map(str, keys)) + "}")
        return f"{lhs} = ANY(%s)", (*params, keys)


def _batch(plan: Plan, step: Step, rows: list[tuple], *, dry_run: bool) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Count (and unless dry_run, write) one batch of one step. Returns its counts and the files to remove.

    `rows` come from `_batch_rows`. A dry run stops after counting them; a real run then deletes or
    anonymises exactly the rows they mark going, by key. So the counts agree by construction.
    """
    outcome = "deleted" if step.delete else "anonymised"
    targets = [row for row in rows if row[2]]
    counts = dict.fromkeys(COUNT_KEYS, 0)
    counts["matched"] = len(rows)
    counts["held"] = sum(1 for row in rows if row[1])
    counts[outcome] = len(targets)
    counts["kept"] = counts["matched"] - counts["held"] - len(targets)
    if dry_run or not targets:
        return counts, []
    keys = [row[0] for row in targets]
    manager = step.model._base_manager
    done = 0
    for chunk in _chunks(keys):
        if not step.delete:
            done += manager.filter(KeysIn(F("pk"), chunk)).filter(step.guard).update(**step.update_values())
            continue
        for child, fk in plan.set_null_children(step.model):
            if fk.target_field.primary_key:
                children = child._base_manager.filter(KeysIn(F(fk.attname), chunk))
            else:
                children = child._base_manager.filter(**{f"{fk.name}__pk__in": chunk})
            scope = plan.scope(child)
            child_held = scope.held(plan.shapes) if scope is not None else None
            if child_held is not None:
                # Found unheld a moment ago; should a hold have come since, its row is still not touched
                # (the parent's delete then fails on the foreign key and the batch rolls back).
                children = children.filter(~Q(child_held))
            children.update(**{fk.attname: None})
        gone = manager.filter(KeysIn(F("pk"), chunk))
        done += gone._raw_delete(gone.db)
    counts["kept"] += counts[outcome] - done if step.delete else 0
    counts[outcome] = done
    files: list[tuple[str, str]] = []
    removed = step.removed_file_fields()
    if removed:
        storages = [step.model._meta.get_field(name).storage for name in _field_names(step, removed)]
        for row in targets:
            files.extend((storage, name) for storage, name in zip(storages, row[3:], strict=True) if name)
    return counts, files


def _field_names(step: Step, attnames: list[str]) -> list[str]:
    meta = step.model._meta
    return [next(f.name for f in meta.concrete_fields if f.attname == attname) for attname in attnames]


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


def empty_counts(labels) -> dict:
    return {label: dict.fromkeys(COUNT_KEYS, 0) for label in labels}


def _take_lease(run_id: int, worker: str | None) -> tuple[PurgeRun, Lease] | None:
    """One conditional UPDATE: the run is ours if it is active and its lease is free or expired."""
    now = _now()
    with transaction.atomic():
        lease = lease_take(
            PurgeRun,
            run_id,
            columns=LEASE_COLUMNS,
            seconds=settings.RETENTION_LEASE_SECONDS,
            claimable=Q(status__in=PurgeRun.ACTIVE_STATUSES),
            still=Q(status=PurgeRun.Status.RUNNING),
            worker=worker,
            values={
                "status": PurgeRun.Status.RUNNING,
                "attempts": F("attempts") + 1,
                "started_at": Coalesce(F("started_at"), Value(now)),
            },
        )
        if lease is None:
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
        return run, lease


def _locked_run(lease: Lease) -> PurgeRun:
    """First in a batch's transaction: renew the lease (raises LeaseLost when it is not ours any more, or the
    run was cancelled), which also locks the run's row till commit; then read the run."""
    lease_renew(lease)
    return PurgeRun.objects.select_related("rule").get(pk=lease.pk)


def _complete(run: PurgeRun, lease: Lease, now) -> None:
    lease_release(
        lease,
        require=True,
        status=PurgeRun.Status.COMPLETED,
        finished_at=now,
        heartbeat_at=now,
        position=run.position,
    )
    run.status, run.finished_at, run.lease_owner, run.lease_expires_at = PurgeRun.Status.COMPLETED, now, "", None
    if not run.dry_run:
        RetentionRule.objects.filter(pk=run.rule_id).update(last_run_at=now)
    audit_record(
        actor=None,
        action="retention.run_completed",
        target=run,
        details={"rule": run.rule.code, "dry_run": run.dry_run, "batches": run.batches_done, "counts": run.counts},
    )


def _fail(lease: Lease, exc: BaseException) -> None:
    now = _now()
    with transaction.atomic():
        error = f"{type(exc).__name__}: {exc}"[:10000]
        if not lease_release(lease, require=False, status=PurgeRun.Status.FAILED, error=error, finished_at=now):
            return  # no longer ours: the claim that holds the run goes on with it
        run = PurgeRun.objects.select_related("rule").get(pk=lease.pk)
        audit_record(
            actor=None,
            action="retention.run_failed",
            target=run,
            details={"rule": run.rule.code, "dry_run": run.dry_run, "error": type(exc).__name__, "position": run.position},
        )


@dataclass
class Advance:
    """What one call of `plan_advance` did: the new position, and the batch's counts and files (None and
    [] when it only moved to the next step or found the plan finished)."""

    position: dict
    step: Step | None
    counts: dict | None
    files: list
    finished: bool
    lo: object = None
    hi: object = None


def plan_batch(plan: Plan, position: dict, batch_size: int, *, dry_run: bool, using: str) -> Advance:
    """One batch of the current step at `position` ({"step", "last_key"}), or the move to the next step,
    inside the caller's transaction on `using` (which it tunes, see `_tune_transaction`); the removed rows'
    files leave storage after that transaction commits.

    Reads the active hold shapes first, so a hold placed since the last batch counts from this one. The
    caller stores the returned position in the same transaction: purge runs on the PurgeRun (`_advance`),
    erasures on the rights request's job (requests.erasure).
    """
    _tune_transaction(using)
    advance = _plan_advance(plan, position, batch_size, dry_run=dry_run)
    if advance.files:
        transaction.on_commit(lambda files=advance.files: _remove_files(files), using=using)
    return advance


def _plan_advance(plan: Plan, position: dict, batch_size: int, *, dry_run: bool) -> Advance:
    index = position.get("step", 0)
    if index >= len(plan.steps):
        return Advance(position, None, None, [], True)
    step = plan.steps[index]
    lo = position.get("last_key")
    plan.shapes = selectors.active_hold_shapes()
    rows = _batch_rows(plan, step, lo, batch_size)
    if not rows:
        moved = {**position, "step": index + 1, "last_key": None}
        return Advance(moved, step, None, [], index + 1 >= len(plan.steps), lo)
    hi = rows[-1][0]
    counts, files = _batch(plan, step, rows, dry_run=dry_run)
    return Advance({**position, "step": index, "model": step.label, "last_key": hi}, step, counts, files, False, lo, hi)


def _advance(plan: Plan, lease: Lease, *, dry_run: bool, using: str) -> tuple[bool, bool]:
    """One transaction (the caller's): one batch of the current step, or moving to the next step, or
    completing. Returns (did a batch, run finished)."""
    run = _locked_run(lease)
    now = _now()
    advance = plan_batch(plan, run.position, run.batch_size, dry_run=dry_run, using=using)
    run.position = advance.position
    if advance.counts is None:
        if advance.finished:
            _complete(run, lease, now)
            return False, True
        run.save(update_fields=["position"])
        return False, False
    step, counts = advance.step, advance.counts
    totals = run.counts.setdefault(step.label, dict.fromkeys(COUNT_KEYS, 0))
    for key, value in counts.items():
        totals[key] = totals.get(key, 0) + value
    run.batches_done += 1
    run.save(update_fields=["position", "counts", "batches_done"])
    if not dry_run:
        audit_record(
            actor=None,
            action="retention.batch",
            target=run,
            details={"rule": run.rule.code, "model": step.label, "from_key": advance.lo, "to_key": advance.hi, "counts": counts},
        )
    return True, False


def _tune_transaction(using: str) -> None:
    """PostgreSQL: no JIT compilation in a batch's transaction (`SET LOCAL`, so it ends with the transaction).

    A batch's read walks a few thousand rows by index, but its cost estimate (the whole table's, scaled by
    the LIMIT) passes `jit_above_cost`, and compiling would take about twice as long as the query runs.
    """
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")


def purge_run_work(
    run_id: int, *, worker: str | None = None, max_seconds: float | None = None, max_batches: int | None = None
) -> PurgeRun:
    """Work on run `run_id` as a new claim of `worker` (host:pid by default) until it finishes, or
    `max_seconds` / `max_batches` are used up (then the lease is released for the next claim).

    Returns at once (with the run as it is) when another claim's lease is live or the run is not active.
    Never enqueues anything: continuing is the caller's business (retention.tasks). PM-VI-3, PM-VI-4.
    """
    taken = _take_lease(run_id, worker)
    if taken is None:
        return PurgeRun.objects.get(pk=run_id)
    run, lease = taken
    started = time.monotonic()
    batches = 0
    try:
        plan = Plan(run, run.position["plan"])
    except Exception as exc:
        logger.exception("Purge run %s cannot build its plan", run_id)
        _fail(lease, exc)
        return PurgeRun.objects.get(pk=run_id)
    using = router.db_for_write(PurgeRun)
    while True:
        try:
            with transaction.atomic(using=using):
                did_batch, finished = _advance(plan, lease, dry_run=run.dry_run, using=using)
        except LeaseLost:
            logger.info("Purge run %s: claim %s no longer holds the lease; stopping", run_id, lease.owner)
            break
        except Exception as exc:
            logger.exception("Purge run %s failed in a batch", run_id)
            _fail(lease, exc)
            break
        if finished:
            break
        batches += did_batch
        if (max_batches is not None and batches >= max_batches) or (
            max_seconds is not None and time.monotonic() - started >= max_seconds
        ):
            lease_release(lease)
            break
    return PurgeRun.objects.get(pk=run_id)
