"""The consents tile on the staff dashboard: recent choices, restrictions, expiries and the policy notices.

Shown to users who may view the ledger. The tile must stay cheap however large the ledger grows, so:
- recent events are counted among the newest LEDGER_WINDOW events only (a backward walk of the primary
  key, never a scan of the table); a busier week shows as "10000+";
- expiries are read from `ConsentState` through its (purpose, action, effective_at) index: one range per
  purpose that has a lifetime, all in one query. A "given" state is due once its effective time plus the
  purpose's lifetime has passed (the expiry task then writes an "expired" event); states already past it
  mean the task is behind;
- restrictions are a small table; the policy version comes from `consents.policy`'s selectors, and the
  accounts still to be notified of it are counted up to NOTICE_CAP.
A fixed number of queries, whatever the size of the ledger.
"""

from __future__ import annotations

import datetime

from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from privacyops.dashboard import Flag, Tile, register_tile
from retention.periods import cutoff

from . import policy
from .models import ConsentEvent, ConsentPurpose, ConsentState, PolicyNoticeDelivery, PolicyVersion, ProcessingRestriction

ORDER = 40  # before retention's purges: consents change daily
RECENT_DAYS = 7
EXPIRY_DAYS = 30
LEDGER_WINDOW = 10_000  # newest events looked at for the recent counts
NOTICE_CAP = 10_000  # accounts still to notify are counted up to this many


def recent_event_counts(*, now: datetime.datetime, window: int = LEDGER_WINDOW) -> tuple[dict[str, int], int, bool]:
    """Events recorded in the last RECENT_DAYS by action, GPC refusals among them, and whether the count is capped.

    Only the newest `window` events are read (by primary key, newest first): ids grow with recording time.
    """
    since = now - datetime.timedelta(days=RECENT_DAYS)
    newest = ConsentEvent.objects.order_by("-pk").values("pk")[:window]
    rows = (
        ConsentEvent.objects.filter(pk__in=newest, recorded_at__gte=since)
        .order_by()
        .values("action", "method")
        .annotate(n=Count("pk"))
    )
    by_action = dict.fromkeys(ConsentEvent.Action.values, 0)
    gpc_refusals = 0
    for row in rows:
        by_action[row["action"]] = by_action.get(row["action"], 0) + row["n"]
        if row["method"] == ConsentEvent.Method.GPC and row["action"] == ConsentEvent.Action.REFUSED:
            gpc_refusals += row["n"]
    return by_action, gpc_refusals, sum(by_action.values()) >= window


def expiry_counts(*, now: datetime.datetime) -> tuple[int, int]:
    """(consents that expire in the next EXPIRY_DAYS, consents already past their lifetime), from ConsentState."""
    soon = Q(pk__in=[])
    overdue = Q(pk__in=[])
    purposes = ConsentPurpose.objects.filter(is_necessary=False).exclude(lifetime="")  # as the expiry task reads them
    for pk, lifetime in purposes.values_list("pk", "lifetime"):
        try:
            due_now = cutoff(now, lifetime)
            due_later = cutoff(now + datetime.timedelta(days=EXPIRY_DAYS), lifetime)
        except ValidationError:
            continue  # a lifetime the expiry task cannot read either; the purpose's page shows it
        soon |= Q(purpose_id=pk, effective_at__gte=due_now, effective_at__lt=due_later)
        overdue |= Q(purpose_id=pk, effective_at__lt=due_now)
    counts = ConsentState.objects.filter(soon | overdue, action=ConsentEvent.Action.GIVEN).aggregate(
        soon=Count("pk", filter=soon), overdue=Count("pk", filter=overdue)
    )
    return counts["soon"] or 0, counts["overdue"] or 0


def active_restriction_counts(*, now: datetime.datetime) -> dict[str, int]:
    active = ProcessingRestriction.objects.filter(
        Q(ends_at__isnull=True) | Q(ends_at__gt=now), lifted_at__isnull=True, starts_at__lte=now
    )
    counts = dict(active.order_by().values_list("kind").annotate(n=Count("pk")))
    return {kind: counts.get(kind, 0) for kind in ProcessingRestriction.Kind.values}


def _version_url(version: PolicyVersion) -> str:
    return reverse("admin:consents_policyversion_change", args=[version.pk])


def _policy_flags(*, now: datetime.datetime) -> list[Flag]:
    """The version in force, the next one, and how far the newest one's notices have gone (PM-X-1, PM-X-2).

    The first published version replaces nothing and sends no notice; later ones notify every account holder.
    """
    in_force = policy.policy_version_in_force(at=now)
    upcoming = policy.policy_version_upcoming(at=now)
    flags = []
    if in_force is None:
        flags.append(
            Flag("no published policy version in force", None, reverse("admin:consents_policyversion_changelist"), "red")
        )
    else:
        flags.append(
            Flag(
                f"policy in force: {in_force.label} (last updated {in_force.last_updated:%Y-%m-%d})",
                None,
                _version_url(in_force),
                "ok",
            )
        )
    if upcoming is not None:
        when = timezone.localtime(upcoming.effective_at)
        flags.append(Flag(f"policy {upcoming.label} takes effect {when:%Y-%m-%d}", None, _version_url(upcoming), "info"))
    newest = upcoming or in_force
    if newest is None or policy.policy_version_previous(newest) is None:
        return flags
    Status = PolicyNoticeDelivery.Status
    by_status = dict(PolicyNoticeDelivery.objects.filter(version=newest).order_by().values_list("status").annotate(n=Count("pk")))
    sent = by_status.pop(Status.SENT, 0) + by_status.pop(Status.IN_SERVICE, 0)
    failed = by_status.pop(Status.FAILED, 0)
    in_flight = sum(by_status.values())  # claimed by a notice run, not yet confirmed sent
    remaining = policy.policy_notice_recipients(version=newest).order_by()[:NOTICE_CAP].count()
    url = _version_url(newest)
    flags.append(Flag(f"accounts notified of {newest.label}", sent, url, "ok" if not (remaining or in_flight) else "info"))
    if remaining:
        late = newest == in_force  # already in force while account holders are still to be told
        label = f"accounts still to notify of {newest.label}" + (" (already in force)" if late else "")
        label += " (at least)" if remaining >= NOTICE_CAP else ""
        flags.append(Flag(label, remaining, url, "amber" if late else "info"))
    if in_flight:
        flags.append(Flag(f"notices of {newest.label} being sent or unconfirmed", in_flight, url, "info"))
    if failed:
        flags.append(Flag(f"notices of {newest.label} that failed", failed, url, "amber"))
    return flags


def render(request) -> Tile | None:
    if not request.user.has_perm("consents.view_consentevent"):
        return None
    now = timezone.now()
    events_url = reverse("admin:consents_consentevent_changelist")
    by_action, gpc_refusals, capped = recent_event_counts(now=now)
    total = sum(by_action.values())
    flags = [
        Flag(
            f"{ConsentEvent.Action(action).label.lower()} in {RECENT_DAYS} days",
            n,
            f"{events_url}?action__exact={action}",
            "info",
        )
        for action, n in by_action.items()
        if n
    ]
    if gpc_refusals:
        flags.append(
            Flag(
                f"refused by a Global Privacy Control signal in {RECENT_DAYS} days",
                gpc_refusals,
                f"{events_url}?method__exact=gpc",
                "info",
            )
        )
    restrictions_url = reverse("admin:consents_processingrestriction_changelist")
    for kind, n in active_restriction_counts(now=now).items():
        if n:
            label = ProcessingRestriction.Kind(kind).label.lower()
            flags.append(Flag(f"active {label}s", n, f"{restrictions_url}?state=active&kind__exact={kind}", "amber"))
    soon, overdue = expiry_counts(now=now)
    states_url = reverse("admin:consents_consentstate_changelist")
    if overdue:
        flags.append(
            Flag("consents past their lifetime not yet expired (is the expiry task running?)", overdue, states_url, "amber")
        )
    if soon:
        flags.append(Flag(f"consents expiring in the next {EXPIRY_DAYS} days", soon, states_url, "info"))
    if request.user.has_perm("consents.view_policyversion"):
        flags.extend(_policy_flags(now=now))
    return Tile(
        title="Consents",
        value=f"{total}+" if capped else total,
        url=events_url,
        flags=flags,
        description=f"consent events in the last {RECENT_DAYS} days",
    )


register_tile("consents.consents", title="Consents", order=ORDER, render=render)
