"""Erasure (PM-IX-2): one subject's rows across every registered store, through the retention engine.

Design
- The plan is the purge engine's (`retention.engine.Plan`), built for one subject: one step per registered
  model that holds the subject's rows (`Declaration.subject_q`), children before parents, the account
  itself last. Each step either deletes the subject's rows or updates them with the registry's
  per-subject strategies (`privacyops.privacy.strategies.erase_updates`): a model goes when a field of it
  is DELETE, or when it hangs off the account (or off a row that goes) by a required CASCADE key and so
  cannot outlive it; it is updated when it has NULL / REDACT / GENERALISE / PSEUDONYMISE fields; a model
  with only RETAIN fields (the audit trail, consent proof) is left as it is, "kept by legal duty". Link
  rows outside the registry that cascade from a row that goes (a package's download links, the account's
  group memberships) get a step of their own, scoped through their parent.
- Batches, holds and kept parents are the engine's (`retention.engine.plan_batch`, its public batch step):
  the hold check is in the query that picks each batch, a row a held row needs is kept, set-null
  children are cut with their parent, removed rows' files leave storage after commit. Nothing is written
  here that the engine writes for purges.
- The position lives in the request's job (`requests.jobs`): every batch is one transaction that first
  renews the job's owned lease (a conditional UPDATE that also locks the request's row till commit), then
  runs the batch, then stores the position and counts in `job_result` (`job_progress`). So a worker
  killed mid-way loses at most its batch and the next claim continues from there, and a worker that lost
  its lease (it paused past it and another took the job) gets `LeaseLost` before writing a row.
- Order at the end, in one transaction: the request's own record is excluded from the walk; once the
  walk (account included) is done, the outcome is written, the subject is told (`erasure_done`, to the
  request's contact: the message takes its address when rendered and leaves after commit), the request
  is closed (`rights_request_close`), recipients get their Art. 19 tasks, and only then the request's own
  rows are erased by the same engine: its contact address, agent and notes are cleared and it keeps only
  what the registry retains (subject_ref, right, dates, outcome).
- Every erasure is appended to a log outside the database (settings.ERASURE_LOG_PATH, one JSON line,
  fsync'd) before its first batch: the subject_ref and a keyed hash of the email (the same HMAC as the
  registry's pseudonyms, its own scope), the date and the request reference. `erasures_replay` reads it
  after a restore from an older backup and erases those subjects again; the plan finds only what is
  left, so replaying twice changes nothing the second time.

Invariants
- Nothing is erased before the request is verified (`verification.require_verified`) and approved
  (status fulfilling).
- A held row is never changed (the engine's check, per batch); the outcome lists each hold with its
  reason and the rows it keeps.
- job_result and the log hold counts, codes, references and keyed hashes only: never an address or name.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections, models, router, transaction
from django.db.models import Q
from django.utils import timezone

from privacyops.audit import audit_record
from privacyops.leases import LeaseLost, lease_renew
from privacyops.privacy import Declaration, Erase, registry
from privacyops.privacy.strategies import erase_updates, pseudonym
from retention import selectors as retention_selectors
from retention.engine import COUNT_KEYS, Plan, children_first, plan_batch, reverse_foreign_keys
from retention.models import LegalHold

from .emails import request_email_send
from .jobs import ERASURE_RIGHTS, JobClaim, job_claim, job_fail, job_finish, job_progress, job_release
from .models import RequestEvent, Right, RightsRequest, Status
from .recipients import recipient_notices_create
from .services import rights_request_close
from .timeline import request_event_record
from .verification import require_verified

logger = logging.getLogger(__name__)

LOG_EMAIL_SCOPE = "erasure-log.email"
DELETE, UPDATE, KEEP = "delete", "update", "keep"
# RequestEvent is append-only (a PostgreSQL trigger); erasure is the one writer allowed to redact it.
APPEND_ONLY_TRIGGERS = ("requests.RequestEvent:request_event_append_only",)


class ErasureError(Exception):
    """An erasure that must not start (not verified, not approved, no account)."""


# --- What happens to each model --------------------------------------------------------------------------


def _account_model():
    return get_user_model()


def model_action(decl: Declaration) -> str:
    """DELETE, UPDATE or KEEP: what erasing a subject does to their rows of `decl.model`."""
    if decl.erasure_deletes_row:
        return DELETE
    if decl.subject and not decl.is_account_model:
        fk = decl.model._meta.get_field(decl.subject_fk)
        if not fk.null and fk.remote_field.on_delete is models.CASCADE:
            parent = fk.related_model
            # It cannot outlive a parent that goes: the account, or a row erasure deletes.
            if parent is _account_model() or (registry.is_registered(parent) and model_action(registry.get(parent)) == DELETE):
                return DELETE
    if erase_updates(decl, subject="probe"):
        return UPDATE
    return KEEP


def _has_retained(decl: Declaration) -> bool:
    return any(f.erase == Erase.RETAIN for f in decl.fields.values())


def _stand_in(who: dict):
    """An unsaved account carrying the identifiers a plan needs (pk, subject_ref, email): the account row
    may be gone when a resumed job rebuilds its plan."""
    return _account_model()(pk=who["pk"], subject_ref=who["ref"], email=who.get("email") or "")


def _own_record_q(decl: Declaration, request_id: int | None) -> Q | None:
    """Rows of `decl.model` that are the erasure's own request or hang off it (its timeline, links ...)."""
    if request_id is None:
        return None
    if decl.model is RightsRequest:
        return Q(pk=request_id)
    for f in decl.model._meta.concrete_fields:
        if f.is_relation and f.related_model is RightsRequest and f.name == (decl.subject_fk or ""):
            return Q(**{f.attname: request_id})
    return None


def _link_children(model, scope_q: Q, seen: set) -> list[tuple[Declaration, Q]]:
    """Rows outside the registry (or declared not personal) that cascade from deleted rows of `model`:
    without a step of their own they would keep their parent (the engine keeps parents of rows it does
    not walk)."""
    found = []
    for rel in reverse_foreign_keys(model):
        child, fk = rel.related_model, rel.field
        if rel.on_delete is not models.CASCADE or child in seen:
            continue
        if registry.is_registered(child) and registry.get(child).personal:
            continue  # a personal model has its own step, or is kept and keeps its parent
        seen.add(child)
        parents = model._base_manager.filter(scope_q).values(fk.target_field.attname)
        child_q = Q(**{f"{fk.attname}__in": parents})
        decl = registry.get(child) if registry.is_registered(child) else Declaration(model=child, personal=False)
        found.append((decl, child_q))
        found.extend(_link_children(child, child_q, seen))
    return found


def subject_steps(
    who, *, exclude_request: int | None = None, only_request: int | None = None
) -> list[tuple[Declaration, Q, str]]:
    """(declaration, rows of the subject, action) for every model erasure touches, in the order the plan
    walks them: children before parents, link rows before their parent, the account last.

    `exclude_request` leaves out the request's own record (erased at the end); `only_request` is that end.
    """
    account_model = _account_model()
    chosen: list[tuple[Declaration, Q, str]] = []
    for decl in registry.personal():
        if only_request is not None:
            q = _own_record_q(decl, only_request)
        else:
            q = decl.subject_q(who)
            if q is not None and exclude_request is not None:
                own = _own_record_q(decl, exclude_request)
                if own is not None:
                    q &= ~own
        if q is None:
            continue
        if decl.model is LegalHold:
            # A hold in force is the reason rows stay: never erased. A lifted one loses its link to the
            # account only when it has another scope (a hold must name something); a lifted hold on the
            # subject alone keeps naming the account, which is then kept (see docs/rights-requests-erasure.md).
            q &= Q(lifted_at__isnull=False) & (Q(category__isnull=False) | Q(store__isnull=False))
        action = model_action(decl)
        if action != KEEP:
            chosen.append((decl, q, action))
    extra: list[tuple[Declaration, Q, str]] = []
    seen = {decl.model for decl, _, _ in chosen}
    for decl, q, action in chosen:
        if action == DELETE:
            extra.extend((child, child_q, DELETE) for child, child_q in _link_children(decl.model, q, seen))
    by_model = {decl.model: (decl, q, action) for decl, q, action in chosen + extra}
    ordered = children_first([decl for decl, _, _ in chosen + extra])
    ordered.sort(key=lambda d: d.model is account_model)  # stable: the account last
    return [by_model[d.model] for d in ordered]


def build_plan(steps: list[tuple[Declaration, Q, str]], who) -> Plan:
    plan = Plan(None)
    ref = str(who.subject_ref)
    for decl, q, action in steps:
        if action == DELETE:
            plan.add_step(decl, q, delete=True)
        else:
            plan.add_step(decl, q, delete=False, updates=lambda decl=decl: erase_updates(decl, subject=ref))
    return plan


def keep_counts(who) -> dict[str, int]:
    """Per model label: the subject's rows kept by legal duty as they are (models with only RETAIN fields)."""
    counts = {}
    for decl in registry.personal():
        if model_action(decl) != KEEP:
            continue
        q = decl.subject_q(who)
        if q is not None:
            counts[decl.label] = decl.model._base_manager.filter(q).count()
    return counts


# --- Running a plan ----------------------------------------------------------------------------------


def _ignoring_append_only(using: str):
    if connections[using].vendor != "postgresql":
        return contextlib.nullcontext()
    import pgtrigger

    return pgtrigger.ignore(*APPEND_ONLY_TRIGGERS)


def _merge(totals: dict, label: str, counts: dict) -> None:
    row = totals.setdefault(label, dict.fromkeys(COUNT_KEYS, 0))
    for key, value in counts.items():
        row[key] = row.get(key, 0) + value


def plan_walk(
    plan: Plan,
    state: dict,
    *,
    fence: Callable[[], None] | None = None,
    save: Callable[[dict], None] | None = None,
    max_batches: int | None = None,
    dry_run: bool = False,
    atomic: bool = True,
) -> bool:
    """Walk `plan` from `state["position"]`, one transaction per batch: `fence()` first (the job's lease
    renewal, which raises LeaseLost and so rolls the batch back before it wrote), the batch, then
    `save(state)`.

    Returns True when the plan is finished, False when `max_batches` stopped it first. `state["counts"]`
    gathers the engine's counts per model label. With atomic=False the caller's transaction holds it all
    (the request's own record, a handful of rows).
    """
    using = router.db_for_write(RightsRequest)
    state.setdefault("position", {"step": 0, "last_key": None})
    state.setdefault("counts", {})
    batches = 0
    while True:
        block = transaction.atomic(using=using) if atomic else contextlib.nullcontext()
        with block, _ignoring_append_only(using):
            if fence is not None:
                fence()
            advance = plan_batch(plan, state["position"], settings.ERASURE_BATCH_SIZE, dry_run=dry_run, using=using)
            state["position"] = advance.position
            if advance.counts is not None:
                _merge(state["counts"], advance.step.label, advance.counts)
                state["batches"] = state.get("batches", 0) + 1
            if save is not None:
                save(state)
        if advance.finished:
            return True
        if advance.counts is not None:
            batches += 1
            if max_batches is not None and batches >= max_batches:
                return False


# --- The outcome -------------------------------------------------------------------------------------------


def _holds_keeping(steps) -> list[dict]:
    """The active holds that keep rows of this subject, each with its reason and rows per model."""
    listed = []
    for hold in retention_selectors.active_holds():
        rows = {}
        for decl, q, _ in steps:
            if not decl.personal:
                continue
            covered = retention_selectors.HoldScope(decl).rows_of(hold)
            if covered is None:
                continue
            count = decl.model._base_manager.filter(q).filter(covered).count()
            if count:
                rows[decl.label] = count
        if rows:
            listed.append({"hold": hold.pk, "reference": hold.reference, "reason": hold.reason, "rows": rows})
    return listed


def outcome_summary(steps, counts: dict, kept_by_duty: dict, holds: list[dict]) -> dict:
    """Per data category (the rows' category): erased, anonymised, held, kept for held rows, kept by duty."""
    by_label = {decl.label: (decl, action) for decl, _, action in steps}
    categories: dict[str, dict[str, int]] = {}

    def bucket(code):
        return categories.setdefault(code or "links", {"erased": 0, "anonymised": 0, "held": 0, "kept": 0, "legal_duty": 0})

    for label, c in counts.items():
        decl, _ = by_label.get(label, (None, None))
        if decl is None or not decl.personal:
            continue
        row = bucket(decl.category)
        row["erased"] += c.get("deleted", 0)
        # A record kept by legal duty whose personal fields were cleared (a rights request) is still kept.
        row["legal_duty" if _has_retained(decl) else "anonymised"] += c.get("anonymised", 0)
        row["held"] += c.get("held", 0)
        row["kept"] += c.get("kept", 0)
    for label, n in kept_by_duty.items():
        if n:
            bucket(registry.get(apps.get_model(label)).category)["legal_duty"] += n
    return {"categories": dict(sorted(categories.items())), "holds": holds}


def outcome_text(summary: dict, *, child_report: bool = False) -> str:
    """The request's outcome (kept with its record, sent to the requester): counts and hold reasons only."""
    held = sum(c["held"] + c["kept"] for c in summary["categories"].values())
    if child_report:
        text = "The reported account and its data were erased."
        if held:
            text = "The reported account's data were erased, except records we must keep under a legal hold."
        return text
    lines = ["Your data were erased across our systems. Per category:"]
    for code, c in summary["categories"].items():
        parts = []
        if c["erased"]:
            parts.append(f"{c['erased']} erased")
        if c["anonymised"]:
            parts.append(f"{c['anonymised']} anonymised")
        if c["held"] or c["kept"]:
            parts.append(f"{c['held'] + c['kept']} kept under a legal hold")
        if c["legal_duty"]:
            parts.append(f"{c['legal_duty']} kept because the law requires it (they name you only by a random reference)")
        if parts:
            lines.append(f"- {code}: {', '.join(parts)}.")
    for hold in summary["holds"]:
        lines.append(f"Kept under legal hold {hold['reference']}: {hold['reason']}")
    return "\n".join(lines)


# --- The log outside the database -----------------------------------------------------------------------


def email_hash(email: str) -> str:
    return pseudonym((email or "").strip().lower(), scope=LOG_EMAIL_SCOPE)


def erasure_log_append(*, account, reference: str, at: datetime.datetime | None = None) -> dict:
    """Append one line for an erasure to settings.ERASURE_LOG_PATH, fsync'd (directories created)."""
    entry = {
        "subject_ref": str(account.subject_ref),
        "email_hmac": email_hash(account.email),
        "erased_at": (at or timezone.now()).isoformat(),
        "request": reference,
    }
    path = Path(settings.ERASURE_LOG_PATH)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, sort_keys=True) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
    return entry


def erasure_log_entries(*, since: datetime.date | None = None):
    path = Path(settings.ERASURE_LOG_PATH)
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
                day = datetime.datetime.fromisoformat(entry["erased_at"]).date()
            except (ValueError, KeyError) as exc:
                logger.error("Erasure log line %s is not readable: %s", number, exc)
                continue
            if since is None or day >= since:
                yield entry


# --- Erasing one subject ----------------------------------------------------------------------------------


def _who(account) -> dict:
    return {"pk": account.pk, "ref": str(account.subject_ref)}


def subject_erase(*, account, actor=None, reference: str = "", log: bool = True, max_batches: int | None = None) -> dict:
    """Erase one account now, without a request (the `dsr erase` command, replays). Returns the summary.

    Not resumable by position, but idempotent: running it again finds only what is left.
    """
    if log:
        erasure_log_append(account=account, reference=reference)
    steps = subject_steps(account)
    kept_by_duty = keep_counts(account)
    state: dict = {}
    finished = plan_walk(build_plan(steps, account), state, max_batches=max_batches)
    summary = outcome_summary(steps, state["counts"], kept_by_duty, _holds_keeping(steps))
    summary["finished"] = finished
    audit_record(
        actor=actor,
        action="erasure.subject_erased",
        target=("accounts.user", str(account.pk)),
        subject=account.subject_ref,
        details={"reference": reference, "counts": state["counts"], "finished": finished},
    )
    return summary


def erasure_preview(*, subject) -> list[dict]:
    """Per category: what erasing `subject` now would erase, anonymise and keep, and why (a dry run of the
    same plan: the engine's dry and real runs share their read)."""
    steps = subject_steps(subject)
    state: dict = {}
    plan_walk(build_plan(steps, subject), state, dry_run=True)
    summary = outcome_summary(steps, state["counts"], keep_counts(subject), _holds_keeping(steps))
    preview = []
    for code, c in summary["categories"].items():
        reasons = [f"hold {h['reference']}: {h['reason']}" for h in summary["holds"]]
        preview.append({"category": code, **c, "hold_reasons": reasons if (c["held"] or c["kept"]) else []})
    return preview


def erasure_work(*, request_id: int, max_batches: int | None = None) -> RightsRequest | None:
    """Carry out an approved erasure request (or a confirmed child report) as its job, resuming from the
    position in job_result (PM-IX-2, PM-VIII-2). `max_batches` stops after that many batches and frees
    the job for the next claim (tests; a worker's time slice). Returns None when the job is not claimable
    (another worker's lease is live: this one backs off)."""
    claim = job_claim(request_id)
    if claim is None:
        return None
    rights_request = claim.rights_request
    try:
        require_verified(rights_request)
        if rights_request.status != Status.FULFILLING:
            raise ErasureError(f"Request {rights_request.reference} is not approved for fulfilment.")
        if rights_request.right not in ERASURE_RIGHTS:
            raise ErasureError(f"Request {rights_request.reference} is not an erasure.")
        state = dict(rights_request.job_result or {})
        if "subject" not in state:
            account = rights_request.subject
            if account is None:
                raise ErasureError(f"Request {rights_request.reference} names no account to erase.")
            _start(claim, account, state)
        # The account while it exists (its email finds rows kept without an account, such as support mail);
        # once it is gone (the walk's last step) only the finish remains, and its pk and ref suffice.
        who = _account_model().objects.filter(pk=state["subject"]["pk"]).first() or _stand_in(state["subject"])
        steps = subject_steps(who, exclude_request=rights_request.pk)
        total = len(steps)

        def save(state: dict) -> None:
            job_progress(claim, done=state["position"].get("step", 0), total=total, result=state)

        def fence() -> None:
            lease_renew(claim.lease)

        if not plan_walk(build_plan(steps, who), state, fence=fence, save=save, max_batches=max_batches):
            job_release(claim)
            return RightsRequest.objects.get(pk=request_id)
        _finish(claim, steps, who, state)
    except LeaseLost:
        logger.warning("Erasure job of request %s: this worker lost the lease; stopping without writing", request_id)
    except Exception as exc:
        logger.exception("Erasure job of request %s failed", request_id)
        with transaction.atomic():
            if job_fail(claim, error=f"{type(exc).__name__}: {exc}"[:2000]):
                audit_record(
                    actor=None,
                    action="erasure.failed",
                    target=rights_request,
                    subject=rights_request.subject_ref,
                    details={"reference": rights_request.reference, "error": type(exc).__name__},
                )
    return RightsRequest.objects.get(pk=request_id)


def _start(claim: JobClaim, account, state: dict) -> None:
    """Before the first batch: the log line outside the database, then the job's identifiers and counts of
    what is kept by legal duty (read while the account still finds them)."""
    rights_request = claim.rights_request
    erasure_log_append(account=account, reference=rights_request.reference)
    state["subject"] = _who(account)
    state["kept_by_duty"] = keep_counts(account)
    state["position"] = {"step": 0, "last_key": None}
    state["counts"] = {}
    with transaction.atomic():
        job_progress(claim, done=0, result=state)
        audit_record(
            actor=None,
            action="erasure.started",
            target=rights_request,
            subject=rights_request.subject_ref,
            details={"reference": rights_request.reference},
        )


def _finish(claim: JobClaim, steps, who, state: dict) -> None:
    """One transaction, under the lease (renewed first): outcome, the subject told, the request closed,
    recipients' tasks, then the request's own record erased (its contact address last), and the job done."""
    request_id = claim.request_id
    with transaction.atomic():
        lease_renew(claim.lease)
        locked = RightsRequest.objects.locked(request_id)
        claim.rights_request = locked
        # This request's own record is erased last (below) and kept by legal duty like the subject's others.
        own_record = {registry.get(RightsRequest).label: 1}
        kept_by_duty = {**state.get("kept_by_duty", {}), **own_record}
        summary = outcome_summary(steps, state["counts"], kept_by_duty, _holds_keeping(steps))
        child = locked.right == Right.CHILD_REPORT
        text = outcome_text(summary, child_report=child)
        partial = any(c["held"] or c["kept"] for c in summary["categories"].values())
        request_email_send(
            rights_request=locked,
            template="erasure_done",
            categories=[] if child else list(summary["categories"].items()),
            holds=[] if child else summary["holds"],
            partial=partial,
            child_report=child,
        )
        # erasure_done (sent above) already tells the subject the outcome: no second "completed" e-mail.
        rights_request_close(rights_request=locked, actor=None, outcome=text, partial=partial, notify=False)
        affected = sorted(
            code for code, c in summary["categories"].items() if (c["erased"] or c["anonymised"]) and code != "links"
        )
        if affected:
            recipient_notices_create(rights_request=locked, category_codes=affected)
        own_steps = subject_steps(who, only_request=request_id)
        own: dict = {}
        plan_walk(build_plan(own_steps, who), own, atomic=False)
        result = {
            **summary,
            "counts": state["counts"],
            "own_record": own["counts"],
            "subject": {"ref": who.subject_ref and str(who.subject_ref)},
        }
        request_event_record(
            rights_request=locked,
            action="erasure.completed",
            kind=RequestEvent.Kind.JOB,
            details={"job": "erasure", "partial": partial},
            audit_details={"counts": state["counts"], "partial": partial},
        )
        job_finish(claim, result=result)


# --- Replay after a restore --------------------------------------------------------------------------------


def _account_for(entry: dict):
    User = _account_model()
    account = User.objects.filter(subject_ref=entry.get("subject_ref")).first()
    if account is not None:
        return account
    wanted = entry.get("email_hmac")
    if not wanted:
        return None
    for pk, email in User.objects.order_by("pk").values_list("pk", "email").iterator(chunk_size=2000):
        if email_hash(email) == wanted:
            return User.objects.get(pk=pk)
    return None


def erasures_replay(*, since) -> dict:
    """Erase again every subject the log says was erased on or after `since` (a date): after the database
    was restored from a backup older than those erasures. Idempotent. Returns counts."""
    if isinstance(since, datetime.datetime):
        since = since.date()
    report = {"entries": 0, "replayed": 0, "not_found": 0, "rows": {}}
    for entry in erasure_log_entries(since=since):
        report["entries"] += 1
        account = _account_for(entry)
        if account is None:
            report["not_found"] += 1
            continue
        summary = subject_erase(account=account, reference=entry.get("request", ""), log=False)
        report["replayed"] += 1
        for code, c in summary["categories"].items():
            row = report["rows"].setdefault(code, {})
            for key, value in c.items():
                row[key] = row.get(key, 0) + value
    audit_record(
        actor=None,
        action="erasure.replayed",
        details={"since": since.isoformat(), **{k: report[k] for k in ("entries", "replayed", "not_found")}},
    )
    return report
