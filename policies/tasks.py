"""Policy jobs: thin tasks that call the notice run (see `policies.notices` for the work and its invariants)."""

from celery import shared_task

from .notices import policy_notices_send


@shared_task(acks_late=True)
def policy_notice_batches_send() -> int:
    """Every ten minutes: e-mail the next batches of account holders about published policy versions (PM-X-2).

    Resumable and never twice per account and version: each delivery is a unique row written with its batch.
    """
    return policy_notices_send()
