"""Rights-request jobs: thin tasks that call the services (see the modules they name for the work and invariants).

Names are `<entity>_<action>`, as the services'. Routing (settings.CELERY_TASK_ROUTES) goes by name:
`export_*` run on the `exports` queue, `erasure_*` on `purges`, the rest on `default`; the beat schedule
(settings.PERIODIC_TASKS, written to the database by `manage.py sync_schedules`) names them in full.

Dependencies run one way: this module imports the services, no service imports it. A service that queues
a job (`jobs.fulfilment_queue`) sends it by name after commit.
"""

from celery import shared_task

from .erasure import erasure_work
from .exports import export_package_work
from .exports import export_packages_expire as packages_expire
from .jobs import jobs_resume_stalled
from .reminders import reminders_send
from .verification import requests_close_unverified


@shared_task(acks_late=True)
def deadline_reminders_send() -> dict:
    """Hourly (hour-based periods need it): e-mail staff when an open request passes half and four fifths of
    its period and when it is overdue, each once per request (PM-IX-9)."""
    report = reminders_send()
    return {"checked": report.checked, "sent": report.sent}


@shared_task(acks_late=True)
def export_package_build(request_id: int) -> None:
    """Build the access or portability package of an approved request (PM-IX-1, PM-IX-4)."""
    export_package_work(request_id=request_id)


@shared_task(acks_late=True)
def export_packages_expire() -> int:
    """Delete the files of packages past their expiry (the rows stay as the record)."""
    return packages_expire()


@shared_task(acks_late=True)
def erasure_run(request_id: int) -> None:
    """Carry out an approved erasure across every registered store, resuming where a stopped worker left off (PM-IX-2)."""
    erasure_work(request_id=request_id)


@shared_task(acks_late=True)
def unverified_requests_close() -> int:
    """Close requests still unverified after REQUEST_UNVERIFIED_CLOSE_DAYS and tell the requesters."""
    return requests_close_unverified()


@shared_task(acks_late=True)
def stalled_jobs_resume() -> int:
    """Queue again the fulfilment jobs whose worker stopped or that no worker took."""
    return jobs_resume_stalled()
