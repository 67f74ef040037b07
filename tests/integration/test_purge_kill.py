"""A purge run whose worker is killed mid-run resumes by itself and ends exactly as an uninterrupted run.

PM-VI-4 and the issue's kill test: about 200,000 expired rows (messages with their attachments and
conversations, bench/_purge_data.py, written with COPY), one subject in a hundred under a legal hold. A
real Celery worker on Redis works the run in small batches with a short lease; the test SIGKILLs the
worker's whole process group once some batches have committed, starts a new worker, and sends
`stalled_runs_resume` every second, as beat would every minute. Nothing else continues the run: the
killed task's message stays unacknowledged in Redis (it would come back only after the visibility
timeout, hours away), so the run finishes only if resuming from the database works.

The reference is the same rule run uninterrupted by `manage.py retention run` on a copy of the database
taken before any worker started (CREATE DATABASE ... TEMPLATE). Final rows (per table: count and the set
of ids, and feedback's message links) and the PurgeRun counts must be equal.

The workers listen on a queue of this test's own and route every retention task they send there, so no
other worker on the same broker (a developer's script/server) can take part.
"""

import os
import subprocess
import sys
import time
import uuid

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from bench import _purge_data as purge_data
from inventory.models import DataCategory
from retention.models import PurgeRun, RetentionRule
from retention.services import purge_run_start
from retention.tasks import purge_run_continue, stalled_runs_resume
from tests.integration.processes import (
    CeleryWorker,
    database_copy,
    database_drop,
    queue_forget,
    routed_worker_argv,
    server_connection,
    subprocess_database_url,
    through_broker,
    worker_env,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker, pytest.mark.slow]

ROWS = 170_000  # messages; with their attachments and conversations about 205,000 rows in the run's scope
BATCH = 2_000
LEASE_SECONDS = 3
TASK_SECONDS = 2
TIMEOUT = 120
RULE = "kill-test-user-content"


def _env(tmp_path, database_url: str) -> dict:
    return worker_env(
        tmp_path,
        database_url=database_url,
        redis_url=settings.REDIS_URL,
        RETENTION_LEASE_SECONDS=str(LEASE_SECONDS),
        RETENTION_TASK_SECONDS=str(TASK_SECONDS),
    )


def _start_worker(tmp_path, queue: str, name: str) -> CeleryWorker:
    # Every retention task the worker queues (a continuation, a resumed run) goes to the test's queue.
    argv = routed_worker_argv(queue, "retention.tasks.*", name=f"{queue}-{name}")
    worker = CeleryWorker(argv, env=_env(tmp_path, subprocess_database_url()), queue=queue, log=tmp_path / f"{name}.log")
    worker.wait_ready()
    return worker


def _state(cursor) -> tuple[dict, dict]:
    return purge_data.fingerprint(cursor), purge_data.held_rows(cursor)


def _run(run_id: int) -> PurgeRun:
    return PurgeRun.objects.get(pk=run_id)


def test_pm_vi_4_killed_worker_run_resumes_and_equals_an_uninterrupted_run(transactional_db, seeded, tmp_path):
    RetentionRule.objects.create(
        code=RULE,
        name="Kill test: user content after 30 days",
        category=DataCategory.objects.get(code="user-content"),
        period="P30D",
        action=RetentionRule.Action.DELETE,
        enabled=True,
        confirmed_at=timezone.now(),
    )
    with transaction.atomic(), connection.cursor() as cursor:
        data = purge_data.build(cursor.cursor, rows=ROWS, logs=0)
    assert data.held, "the data set must hold some subjects"
    with connection.cursor() as cursor:
        before, held_before = _state(cursor.cursor)

    reference = f"{connection.settings_dict['NAME']}_killref_{os.getpid()}"
    queue = f"test-{uuid.uuid4().hex[:12]}"
    workers: list[CeleryWorker] = []
    reference_url = database_copy(reference)
    try:
        workers.append(_start_worker(tmp_path, queue, "worker-1"))
        run = purge_run_start(rule=RetentionRule.objects.get(code=RULE), batch_size=BATCH, enqueue=False)
        with through_broker():
            purge_run_continue.apply_async((run.pk,), queue=queue)

        deadline = time.monotonic() + TIMEOUT
        while _run(run.pk).batches_done == 0:
            assert time.monotonic() < deadline, f"no batch within {TIMEOUT}s:\n{workers[0].output()}"
            time.sleep(0.05)
        workers[0].kill()
        killed = _run(run.pk)
        assert not killed.is_finished, "the run finished before the kill: give the test more rows or smaller batches"
        assert killed.lease_owner, "the killed worker held the lease"

        workers.append(_start_worker(tmp_path, queue, "worker-2"))
        while not _run(run.pk).is_finished:
            assert time.monotonic() < deadline, f"the run did not finish within {TIMEOUT}s:\n{workers[1].output()}"
            with through_broker():
                stalled_runs_resume.apply_async(queue=queue)  # what beat does every minute
            time.sleep(1)
        final = _run(run.pk)
        assert final.status == PurgeRun.Status.COMPLETED, final.error
        assert final.attempts >= 2 and final.batches_done > killed.batches_done

        with connection.cursor() as cursor:
            after, held_after = _state(cursor.cursor)
        assert held_after == held_before, "a held row was deleted or changed"

        command = [sys.executable, "manage.py", "retention", "run", "--rule", RULE, "--batch-size", str(BATCH)]
        reference_env = _env(tmp_path, reference_url)
        done = subprocess.run(command, env=reference_env, cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=TIMEOUT)
        assert done.returncode == 0, done.stdout + done.stderr
        with server_connection(reference) as ref, ref.cursor() as cursor:
            expected, _ = _state(cursor)
            cursor.execute(
                "SELECT r.counts FROM retention_purgerun r JOIN retention_retentionrule rule ON rule.id = r.rule_id "
                "WHERE rule.code = %s AND NOT r.dry_run",
                [RULE],
            )
            (expected_counts,) = cursor.fetchone()

        assert after == expected
        assert final.counts == expected_counts
        assert after != before  # the run did delete (the comparison is not between two untouched databases)
    finally:
        for worker in workers:
            worker.stop()
        queue_forget(queue)
        database_drop(reference)
