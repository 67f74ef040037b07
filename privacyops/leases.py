"""Owned leases: which worker may work on a job right now (purge runs, export packages, erasures).

Design
- A lease lives on the row of the job it guards, in two columns the model names (`LeaseColumns`: the
  owner and the expiry, optionally a heartbeat time): PurgeRun.lease_owner / lease_expires_at and
  RightsRequest.job_lease_owner / job_lease_until. Not in a table of its own: taking a lease is then one
  conditional UPDATE that also checks the job's own state (queued or running, not cancelled) and marks it
  running, a renewal can carry the job's progress in the same statement, and a batch's transaction that
  renews first holds the lock of exactly the row whose state it changes.
- Every claim has its own owner token (`lease_token`: the worker's host and pid, and a random part), so a
  second claim by the same process is another owner, and a worker can tell "still mine" from "mine once".
- `lease_take`: UPDATE ... WHERE pk = %s AND <claimable> AND (owner is empty OR expiry is null OR expiry
  < now). On PostgreSQL two concurrent takes serialise on the row lock and the loser re-evaluates the
  condition against the winner's row, so it matches nothing; SQLite has one writer at a time. Either way
  at most one claim gets the row.
- `lease_renew` / `lease_release`: UPDATE ... WHERE pk = %s AND owner = <my token> [AND <still>]. A lease
  that expired but that nobody took is still ours (nobody else can have written), so renewing it is safe;
  a lease someone else took, or a job that was cancelled or finished meanwhile, matches no row, and the
  renewal raises `LeaseLost`. The worker then stops writing: it rolls back the batch it was in and
  deletes nothing but its own scratch files.
- A batch that writes calls `lease_renew` FIRST in its transaction: the row stays locked until the batch
  commits, so a second worker's take waits for it and then finds a live lease (it backs off) instead of
  working on the same rows at the same time.
- Times come from the application's clock (`timezone.now()`): workers' clocks must agree to well within
  a lease's length (NTP), which the default lengths (minutes) leave ample room for.
"""

from __future__ import annotations

import datetime
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, models
from django.db.models import Q
from django.utils import timezone


class LeaseLost(Exception):
    """This claim no longer holds the lease (another worker took it, or the job was cancelled or ended):
    stop without writing anything more."""


@dataclass(frozen=True)
class LeaseColumns:
    """The names of a model's lease columns: owner (text, "" when free), expiry, and an optional heartbeat."""

    owner: str
    until: str
    heartbeat: str | None = None


@dataclass
class Lease:
    """One claim on one job's row. `seconds` is how long a renewal lasts; `heartbeat_seconds` how often
    `lease_heartbeat` renews at most."""

    model: type[models.Model]
    pk: Any
    owner: str
    columns: LeaseColumns
    seconds: float
    heartbeat_seconds: float = 0.0
    still: Q = field(default_factory=Q)  # what must still hold of the row for the claim to go on
    until: datetime.datetime | None = None
    renewed: float = field(default_factory=time.monotonic)  # monotonic time of the last renewal


def worker_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def lease_token(worker: str | None = None) -> str:
    """A new owner token: the worker (host:pid unless given) and a random part unique to this claim."""
    return f"{worker or worker_label()}:{uuid.uuid4().hex[:12]}"


def lease_is_live(instance: models.Model, columns: LeaseColumns, *, now: datetime.datetime | None = None) -> bool:
    """Whether some claim holds the row's lease right now (as loaded: the caller decides how fresh)."""
    until = getattr(instance, columns.until)
    return bool(getattr(instance, columns.owner)) and until is not None and until > (now or timezone.now())


def _expiry(seconds: float, now: datetime.datetime) -> datetime.datetime:
    return now + datetime.timedelta(seconds=seconds)


def lease_take(
    model: type[models.Model],
    pk: Any,
    *,
    columns: LeaseColumns,
    seconds: float,
    heartbeat_seconds: float = 0.0,
    claimable: Q | None = None,
    still: Q | None = None,
    worker: str | None = None,
    values: dict | None = None,
) -> Lease | None:
    """Take the lease of row `pk` when the row matches `claimable` and its lease is free or expired, and
    write `values` (the job's own "running" fields) in the same statement. Returns the claim, or None when
    the row is not claimable or a live lease is held (the caller backs off). `still` is what renewals
    require of the row besides the owner (its status still running)."""
    now = timezone.now()
    owner = lease_token(worker)
    until = _expiry(seconds, now)
    free = Q(**{columns.owner: ""}) | Q(**{f"{columns.until}__isnull": True}) | Q(**{f"{columns.until}__lt": now})
    updates = {columns.owner: owner, columns.until: until, **(values or {})}
    if columns.heartbeat:
        updates[columns.heartbeat] = now
    taken = model._base_manager.filter(Q(pk=pk) & (claimable or Q()) & free).update(**updates)
    if not taken:
        return None
    return Lease(model, pk, owner, columns, seconds, heartbeat_seconds, still or Q(), until)


def _update_owned(lease: Lease, updates: dict, *, still: bool = True) -> int:
    condition = Q(pk=lease.pk, **{lease.columns.owner: lease.owner})
    if still:
        condition &= lease.still
    return lease.model._base_manager.filter(condition).update(**updates)


def lease_renew(lease: Lease, *, separate_connection: bool = False, **values) -> None:
    """Extend the lease by its length from now, writing `values` with it; raise LeaseLost when the claim no
    longer holds it. Inside a transaction, this locks the row until commit (call it first in a batch).

    `separate_connection`: renew over a connection of its own, committed at once, for a caller whose
    connection is inside a read-only snapshot (an export's build) and could neither write nor make the
    renewal visible before it ends."""
    now = timezone.now()
    until = _expiry(lease.seconds, now)
    updates = {lease.columns.until: until, **values}
    if lease.columns.heartbeat:
        updates[lease.columns.heartbeat] = now
    write = lambda: _update_owned(lease, updates)  # noqa: E731
    done = _in_own_connection(write) if separate_connection else write()
    if not done:
        raise LeaseLost(f"{lease.model._meta.label} {lease.pk}: {lease.owner} no longer holds the lease")
    lease.until = until
    lease.renewed = time.monotonic()


def lease_heartbeat(lease: Lease, *, separate_connection: bool = False) -> bool:
    """Renew when `heartbeat_seconds` have passed since the last renewal (cheap to call per row chunk).
    Returns whether it renewed; raises LeaseLost like `lease_renew`."""
    if time.monotonic() - lease.renewed < lease.heartbeat_seconds:
        return False
    lease_renew(lease, separate_connection=separate_connection)
    return True


def lease_release(lease: Lease, *, require: bool = False, **values) -> bool:
    """Give the lease up (owner emptied, expiry cleared), writing `values` with it (a finished job's
    status). Only the claim that holds it can: returns False when it did not (or raises LeaseLost with
    `require`, for a release whose values must not be written by anyone else)."""
    updates = {lease.columns.owner: "", lease.columns.until: None, **values}
    done = _update_owned(lease, updates, still=require)
    if not done and require:
        raise LeaseLost(f"{lease.model._meta.label} {lease.pk}: {lease.owner} no longer holds the lease")
    return bool(done)


def _in_own_connection(work):
    """Run `work` in a short-lived thread: Django gives the thread its own connection (autocommit), which
    is closed when the work is done."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed back to the caller's thread
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name="lease-renew", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
