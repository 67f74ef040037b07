"""Fulfilment jobs of rights requests: their state lives on the request, not in the broker.

An approved access, portability or erasure request gets one job (`fulfilment_queue`, called by the
approval inside its transaction; the task is queued on commit). A worker claims it under an owned lease
(`job_claim`, privacyops.leases: a token of its own, REQUEST_JOB_LEASE_SECONDS long), renews it while it
works (`job_heartbeat` during an export's build, `job_progress` with every erasure batch), and ends it
with `job_finish` or `job_fail`. Each of these is a conditional UPDATE on the request's row that matches
only while this claim holds the lease and the job is running, so a worker that lost its lease (it paused
longer than the lease, and another worker took the job) gets `LeaseLost` at its next renewal and stops
before writing. A worker that finds a live lease backs off (`job_claim` returns None).

The work functions (`requests.exports`, `requests.erasure`) keep their position in `job_result`, so a
worker killed mid-way loses at most the batch it was in: every two minutes `jobs_resume_stalled` queues
again the jobs whose lease ran out or that never started, and the next claim continues from there.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from privacyops.leases import Lease, LeaseColumns, lease_heartbeat, lease_release, lease_renew, lease_take
from privacyops.queueing import task_queue_on_commit, task_send

from .models import JobStatus, Right, RightsRequest

logger = logging.getLogger(__name__)

JOB_RIGHTS = {
    Right.ACCESS: "export",
    Right.PORTABILITY: "export",
    Right.ERASURE: "erasure",
    Right.CHILD_REPORT: "erasure",  # the outcome of a confirmed report is the erasure of that account
}
# Queued by name: requests.tasks imports this module (see privacyops.queueing).
JOB_TASKS = {"export": "requests.tasks.export_package_build", "erasure": "requests.tasks.erasure_run"}
# The rights each kind of job fulfils (the one definition: exports and erasure check against these).
EXPORT_RIGHTS = frozenset(right for right, kind in JOB_RIGHTS.items() if kind == "export")
ERASURE_RIGHTS = frozenset(right for right, kind in JOB_RIGHTS.items() if kind == "erasure")
LEASE_COLUMNS = LeaseColumns(owner="job_lease_owner", until="job_lease_until")
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
        job_lease_owner="",
        job_lease_until=None,
        job_started_at=None,
        job_finished_at=None,
        updated_at=timezone.now(),
    )
    rights_request.job_status = JobStatus.QUEUED
    task_queue_on_commit(JOB_TASKS[kind], rights_request.pk)
    return True


@dataclass
class JobClaim:
    """A worker's claim on one request's job: the request as it was claimed, and the lease to renew."""

    rights_request: RightsRequest
    lease: Lease

    @property
    def request_id(self) -> int:
        return self.rights_request.pk


def job_claim(request_id: int, *, worker: str | None = None) -> JobClaim | None:
    """Take the job's lease for a new claim and mark it running (one conditional UPDATE). None when it is
    not claimable: done, failed, never queued, or another claim holds a live lease (the caller backs off:
    it builds nothing and deletes nothing)."""
    now = timezone.now()
    lease = lease_take(
        RightsRequest,
        request_id,
        columns=LEASE_COLUMNS,
        seconds=settings.REQUEST_JOB_LEASE_SECONDS,
        heartbeat_seconds=settings.REQUEST_JOB_HEARTBEAT_SECONDS,
        claimable=Q(job_status__in=(JobStatus.QUEUED, JobStatus.RUNNING)),
        still=Q(job_status=JobStatus.RUNNING),
        worker=worker,
        values={"job_status": JobStatus.RUNNING, "updated_at": now},
    )
    if lease is None:
        logger.info("Job of request %s is not claimable (finished, not queued, or held by a live lease)", request_id)
        return None
    RightsRequest.objects.filter(pk=request_id, job_started_at__isnull=True).update(job_started_at=now)
    return JobClaim(RightsRequest.objects.get(pk=request_id), lease)


def _mirror(claim: JobClaim, values: dict) -> None:
    for name, value in values.items():
        setattr(claim.rights_request, name, value)
    claim.rights_request.job_lease_until = claim.lease.until


def job_progress(claim: JobClaim, *, done: int, total: int | None = None, result: dict | None = None) -> None:
    """Record how far the job got and renew the lease, in one conditional UPDATE inside the work's own
    transaction (position and work commit together). Raises LeaseLost when the claim lost the job."""
    values = {"job_done": done, "updated_at": timezone.now()}
    if total is not None:
        values["job_total"] = total
    if result is not None:
        values["job_result"] = result
    lease_renew(claim.lease, **values)
    _mirror(claim, values)


def job_heartbeat(claim: JobClaim, *, separate_connection: bool = False) -> None:
    """Renew the lease if REQUEST_JOB_HEARTBEAT_SECONDS have passed since the last renewal (cheap enough to
    call per table and per chunk). Raises LeaseLost when the claim lost the job. `separate_connection` for
    a caller inside a read-only snapshot (see privacyops.leases.lease_renew)."""
    if lease_heartbeat(claim.lease, separate_connection=separate_connection):
        claim.rights_request.job_lease_until = claim.lease.until


def job_release(claim: JobClaim) -> None:
    """Give the lease up with the job still running (a time slice used up): the next claim continues."""
    lease_release(claim.lease)
    claim.rights_request.job_lease_owner, claim.rights_request.job_lease_until = "", None


def job_finish(claim: JobClaim, *, result: dict) -> None:
    """The job is done: status, result and the lease released, in one conditional UPDATE (call it in the
    transaction of the job's last writes). Raises LeaseLost, rolling them back, when the claim lost it."""
    rights_request = claim.rights_request
    now = timezone.now()
    values = {
        "job_status": JobStatus.DONE,
        "job_result": result,
        "job_finished_at": now,
        "job_done": max(rights_request.job_done, rights_request.job_total),
        "updated_at": now,
    }
    lease_release(claim.lease, require=True, **values)
    _mirror(claim, values)
    rights_request.job_lease_owner, rights_request.job_lease_until = "", None


def job_fail(claim: JobClaim, *, error: str) -> bool:
    """Mark the job failed and release the lease, if this claim still holds it. Returns whether it did:
    a claim that lost the job leaves it to the claim that took it."""
    now = timezone.now()
    values = {"job_status": JobStatus.FAILED, "job_error": error, "job_finished_at": now, "updated_at": now}
    if not lease_release(claim.lease, require=False, **values):
        return False
    _mirror(claim, values)
    claim.rights_request.job_lease_owner, claim.rights_request.job_lease_until = "", None
    return True


def jobs_resume_stalled(*, now: datetime.datetime | None = None) -> int:
    """Queue again every job whose worker stopped (lease run out, or released between time slices) or that
    no worker took; returns how many. A job whose lease is live is left alone: its worker is working."""
    now = now or timezone.now()
    stalled = RightsRequest.objects.filter(
        Q(job_status=JobStatus.RUNNING, job_lease_until__isnull=True)
        | Q(job_status=JobStatus.RUNNING, job_lease_until__lt=now)
        | Q(job_status=JobStatus.QUEUED, updated_at__lt=now - QUEUED_GRACE)
    )
    count = 0
    for request_id, right in stalled.values_list("pk", "right"):
        kind = JOB_RIGHTS.get(right)
        if kind is not None:
            task_send(JOB_TASKS[kind], request_id)
            count += 1
    return count
