"""Queueing a job from a service without importing the app's tasks module.

Tasks are thin: they load by id and call a service, so `tasks.py` imports the services. A service that
queues work (an approval starting an export, a purge run being started) must then not import `tasks.py`
back, or each app's two modules depend on each other. So services name the task they queue, and
`task_queue_on_commit` finds it in Celery's registry once the caller's transaction has committed (a
worker must never read a row the web process has not committed yet).

Every process has every task registered: `PrivacyOpsConfig.ready()` imports each app's `tasks.py`, as
Celery's worker does. A misspelt name is a KeyError at commit in the tests, never a silently lost job.
The task object found is the real one, so eager mode (CELERY_TASK_ALWAYS_EAGER) applies as for `.delay`.
"""

from __future__ import annotations

from celery import current_app
from django.db import transaction


def task_send(name: str, *args) -> None:
    """Send the task registered as `name` (its module path and function, e.g. "requests.tasks.erasure_run")."""
    current_app.tasks[name].delay(*args)


def task_queue_on_commit(name: str, *args) -> None:
    """Send the task `name` with `args` once the surrounding transaction commits (at once outside one)."""
    transaction.on_commit(lambda: task_send(name, *args))
