"""Retention jobs: scheduled runs, bounded continuations, resuming from the database (PM-VI-4)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from chat.models import AccessLog
from privacyops.celery import app
from retention import tasks
from retention.models import PurgeRun
from retention.services import purge_run_start
from tests.factories.accounts import UserFactory
from tests.factories.chat import AccessLogFactory

from .conftest import days_ago

pytestmark = pytest.mark.django_db


@pytest.fixture
def old_logs():
    user = UserFactory()
    return AccessLogFactory.create_batch(5, user=user, created=days_ago(60))


@pytest.mark.parametrize("name", ["retention_rule_run", "due_rules_run", "purge_run_continue", "stalled_runs_resume"])
def test_retention_tasks_go_to_the_purges_queue_and_ack_late(name):
    task = getattr(tasks, name)
    assert task.name == f"retention.tasks.{name}"
    assert task.acks_late is True
    assert app.amqp.router.route({}, task.name, (), {})["queue"].name == "purges"


def test_pm_vi_4_run_due_rules_starts_every_enabled_confirmed_rule_once(make_rule, old_logs, django_capture_on_commit_callbacks):
    logs = make_rule("log-data")
    make_rule("usage-data", enabled=False)
    busy = make_rule("feedback")
    PurgeRun.objects.create(rule=busy, cutoff=timezone.now(), status=PurgeRun.Status.RUNNING)

    with django_capture_on_commit_callbacks(execute=True):
        started = tasks.due_rules_run()

    assert len(started) == 1
    run = PurgeRun.objects.get(pk=started[0])
    assert run.rule == logs and run.status == PurgeRun.Status.COMPLETED  # eager: worked to the end in-process
    assert AccessLog.objects.count() == 0


def test_pm_vi_4_run_rule_previews_without_changing_anything(make_rule, old_logs, django_capture_on_commit_callbacks):
    rule = make_rule("log-data", enabled=False)
    with django_capture_on_commit_callbacks(execute=True):
        run_id = tasks.retention_rule_run(rule.pk, dry_run=True)
    run = PurgeRun.objects.get(pk=run_id)
    assert run.dry_run and run.status == PurgeRun.Status.COMPLETED
    assert run.counts["chat.AccessLog"]["deleted"] == 5
    assert AccessLog.objects.count() == 5
    assert tasks.retention_rule_run(rule.pk) is None  # a disabled rule is not run for real


def test_pm_vi_4_in_eager_mode_a_run_continues_in_process_batch_after_batch(make_rule, old_logs, settings):
    settings.RETENTION_TASK_SECONDS = 0  # every call stops after one batch
    run = purge_run_start(rule=make_rule("log-data"), batch_size=2, enqueue=False)
    tasks.purge_run_continue.apply(args=(run.pk,))
    run.refresh_from_db()
    assert run.status == PurgeRun.Status.COMPLETED and run.batches_done == 3
    assert run.attempts == 4  # three batches, then the step's end and completion


def test_pm_vi_4_on_a_worker_a_bounded_task_queues_its_own_continuation(make_rule, old_logs, settings, monkeypatch):
    settings.RETENTION_TASK_SECONDS = 0
    queued = []
    monkeypatch.setattr(tasks.purge_run_continue, "apply_async", lambda args, **kw: queued.append(args))
    run = purge_run_start(rule=make_rule("log-data"), batch_size=2, enqueue=False)

    tasks.purge_run_continue(run.pk)  # called as a worker calls it: not eager

    run.refresh_from_db()
    assert run.batches_done == 1 and run.status == PurgeRun.Status.RUNNING
    assert run.lease_owner == ""  # released for the continuation, whichever worker takes it
    assert queued == [(run.pk,)]


def test_pm_vi_4_resume_stalled_runs_continues_runs_nobody_works_on(make_rule, old_logs, monkeypatch):
    rule = make_rule("log-data")
    stalled = purge_run_start(rule=rule, batch_size=2, enqueue=False)
    PurgeRun.objects.filter(pk=stalled.pk).update(
        status=PurgeRun.Status.RUNNING, lease_owner="dead-worker", lease_expires_at=timezone.now() - timedelta(seconds=5)
    )
    live = PurgeRun.objects.create(
        rule=make_rule("usage-data"),
        cutoff=timezone.now(),
        status=PurgeRun.Status.RUNNING,
        lease_owner="busy-worker",
        lease_expires_at=timezone.now() + timedelta(minutes=1),
    )
    forgotten = PurgeRun.objects.create(
        rule=make_rule("feedback"), cutoff=timezone.now(), created_at=timezone.now() - timedelta(minutes=10)
    )
    fresh = PurgeRun.objects.create(rule=make_rule("communication-information"), cutoff=timezone.now())

    resumed = tasks.stalled_runs_resume()

    assert resumed == [stalled.pk, forgotten.pk]
    assert live.pk not in resumed and fresh.pk not in resumed
    stalled.refresh_from_db()
    assert stalled.status == PurgeRun.Status.COMPLETED and stalled.attempts == 1
    assert AccessLog.objects.count() == 0
