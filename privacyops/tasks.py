"""Core periodic jobs. Thin: each calls one service in privacyops.audit.

No `queue=` on the decorator: Celery 5.7 deprecates the task attribute (it stops working in 6.0) in
favour of task_routes. These tasks belong on the `default` queue, which is CELERY_TASK_DEFAULT_QUEUE;
tests/privacyops/test_celery_config.py checks where the router really sends them.
"""

from celery import shared_task

from .audit import audit_head_anchor


@shared_task(acks_late=True)
def audit_anchor_head() -> None:
    """Daily (settings.PERIODIC_TASKS): record the verified head hash outside the database."""
    audit_head_anchor()
