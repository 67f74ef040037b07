"""Retention's tile on the staff dashboard: the last purge runs and what needs the DPO (PM-VI-4).

Shown only to users who may view purge runs. The flags, worst first:
- red: rules whose latest run failed (a later successful run clears the flag);
- amber: runs that should be moving but whose worker's lease has run out (stalled; the minute task
  re-enqueues them, so a flag that stays means no worker is taking them);
- amber: active legal holds past their review date;
- info: rules awaiting the DPO's confirmation (the seeded examples until confirmed). An enabled rule that
  was never confirmed cannot exist: the database refuses it.
A fixed number of queries, whatever the number of runs.
"""

from __future__ import annotations

from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils import timezone

from privacyops.dashboard import Flag, Tile, register_tile

from .models import LegalHold, PurgeRun, RetentionRule

LAST_RUNS = 5
ORDER = 50  # before the register's tiles: purges are operations, the register is reference


def _totals(run: PurgeRun) -> tuple[int, int, int]:
    deleted = anonymised = held = 0
    for counts in (run.counts or {}).values():
        deleted += counts.get("deleted", 0) or 0
        anonymised += counts.get("anonymised", 0) or 0
        held += counts.get("held", 0) or 0
    return deleted, anonymised, held


def _run_flag(run: PurgeRun) -> Flag:
    deleted, anonymised, held = _totals(run)
    kind = "preview" if run.dry_run else "run"
    status = run.get_status_display().lower()
    label = f"{run.rule.code} ({kind}): {status}, {deleted} deleted, {anonymised} anonymised, {held} held skipped"
    severity = {"failed": "red", "completed": "ok"}.get(run.status, "info")
    return Flag(label, None, reverse("admin:retention_purgerun_change", args=[run.pk]), severity)


def _failed_rules() -> int:
    latest = PurgeRun.objects.filter(rule=OuterRef("pk"), dry_run=False).order_by("-created_at", "-pk").values("status")[:1]
    return RetentionRule.objects.annotate(_latest=Subquery(latest)).filter(_latest=PurgeRun.Status.FAILED).count()


def stalled_runs():
    """Runs queued or running whose lease has expired."""
    return PurgeRun.objects.filter(
        status__in=[PurgeRun.Status.QUEUED, PurgeRun.Status.RUNNING], lease_expires_at__lt=timezone.now()
    )


def _flags(request) -> list[Flag]:
    runs_url = reverse("admin:retention_purgerun_changelist")
    rules_url = reverse("admin:retention_retentionrule_changelist")
    holds_url = reverse("admin:retention_legalhold_changelist")
    flags = []
    failed = _failed_rules()
    if failed:
        flags.append(Flag("rules whose last run failed", failed, f"{runs_url}?status__exact=failed", "red"))
    stalled = stalled_runs().count()
    if stalled:
        flags.append(Flag("runs stalled (lease expired)", stalled, f"{runs_url}?status__exact=running", "amber"))
    if request.user.has_perm("retention.view_legalhold"):
        overdue = LegalHold.objects.filter(lifted_at__isnull=True, review_date__lt=timezone.localdate()).count()
        if overdue:
            flags.append(Flag("legal holds past their review date", overdue, f"{holds_url}?state=review", "amber"))
    if request.user.has_perm("retention.view_retentionrule"):
        awaiting = RetentionRule.objects.filter(confirmed_at__isnull=True).count()
        if awaiting:
            flags.append(Flag("rules awaiting confirmation", awaiting, f"{rules_url}?confirmed=no", "info"))
    return flags


def render(request) -> Tile | None:
    if not request.user.has_perm("retention.view_purgerun"):
        return None
    runs = list(PurgeRun.objects.select_related("rule").order_by("-created_at", "-pk")[:LAST_RUNS])
    last = [_run_flag(run) for run in runs]
    return Tile(
        title="Purges",
        value=runs[0].get_status_display() if runs else "no runs yet",
        url=reverse("admin:retention_purgerun_changelist"),
        flags=[*_flags(request), *last],
        description=f"what needs attention, then the last {LAST_RUNS} runs and previews, newest first" if runs else "",
    )


register_tile("retention.purges", title="Purges", order=ORDER, render=render)
