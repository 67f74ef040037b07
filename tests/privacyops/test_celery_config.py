"""Celery defaults that every data job relies on (ARCHITECTURE.md, Jobs)."""

from django.conf import settings

from privacyops.celery import app


def test_every_task_acks_late_and_requeues_when_its_worker_dies():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True


def test_workers_take_one_message_at_a_time():
    assert app.conf.worker_prefetch_multiplier == 1


def test_tasks_have_hard_and_soft_time_limits():
    assert app.conf.task_time_limit > app.conf.task_soft_time_limit > 0


def test_queues_are_default_exports_and_purges():
    assert {queue.name for queue in app.conf.task_queues} == {"default", "exports", "purges"}
    assert app.conf.task_default_queue == "default"


def test_messages_are_json_only():
    assert app.conf.task_serializer == "json"
    assert list(app.conf.accept_content) == ["json"]


def test_results_are_not_stored_in_a_result_backend():
    assert not app.conf.result_backend
    assert app.conf.task_ignore_result is True


def test_broker_is_redis_when_configured_else_the_embedded_filesystem_broker():
    assert app.conf.broker_url == (settings.REDIS_URL or "filesystem://")


def test_anchor_task_is_routed_to_the_default_queue_and_acks_late():
    from privacyops.tasks import audit_anchor_head

    assert audit_anchor_head.acks_late is True
    options = app.amqp.router.route({}, audit_anchor_head.name, (), {})
    assert options["queue"].name == "default"


def test_every_periodic_task_in_code_names_a_registered_task():
    app.loader.import_default_modules()
    for name, entry in settings.PERIODIC_TASKS.items():
        assert entry["task"] in app.tasks, f"{name}: no task called {entry['task']}"
