"""Retention jobs. Thin: the work is in retention.engine and retention.services.

A long run is a chain of bounded tasks: `purge_run_continue` works for at most RETENTION_TASK_SECONDS and
then queues its own continuation. Resuming after a crash is driven from the database, not from the broker:
`stalled_runs_resume` (every minute) re-queues every run whose lease has expired, and the run continues
from the key its last committed batch recorded. Redis would only redeliver an unacknowledged task after
its visibility timeout (hours), which is far too late to rely on.

No `queue=` on the decorators: CELERY_TASK_ROUTES sends "retention.tasks.*" to the `purges` queue.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from privacyops.leases import lease_is_live

from .engine import LEASE_COLUMNS, purge_run_work
from .models import RetentionRule
from .selectors import purge_runs_stalled, rules_due_to_run
from .services import purge_run_start

logger = logging.getLogger("retention.tasks")


@shared_task(bind=True, acks_late=True)
def purge_run_continue(self, run_id: int) -> None:
    """Work on a run for a bounded time, then queue the continuation (in eager mode: keep going in-process).
    A run whose lease another claim holds is left to it (each call is a claim of its own, so a live lease
    after `purge_run_work` returned is never this task's: it released its own)."""
    while True:
        run = purge_run_work(run_id, max_seconds=settings.RETENTION_TASK_SECONDS)
        if run.is_finished or lease_is_live(run, LEASE_COLUMNS):
            return
        if not self.request.is_eager:
            purge_run_continue.apply_async((run_id,))
            return


@shared_task(acks_late=True)
def retention_rule_run(rule_id: int, dry_run: bool = False) -> int | None:
    """Start a run (or a preview) of one rule; its work is queued after commit. Returns the run's id."""
    rule = RetentionRule.objects.select_related("category", "store").get(pk=rule_id)
    try:
        return purge_run_start(rule=rule, dry_run=dry_run).pk
    except ValidationError as exc:
        logger.warning("Rule %s not started: %s", rule.code, "; ".join(exc.messages))
        return None


@shared_task(acks_late=True)
def due_rules_run() -> list[int]:
    """Daily (settings.PERIODIC_TASKS): start a real run of every enabled, confirmed rule not already running."""
    started = []
    for rule in rules_due_to_run():
        try:
            started.append(purge_run_start(rule=rule).pk)
        except ValidationError as exc:
            logger.warning("Rule %s not started: %s", rule.code, "; ".join(exc.messages))
    return started


@shared_task(acks_late=True)
def stalled_runs_resume() -> list[int]:
    """Every minute: queue the continuation of every run nobody is working on (retention.selectors)."""
    stalled = purge_runs_stalled(now=timezone.now(), lease_seconds=settings.RETENTION_LEASE_SECONDS)
    for run_id in stalled:
        purge_run_continue.delay(run_id)
    return stalled
