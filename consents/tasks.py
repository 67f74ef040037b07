"""Consent jobs: thin tasks that call the services (see the modules they name for the work and invariants)."""

from celery import shared_task

from .services import consent_expire_due


@shared_task(acks_late=True)
def due_consents_expire() -> int:
    """Daily: write an `expired` event for every consent past its purpose's lifetime (asked again next visit)."""
    return consent_expire_due()
