"""Consent jobs: thin tasks that call the services (see the modules they name for the work and invariants)."""

from celery import shared_task


@shared_task(acks_late=True)
def expire_due_consents() -> int:
    """Daily: write an `expired` event for every consent past its purpose's lifetime (asked again next visit)."""
    from .services import consent_expire_due

    return consent_expire_due()


@shared_task(acks_late=True)
def send_policy_notices() -> int:
    """Every ten minutes: e-mail the next batches of account holders about published policy versions (PM-X-2).

    Resumable and never twice per account and version: each delivery is a unique row written with its batch.
    """
    from .notices import policy_notices_send

    return policy_notices_send()


@shared_task(acks_late=True)
def training_dataset_build(out_path: str) -> dict:
    """Build the de-identified model-improvement dataset (PM-II-5) into `out_path`."""
    from .training import training_dataset_build as build

    return build(out_path=out_path, actor=None).as_dict()
