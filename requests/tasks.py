"""Rights-request jobs: thin tasks that call the services (see the modules they name for the work and invariants).

Routing (settings.CELERY_TASK_ROUTES): `export_*` run on the `exports` queue, `erasure_*` on `purges`.
"""

from celery import shared_task


@shared_task(acks_late=True)
def send_deadline_reminders() -> dict:
    """Hourly (hour-based periods need it): e-mail staff when an open request passes half and four fifths of
    its period and when it is overdue, each once per request (PM-IX-9)."""
    from .reminders import reminders_send

    report = reminders_send()
    return {"checked": report.checked, "sent": report.sent}


@shared_task(acks_late=True)
def export_package_build(request_id: int) -> None:
    """Build the access or portability package of an approved request (PM-IX-1, PM-IX-4)."""
    from .exports import export_package_work

    export_package_work(request_id=request_id)


@shared_task(acks_late=True)
def export_packages_expire() -> int:
    """Delete the files of packages past their expiry (the rows stay as the record)."""
    from .exports import export_packages_expire as expire

    return expire()


@shared_task(acks_late=True)
def erasure_run(request_id: int) -> None:
    """Carry out an approved erasure across every registered store, resuming where a stopped worker left off (PM-IX-2)."""
    from .erasure import erasure_work

    erasure_work(request_id=request_id)


@shared_task(acks_late=True)
def close_unverified_requests() -> int:
    """Close requests still unverified after REQUEST_UNVERIFIED_CLOSE_DAYS and tell the requesters."""
    from .verification import requests_close_unverified

    return requests_close_unverified()


@shared_task(acks_late=True)
def resume_stalled_jobs() -> int:
    """Queue again the fulfilment jobs whose worker stopped or that no worker took."""
    from .jobs import jobs_resume_stalled

    return jobs_resume_stalled()
