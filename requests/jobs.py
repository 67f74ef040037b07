"""Fulfilment jobs of rights requests: their state lives on the request, not in the broker.

An approved access, portability or erasure request gets one job (`fulfilment_queue`, called by the
approval inside its transaction; the task is queued on commit). A worker claims it under a lease
(`job_claim`), renews the lease with every progress report (`job_progress`), and ends it with
`job_finish` or `job_fail`. The work functions (`requests.exports`, `requests.erasure`) keep their
position in `job_result`, so a worker killed mid-way loses at most the batch it was in: every minute or
so `jobs_resume_stalled` queues again the jobs whose lease ran out or that never started, and the next
claim continues from that position. Claims take a row lock, so two workers never run one job.
"""

from __future__ import annotations

import datetime

from django.db import transaction
from django.utils import timezone

from .models import JobStatus, Right, RightsRequest

JOB_RIGHTS = {
    Right.ACCESS: "export",
    Right.PORTABILITY: "export",
    Right.ERASURE: "erasure",
    Right.CHILD_REPORT: "erasure",  # the outcome of a confirmed report is the erasure of that account
}
LEASE = datetime.timedelta(minutes=2)
QUEUED_GRACE = datetime.timedelta(minutes=5)  # a queued job no worker took by then is queued again


def job_kind(rights_request: RightsRequest) -> str | None:
    """'export', 'erasure', or None for rights fulfilled in the workbench itself (rectification ...)."""
    return JOB_RIGHTS.get(rights_request.right)


def fulfilment_queue(*, rights_request: RightsRequest) -> bool:
    """Queue the request's job, if its right has one, after the caller's transaction commits. Idempotent:
    a job already queued or running is left alone. Returns whether a job was queued."""
    kind = job_kind(rights_request)
    if kind is None or rights_request.job_status in (JobStatus.QUEUED, JobStatus.RUNNING):
        return False
    RightsRequest.objects.filter(pk=rights_request.pk).update(
        job_status=JobStatus.QUEUED,
        job_done=0,
        job_total=0,
        job_result={},
        job_error="",
        job_lease_until=None,
        job_started_at=None,
        job_finished_at=None,
        updated_at=timezone.now(),
    )
    rights_request.job_status = JobStatus.QUEUED
    request_id = rights_request.pk
    transaction.on_commit(lambda: _dispatch(kind, request_id))
    return True


def _dispatch(kind: str, request_id: int) -> None:
    from . import tasks

    (tasks.export_package_build if kind == "export" else tasks.erasure_run).delay(request_id)


def job_claim(request_id: int, *, now: datetime.datetime | None = None) -> RightsRequest | None:
    """Take the job for this worker: the request locked, its status running, its lease renewed. None when
    it is not claimable (done, failed, never queued, or another worker holds a live lease)."""
    now = now or timezone.now()
    with transaction.atomic():
        rights_request = RightsRequest.objects.select_for_update().filter(pk=request_id).first()
        if rights_request is None or rights_request.job_status not in (JobStatus.QUEUED, JobStatus.RUNNING):
            return None
        lease = rights_request.job_lease_until
        if rights_request.job_status == JobStatus.RUNNING and lease is not None and lease > now:
            return None
        rights_request.job_status = JobStatus.RUNNING
        rights_request.job_lease_until = now + LEASE
        rights_request.job_started_at = rights_request.job_started_at or now
        rights_request.save(update_fields=["job_status", "job_lease_until", "job_started_at", "updated_at"])
    return rights_request


def job_progress(rights_request: RightsRequest, *, done: int, total: int | None = None, result: dict | None = None) -> None:
    """Record how far the job got (inside the work's own transaction, so position and work commit together)
    and renew the lease."""
    rights_request.job_done = done
    fields = ["job_done", "job_lease_until", "updated_at"]
    if total is not None:
        rights_request.job_total = total
        fields.append("job_total")
    if result is not None:
        rights_request.job_result = result
        fields.append("job_result")
    rights_request.job_lease_until = timezone.now() + LEASE
    rights_request.save(update_fields=fields)


def job_finish(rights_request: RightsRequest, *, result: dict) -> None:
    now = timezone.now()
    rights_request.job_status = JobStatus.DONE
    rights_request.job_result = result
    rights_request.job_finished_at = now
    rights_request.job_lease_until = None
    rights_request.job_done = max(rights_request.job_done, rights_request.job_total)
    rights_request.save(
        update_fields=["job_status", "job_result", "job_finished_at", "job_lease_until", "job_done", "updated_at"]
    )


def job_fail(rights_request: RightsRequest, *, error: str) -> None:
    rights_request.job_status = JobStatus.FAILED
    rights_request.job_error = error
    rights_request.job_finished_at = timezone.now()
    rights_request.job_lease_until = None
    rights_request.save(update_fields=["job_status", "job_error", "job_finished_at", "job_lease_until", "updated_at"])


def jobs_resume_stalled(*, now: datetime.datetime | None = None) -> int:
    """Queue again every job whose worker stopped (lease run out) or that no worker took; returns how many."""
    now = now or timezone.now()
    stalled = RightsRequest.objects.filter(job_status=JobStatus.RUNNING, job_lease_until__lt=now) | RightsRequest.objects.filter(
        job_status=JobStatus.QUEUED, updated_at__lt=now - QUEUED_GRACE
    )
    count = 0
    for request_id, right in stalled.values_list("pk", "right"):
        kind = JOB_RIGHTS.get(right)
        if kind is not None:
            _dispatch(kind, request_id)
            count += 1
    return count
