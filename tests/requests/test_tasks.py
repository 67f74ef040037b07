"""The rights-request tasks (issue 11 §3): named <entity>_<action>, scheduled and routed by those names."""

from django.conf import settings

from privacyops.celery import app
from requests import tasks


def _route(name: str) -> str:
    return app.amqp.router.route({}, name, (), {})["queue"].name


def test_exports_run_on_the_exports_queue_and_erasures_on_purges_by_their_names():
    assert _route(tasks.export_package_build.name) == "exports"
    assert _route(tasks.export_packages_expire.name) == "exports"
    assert _route(tasks.erasure_run.name) == "purges"
    for task in (tasks.deadline_reminders_send, tasks.unverified_requests_close, tasks.stalled_jobs_resume):
        assert _route(task.name) == "default"


def test_every_scheduled_request_task_is_registered_under_its_new_name():
    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in settings.PERIODIC_TASKS.values() if entry["task"].startswith("requests.")}
    assert scheduled == {
        "requests.tasks.deadline_reminders_send",
        "requests.tasks.export_packages_expire",
        "requests.tasks.unverified_requests_close",
        "requests.tasks.stalled_jobs_resume",
    }
    assert scheduled <= set(app.tasks)
