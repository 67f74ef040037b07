"""Rights-request jobs: thin tasks that call the services (see the modules they name for the work and invariants)."""

from celery import shared_task


@shared_task(acks_late=True)
def send_deadline_reminders() -> dict:
    """Hourly (hour-based periods need it): e-mail staff when an open request passes half and four fifths of
    its period and when it is overdue, each once per request (PM-IX-9)."""
    from .reminders import reminders_send

    report = reminders_send()
    return {"checked": report.checked, "sent": report.sent}
