"""Read-only queries over rights requests: the open request for a subject and right, and the queues.

The queues are defined once (`queue_q`), so the workbench's filters and its dashboard tiles
(`request_queue_counts`) can never disagree about what "overdue" means.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from .models import OPEN_STATUSES, RequestPause, RightsRequest, Status

QUEUES = ("new", "awaiting_verification", "due_soon", "overdue", "on_hold")
DUE_SOON = timedelta(days=7)


def requests_open_for(subject_ref, right: str) -> QuerySet[RightsRequest]:
    """The subject's open requests for `right` (at most one: a partial unique index keeps it so)."""
    return RightsRequest.objects.filter(subject_ref=subject_ref, right=right, status__in=sorted(OPEN_STATUSES))


def with_effective_due(queryset: QuerySet[RightsRequest] | None = None) -> QuerySet[RightsRequest]:
    """Annotate `effective_due`: the extended deadline when the period was extended, else `due_at`."""
    queryset = RightsRequest.objects.all() if queryset is None else queryset
    return queryset.annotate(effective_due=Coalesce("extended_due_at", "due_at"))


def queue_q(name: str, *, now: datetime | None = None) -> Q:
    """The filter of one queue, for a queryset from `with_effective_due` (it reads `effective_due`).

    new: open, nobody assigned, not on hold. due_soon: open, the deadline within 7 days. overdue: open,
    the deadline passed. A request on a hold that stops the clock (PM-IX-9) is neither due soon nor
    overdue: its deadline moves when it resumes; an internal hold does not stop the clock, so it counts.
    """
    now = now or timezone.now()
    is_open = Q(status__in=sorted(OPEN_STATUSES))
    clock_stopped = Exists(RequestPause.objects.filter(request=OuterRef("pk"), ended_at__isnull=True, stops_clock=True))
    running = is_open & ~Q(clock_stopped)
    queues = {
        "new": is_open & Q(assignee__isnull=True) & ~Q(status=Status.ON_HOLD),
        "awaiting_verification": Q(status=Status.AWAITING_VERIFICATION),
        "due_soon": running & Q(effective_due__gte=now, effective_due__lt=now + DUE_SOON),
        "overdue": running & Q(effective_due__lt=now),
        "on_hold": Q(status=Status.ON_HOLD),
    }
    try:
        return queues[name]
    except KeyError:
        raise ValueError(f"Unknown queue {name!r} (known: {', '.join(QUEUES)}).") from None


def request_queue_counts(*, now: datetime | None = None) -> dict[str, int]:
    """How many requests each queue holds, in one query (the workbench's dashboard tiles)."""
    now = now or timezone.now()
    queryset = with_effective_due(RightsRequest.objects.filter(status__in=sorted(OPEN_STATUSES)))
    return queryset.aggregate(**{name: Count("pk", filter=queue_q(name, now=now)) for name in QUEUES})
