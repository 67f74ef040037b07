"""A real Celery worker runs the daily anchor through a real broker.

The worker is a subprocess (`celery -A privacyops worker`) pointed at the pytest test database, so the
test uses `transactional_db`: what the test writes is committed and the worker sees it, and what the
worker writes the test can poll for. Each test sends to a queue of its own so that no other worker on
the same broker (a developer's script/server, another test run) can take the message.
"""

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from privacyops.audit import audit_record
from privacyops.celery import app
from privacyops.models import AuditEvent
from privacyops.tasks import audit_anchor_head
from tests.integration.processes import CeleryWorker, celery_worker_argv, worker_env

TASK = "privacyops.tasks.audit_anchor_head"
TIMEOUT = 60


@pytest.fixture
def start_worker(transactional_db, tmp_path):
    """Start a worker on the given broker, on a fresh queue; teardown stops it before the db is flushed."""
    workers = []

    def start(*, redis_url: str) -> CeleryWorker:
        queue = f"test-{uuid.uuid4().hex[:12]}"
        env = worker_env(tmp_path, redis_url=redis_url)
        worker = CeleryWorker(celery_worker_argv(queue), env=env, queue=queue, log=tmp_path / f"{queue}.log")
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()
        _forget_queue(worker)


def _forget_queue(worker: CeleryWorker):
    """Leave no trace of the one-off queue on the shared broker."""
    if worker.env.get("REDIS_URL"):
        import redis

        client = redis.Redis.from_url(worker.env["REDIS_URL"])
        client.delete(f"_kombu.binding.{worker.queue}", f"_kombu.binding_permanent.{worker.queue}", worker.queue)
        client.close()
    else:
        (Path(settings.VAR_DIR) / "broker" / "control" / f"{worker.queue}.exchange").unlink(missing_ok=True)


def _wait_for_anchor_event(worker: CeleryWorker) -> AuditEvent:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        event = AuditEvent.objects.filter(action="audit.head_anchored").first()
        if event is not None:
            return event
        if worker.process.poll() is not None:
            pytest.fail(f"the worker died:\n{worker.output()}")
        time.sleep(0.25)
    pytest.fail(f"no audit.head_anchored event within {TIMEOUT}s; worker output:\n{worker.output()}")


def _assert_anchored(worker: CeleryWorker, event: AuditEvent, head: AuditEvent):
    assert event.details["head_id"] == head.pk and event.details["head_hash"] == head.hash
    assert event.actor_label == AuditEvent.SYSTEM_ACTOR
    anchors = Path(worker.env["AUDIT_ANCHOR_LOG"]).read_text().splitlines()
    assert len(anchors) == 1 and head.hash in anchors[0]
    assert "Audit trail anchor" in worker.output()  # the email to the DPO, on the console backend


@pytest.mark.worker
@pytest.mark.redis
def test_pm_vii_2_worker_anchors_the_head_through_redis(start_worker):
    worker = start_worker(redis_url=settings.REDIS_URL)
    head = audit_record(actor=None, action="test.before_anchor")
    # The test process runs tasks eagerly; switch that off for this one send so it goes through Redis.
    eager, app.conf.task_always_eager = app.conf.task_always_eager, False
    try:
        audit_anchor_head.apply_async(queue=worker.queue)
    finally:
        app.conf.task_always_eager = eager
    _assert_anchored(worker, _wait_for_anchor_event(worker), head)


@pytest.mark.slow
def test_pm_vii_2_worker_anchors_the_head_through_the_embedded_broker(start_worker, tmp_path):
    """Embedded mode, as script/server runs it: no Redis, kombu's filesystem broker under var/broker.

    The message is sent by a separate process configured exactly like the embedded web process, since
    this test process may be configured for Redis.
    """
    worker = start_worker(redis_url="")
    head = audit_record(actor=None, action="test.before_anchor")
    send = f"from privacyops.celery import app; app.send_task({TASK!r}, queue={worker.queue!r})"
    sender = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", send],
        env=worker.env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert sender.returncode == 0, sender.stderr
    _assert_anchored(worker, _wait_for_anchor_event(worker), head)
