"""A purge run whose worker is killed mid-run resumes by itself and ends exactly as an uninterrupted run.

PM-VI-4 and the issue's kill test: about 200,000 expired rows (messages with their attachments and
conversations, bench/_purge_data.py, written with COPY), one subject in a hundred under a legal hold. A
real Celery worker on Redis works the run in small batches with a short lease; the test SIGKILLs the
worker's whole process group once some batches have committed, starts a new worker, and sends
`resume_stalled_runs` every second, as beat would every minute. Nothing else continues the run: the
killed task's message stays unacknowledged in Redis (it would come back only after the visibility
timeout, hours away), so the run finishes only if resuming from the database works.

The reference is the same rule run uninterrupted by `manage.py retention run` on a copy of the database
taken before any worker started (CREATE DATABASE ... TEMPLATE). Final rows (per table: count and the set
of ids, and feedback's message links) and the PurgeRun counts must be equal.

The workers listen on a queue of this test's own and route every retention task they send there, so no
other worker on the same broker (a developer's script/server) can take part.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager

import psycopg
import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from bench import _purge_data as purge_data
from inventory.models import DataCategory
from privacyops.celery import app
from retention.models import PurgeRun, RetentionRule
from retention.services import purge_run_start
from retention.tasks import purge_run_continue, resume_stalled_runs
from tests.integration.processes import CeleryWorker, subprocess_database_url, worker_env

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker, pytest.mark.slow]

ROWS = 170_000  # messages; with their attachments and conversations about 205,000 rows in the run's scope
BATCH = 2_000
LEASE_SECONDS = 3
TASK_SECONDS = 2
TIMEOUT = 120
RULE = "kill-test-user-content"

# The worker: every retention task it queues (a continuation, a resumed run) goes to the test's queue.
_WORKER = """
import sys
from privacyops.celery import app
queue = sys.argv[1]
app.conf.task_routes = {"retention.tasks.*": {"queue": queue}}
app.worker_main(["worker", "--queues", queue, "--concurrency", "1", "--hostname", queue + "@%h",
                 "--without-gossip", "--without-mingle", "--loglevel", "INFO"])
"""


def _env(tmp_path, database_url: str) -> dict:
    return worker_env(
        tmp_path,
        database_url=database_url,
        redis_url=settings.REDIS_URL,
        RETENTION_LEASE_SECONDS=str(LEASE_SECONDS),
        RETENTION_TASK_SECONDS=str(TASK_SECONDS),
    )


def _start_worker(tmp_path, queue: str, name: str) -> CeleryWorker:
    worker = CeleryWorker(
        [sys.executable, "-c", _WORKER, queue], env=_env(tmp_path, subprocess_database_url()), queue=queue, log=tmp_path / name
    )
    worker.wait_ready()
    return worker


@contextmanager
def _through_broker():
    """The test process runs tasks eagerly; switch that off so a send goes through Redis."""
    eager, app.conf.task_always_eager = app.conf.task_always_eager, False
    try:
        yield
    finally:
        app.conf.task_always_eager = eager


def _server_connection(dbname: str, **kwargs):
    db = connection.settings_dict
    params = {"host": db["HOST"] or "localhost", "port": db["PORT"] or 5432, "user": db["USER"], "password": db["PASSWORD"]}
    return psycopg.connect(dbname=dbname, **{k: v for k, v in params.items() if v}, **kwargs)


def _copy_database(name: str) -> None:
    """A copy of the test database as it is now (nobody else may be connected to it while it is copied)."""
    source = connection.settings_dict["NAME"]
    connection.close()
    with _server_connection("postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}" STRATEGY FILE_COPY')


def _drop_database(name: str) -> None:
    with _server_connection("postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _forget_queue(queue: str) -> None:
    """Leave nothing of the test's queue on the shared broker, the killed task's unacknowledged message included."""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}", queue)
    for tag, payload in client.hgetall("unacked").items():
        try:
            routing_key = json.loads(payload)[2]
        except (ValueError, IndexError, TypeError):
            continue
        if routing_key == queue:
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
    client.close()


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
    _copy_database(reference)
    try:
        workers.append(_start_worker(tmp_path, queue, "worker-1.log"))
        run = purge_run_start(rule=RetentionRule.objects.get(code=RULE), batch_size=BATCH, enqueue=False)
        with _through_broker():
            purge_run_continue.apply_async((run.pk,), queue=queue)

        deadline = time.monotonic() + TIMEOUT
        while _run(run.pk).batches_done == 0:
            assert time.monotonic() < deadline, f"no batch within {TIMEOUT}s:\n{workers[0].output()}"
            time.sleep(0.05)
        workers[0].kill()
        killed = _run(run.pk)
        assert not killed.is_finished, "the run finished before the kill: give the test more rows or smaller batches"
        assert killed.lease_owner, "the killed worker held the lease"

        workers.append(_start_worker(tmp_path, queue, "worker-2.log"))
        while not _run(run.pk).is_finished:
            assert time.monotonic() < deadline, f"the run did not finish within {TIMEOUT}s:\n{workers[1].output()}"
            with _through_broker():
                resume_stalled_runs.apply_async(queue=queue)  # what beat does every minute
            time.sleep(1)
        final = _run(run.pk)
        assert final.status == PurgeRun.Status.COMPLETED, final.error
        assert final.attempts >= 2 and final.batches_done > killed.batches_done

        with connection.cursor() as cursor:
            after, held_after = _state(cursor.cursor)
        assert held_after == held_before, "a held row was deleted or changed"

        command = [sys.executable, "manage.py", "retention", "run", "--rule", RULE, "--batch-size", str(BATCH)]
        reference_env = _env(tmp_path, subprocess_database_url().rsplit("/", 1)[0] + "/" + reference)
        done = subprocess.run(command, env=reference_env, cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=TIMEOUT)
        assert done.returncode == 0, done.stdout + done.stderr
        with _server_connection(reference) as ref, ref.cursor() as cursor:
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
        _forget_queue(queue)
        _drop_database(reference)
