"""Writes to retention: rules, holds and runs. Each is one transaction with its audit event (POLICY-MAP VI).

Rules: a rule runs only once a DPO has confirmed it (`rule_confirm`); a later change to what a confirmed
rule does (category, store, period, clock, action) keeps the confirmation only when a DPO makes it, and
otherwise disables the rule until a DPO confirms it again. Holds: anyone allowed to place one may, and
only a DPO (`retention.lift_legalhold`) lifts one. Runs: `purge_run_start` records the run with its cutoff
and plan and queues the work after commit; retention.engine does the work.

Dependencies run one way: retention.tasks imports this module (tasks call services), this module imports
the engine and never the tasks module: a run is queued by the task's name (privacyops.queueing).
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from privacyops.audit import audit_record
from privacyops.queueing import task_queue_on_commit

from . import periods, selectors
from .engine import empty_counts, plan_labels
from .models import LegalHold, PurgeRun, RetentionRule

# Fields that change what a rule deletes or anonymises; changing one of a confirmed rule needs a DPO again.
SUBSTANTIVE_FIELDS = ("category", "store", "period", "counts_from", "timestamp_field", "action")


def _can(actor, perm: str) -> bool:
    """The system (a command, a job: actor None) acts with a DPO's authority; a person needs the permission."""
    return actor is None or actor.has_perm(perm)


# --- Rules ------------------------------------------------------------------------------------------------


def rule_validate(rule: RetentionRule) -> None:
    """Raise ValidationError (by field) for a rule that cannot be run as written (PM-VI-1, PM-VI-2)."""
    errors: dict[str, list[str]] = {}

    def add(field, message):
        errors.setdefault(field, []).append(message)

    try:
        periods.parse_period(rule.period)
    except ValidationError as exc:
        add("period", exc.messages[0])

    if not rule.category_id:
        add("category", "Choose the data category the rule keeps.")
        raise ValidationError(errors)

    governed = selectors.governed_models(rule)
    if rule.counts_from == RetentionRule.CountsFrom.TIMESTAMP:
        if not rule.timestamp_field:
            add("timestamp_field", "Name the timestamp the rule counts from.")
        elif not any(rule.timestamp_field in d.timestamp_fields for d in governed):
            declared = sorted({name for d in governed for name in d.timestamp_fields})
            add(
                "timestamp_field",
                f"No model of category {rule.category.code} declares a timestamp {rule.timestamp_field!r}"
                + (f"; declared: {', '.join(declared)}." if declared else "."),
            )
    elif rule.timestamp_field:
        add("timestamp_field", "Leave this empty unless the rule counts from another timestamp.")

    for decl in governed:
        if selectors.expiry_supported(decl, rule) and selectors.is_retained(decl):
            add("category", f"{decl.label} keeps fields under a legal duty; a retention rule cannot purge it.")

    if rule.action == RetentionRule.Action.ANONYMISE:
        for decl in selectors.rule_models(rule):
            if not decl.anonymisable:
                how = f"through {decl.subject}" if decl.subject else "without a foreign key of its own"
                add(
                    "action",
                    f"{decl.label} is linked to the account {how}; only rows with a direct, nullable link to the "
                    "account can be anonymised. Delete them instead, or narrow the rule to another store.",
                )

    if rule.enabled:
        if not rule.confirmed_at:
            add("enabled", "A rule runs only after a DPO has confirmed it.")
        clash = RetentionRule.objects.filter(enabled=True, category_id=rule.category_id, store_id=rule.store_id)
        if rule.pk:
            clash = clash.exclude(pk=rule.pk)
        other = clash.first()
        if other is not None:
            where = f"in store {rule.store.code}" if rule.store_id else "for the whole category"
            add("enabled", f"Rule {other.code} is already enabled for {rule.category.code} {where}; disable it first.")

    if errors:
        raise ValidationError(errors)


def _changed_fields(rule: RetentionRule) -> list[str]:
    if rule._state.adding or not rule.pk:
        return []
    stored = RetentionRule.objects.get(pk=rule.pk)
    return [
        f.name
        for f in RetentionRule._meta.concrete_fields
        if f.name != "updated_at" and getattr(stored, f.attname) != getattr(rule, f.attname)
    ]


def rule_save(*, rule: RetentionRule, actor, changed: list[str] | None = None) -> RetentionRule:
    """Create or update a rule after checking it can run as written; audited (PM-VI-1).

    `changed` names the fields the caller changed (the admin form's changed_data); without it they are
    worked out from the stored row. A change to what a confirmed rule does keeps the confirmation if the
    actor may confirm rules (it is re-stamped with them), else the rule is disabled and unconfirmed.
    """
    creating = rule._state.adding
    with transaction.atomic():
        if changed is None:
            changed = _changed_fields(rule)
        substantive = sorted(set(changed) & set(SUBSTANTIVE_FIELDS))
        if not creating and substantive:
            if PurgeRun.objects.filter(rule_id=rule.pk, dry_run=False, status__in=PurgeRun.ACTIVE_STATUSES).exists():
                raise ValidationError("A run of this rule is in progress; change the rule after it has finished.")
            if rule.confirmed_at:
                if actor is not None and actor.has_perm("retention.confirm_retentionrule"):
                    rule.confirmed_by, rule.confirmed_at = actor, timezone.now()
                else:
                    rule.confirmed_by, rule.confirmed_at, rule.enabled = None, None, False
        rule_validate(rule)
        rule.full_clean()
        rule.save()
        audit_record(
            actor=actor,
            action="retention.rule_created" if creating else "retention.rule_updated",
            target=rule,
            details={"code": rule.code, "fields": sorted(changed), "enabled": rule.enabled, "confirmed": bool(rule.confirmed_at)},
        )
    return rule


def rule_confirm(*, rule: RetentionRule, actor) -> RetentionRule:
    """A DPO confirms the rule and it is enabled: from now on it runs on schedule (PM-VI-1)."""
    if actor is None or not actor.has_perm("retention.confirm_retentionrule"):
        raise PermissionDenied("Only a DPO can confirm retention rules.")
    with transaction.atomic():
        rule.confirmed_by = actor
        rule.confirmed_at = timezone.now()
        rule.enabled = True
        rule_validate(rule)
        rule.full_clean()
        rule.save()
        audit_record(
            actor=actor,
            action="retention.rule_confirmed",
            target=rule,
            details={
                "code": rule.code,
                "category": rule.category.code,
                "store": rule.store.code if rule.store_id else None,
                "period": rule.period,
                "counts_from": rule.counts_from,
                "action": rule.action,
            },
        )
    return rule


def rule_disable(*, rule: RetentionRule, actor) -> RetentionRule:
    """Stop the rule from running (its confirmation stays on record); audited."""
    with transaction.atomic():
        rule.enabled = False
        rule.save(update_fields=["enabled", "updated_at"])
        audit_record(actor=actor, action="retention.rule_disabled", target=rule, details={"code": rule.code})
    return rule


# --- Holds ------------------------------------------------------------------------------------------------


def hold_place(*, actor, reason: str, reference: str, subject=None, category=None, store=None, review_date=None) -> LegalHold:
    """PM-VI-3: from now on no purge and no erasure touches what the hold covers.

    The audit event carries the held subject's subject_ref (never their name or email).
    """
    if subject is None and category is None and store is None:
        raise ValidationError("A hold names a subject, a category or a store (or several).")
    with transaction.atomic():
        hold = LegalHold(
            subject=subject,
            category=category,
            store=store,
            reason=reason,
            reference=reference,
            review_date=review_date,
            placed_by=actor,
        )
        hold.full_clean()
        hold.save()
        audit_record(
            actor=actor,
            action="retention.hold_placed",
            target=hold,
            subject=subject,
            details={
                "reference": reference,
                "category": category.code if category else None,
                "store": store.code if store else None,
                "review_date": review_date,
            },
        )
    return hold


def hold_lift(*, hold: LegalHold, actor, reason: str = "") -> LegalHold:
    """Lift a hold (DPO only: `retention.lift_legalhold`); its rows follow the rules again from the next batch."""
    if not _can(actor, "retention.lift_legalhold"):
        raise PermissionDenied("Only a DPO can lift a legal hold.")
    with transaction.atomic():
        hold = LegalHold.objects.select_for_update().get(pk=hold.pk)
        if hold.lifted_at is not None:
            raise ValidationError("This hold has already been lifted.")
        hold.lifted_at = timezone.now()
        hold.lifted_by = actor
        hold.lift_reason = reason
        hold.save(update_fields=["lifted_at", "lifted_by", "lift_reason"])
        audit_record(
            actor=actor,
            action="retention.hold_lifted",
            target=hold,
            subject=hold.subject,
            details={"reference": hold.reference},
        )
    return hold


# --- Runs -------------------------------------------------------------------------------------------------


def purge_run_start(
    *, rule: RetentionRule, dry_run: bool = False, actor=None, batch_size: int | None = None, enqueue: bool = True
):
    """Record a run of `rule` with its cutoff and plan, audited, and queue its work after commit (PM-VI-4).

    A real run needs a confirmed, enabled rule and no other real run of it queued or running. A dry run
    (a preview) can be made of any rule. `enqueue=False` leaves the work to the caller (the command runs
    it inline with retention.engine.purge_run_work).
    """
    from django.conf import settings

    if not dry_run:
        if not (rule.enabled and rule.confirmed_at):
            raise ValidationError("Only a confirmed, enabled rule runs; preview it instead, or confirm it first.")
        if PurgeRun.objects.filter(rule=rule, dry_run=False, status__in=PurgeRun.ACTIVE_STATUSES).exists():
            raise ValidationError("This rule already has a run in progress.")
    try:
        periods.parse_period(rule.period)
    except ValidationError as exc:
        raise ValidationError(f"Rule {rule.code}: {exc.messages[0]}") from None
    now = timezone.now()
    labels = plan_labels(rule)
    try:
        with transaction.atomic():
            run = PurgeRun.objects.create(
                rule=rule,
                dry_run=dry_run,
                requested_by=actor,
                created_at=now,
                cutoff=periods.cutoff(now, rule.period),
                batch_size=batch_size or settings.RETENTION_BATCH_SIZE,
                total_steps=len(labels),
                position={"plan": labels, "step": 0, "last_key": None},
                counts=empty_counts(labels),
            )
            audit_record(
                actor=actor,
                action="retention.run_requested",
                target=run,
                details={"rule": rule.code, "dry_run": dry_run, "cutoff": run.cutoff, "models": labels},
            )
            if enqueue:
                run_id = run.pk
                task_queue_on_commit("retention.tasks.purge_run_continue", run_id)
    except IntegrityError:
        raise ValidationError("This rule already has a run in progress.") from None
    return run


def purge_run_cancel(*, run: PurgeRun, actor) -> PurgeRun:
    """Stop a queued or running run: its worker stops at its next batch without writing; audited.

    Batches already committed stay done (each is complete on its own); a new run starts from scratch.
    """
    if not _can(actor, "retention.run_retentionrule"):
        raise PermissionDenied("Only a DPO can cancel a purge run.")
    with transaction.atomic():
        cancelled = PurgeRun.objects.filter(pk=run.pk, status__in=PurgeRun.ACTIVE_STATUSES).update(
            status=PurgeRun.Status.CANCELLED, finished_at=timezone.now(), lease_owner="", lease_expires_at=None
        )
        if not cancelled:
            raise ValidationError("Only a queued or running run can be cancelled.")
        run.refresh_from_db()
        audit_record(
            actor=actor,
            action="retention.run_cancelled",
            target=run,
            details={"rule": run.rule.code, "dry_run": run.dry_run, "batches": run.batches_done, "position": run.position},
        )
    return run
