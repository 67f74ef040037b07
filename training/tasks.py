"""Training-dataset jobs: a thin task that calls the service (see `training.services` for the invariants)."""

from celery import shared_task

from .services import training_dataset_build as build


@shared_task(acks_late=True)
def training_dataset_build(out_path: str) -> dict:
    """Build the de-identified model-improvement dataset (PM-II-5) into `out_path`."""
    return build(out_path=out_path, actor=None).as_dict()
