"""The rights-request queues (POLICY-MAP IX, PM-IX-9) as dashboard tiles.

Six tiles: new, awaiting verification, due within 7 days, overdue (red when any), on hold, and mine (open
requests assigned to the viewer). The first five are `requests.selectors`' queues, counted by
`request_queue_counts()` in one query; the request list's "queue" filter (requests/admin.py) uses the same
`queue_q` conditions, so a tile's number and the list it links to always agree. "Mine" is one more count
on the (assignee, status) index, shown only to staff who can be assigned requests (who may change them).

The counts are computed once per page view however many tiles read them (remembered on the HTTP request).
Shown to users who may view rights requests.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from privacyops.dashboard import Tile, register_tile

from . import selectors
from .models import OPEN_STATUSES, RightsRequest

ORDER = 30  # before consents and retention: requests have legal deadlines
DUE_SOON_DAYS = selectors.DUE_SOON.days
VIEW_PERMISSION = "requests.view_rightsrequest"
WORK_PERMISSION = "requests.change_rightsrequest"
MINE = "mine"


@dataclass(frozen=True)
class Queue:
    key: str
    label: str
    description: str


QUEUES = (
    Queue("new", "New", "open, nobody assigned yet"),
    Queue("awaiting_verification", "Awaiting verification", "waiting for proof of identity or authority"),
    Queue("due_soon", f"Due within {DUE_SOON_DAYS} days", "the deadline in force falls in the next week"),
    Queue("overdue", "Overdue", "open past the deadline in force"),
    Queue("on_hold", "On hold", "paused, with a reason"),
    Queue(MINE, "Mine", "open requests assigned to you"),
)
QUEUE_LABELS = {queue.key: queue.label for queue in QUEUES}


def mine_q(user) -> Q:
    return Q(status__in=sorted(OPEN_STATUSES), assignee_id=getattr(user, "pk", None) or 0)


def queue_filter(queryset, key: str, *, user, now: datetime.datetime | None = None):
    """The rows of one queue (the admin list's filter), by the same conditions as the tiles."""
    if key == MINE:
        return queryset.filter(mine_q(user))
    return selectors.with_effective_due(queryset).filter(selectors.queue_q(key, now=now or timezone.now()))


def queue_counts(*, user, now: datetime.datetime | None = None) -> dict[str, int]:
    """Every queue's size: `request_queue_counts()` (one query) and, for staff who work requests, "mine"."""
    counts = {key: value or 0 for key, value in selectors.request_queue_counts(now=now or timezone.now()).items()}
    if user.has_perm(WORK_PERMISSION):
        counts[MINE] = RightsRequest.objects.filter(mine_q(user)).count()
    return counts


def _counts_for(request) -> dict[str, int]:
    counts = getattr(request, "_rights_request_queue_counts", None)
    if counts is None:
        counts = queue_counts(user=request.user)
        request._rights_request_queue_counts = counts
    return counts


def queue_url(key: str) -> str:
    return f"{reverse('admin:requests_rightsrequest_changelist')}?queue={key}"


def _severity(key: str, count: int) -> str:
    if not count:
        return "ok"
    if key == "overdue":
        return "red"  # PM-IX-9: a legal deadline has passed
    if key == "due_soon":
        return "amber"
    return "info"


def _tile_renderer(queue: Queue):
    def render(request) -> Tile | None:
        user = request.user
        if not user.has_perm(VIEW_PERMISSION):
            return None
        if queue.key == MINE and not user.has_perm(WORK_PERMISSION):
            return None  # nobody assigns requests to someone who cannot work them
        count = _counts_for(request)[queue.key]
        return Tile(
            title=f"Requests: {queue.label.lower()}",
            value=count,
            url=queue_url(queue.key),
            severity=_severity(queue.key, count),
            description=queue.description,
        )

    return render


for _position, _queue in enumerate(QUEUES):
    register_tile(
        f"requests.{_queue.key}",
        title=f"Requests: {_queue.label.lower()}",
        order=ORDER + _position,
        render=_tile_renderer(_queue),
    )
