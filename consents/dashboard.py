"""The consents tile on the staff dashboard: recent choices, restrictions, expiries and the policy notices.

Shown to users who may view the ledger. The tile must stay cheap however large the ledger grows, so:
- recent events are counted among the newest LEDGER_WINDOW events only (a backward walk of the primary
  key, never a scan of the table); a busier week shows as "10000+";
- expiries are read from `ConsentState` through its (purpose, action, effective_at) index: one range per
  purpose that has a lifetime, all in one query. A "given" state is due once its effective time plus the
  purpose's lifetime has passed (the expiry task then writes an "expired" event); states already past it
  mean the task is behind;
- restrictions are a small table; the policy version and its notices come from `policies.dashboard`.
Every flag links to a list filtered to exactly the rows it counts (the ledger's "recent" filter and the
states' "expiry" filter use the same conditions as the tile, defined here).
A fixed number of queries, whatever the size of the ledger.
"""

from __future__ import annotations

import datetime

from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from policies.dashboard import policy_status
from privacyops.dashboard import Flag, Tile, register_tile

from .lapse import LifetimeUnreadable, lapsed_if_given_by
from .models import ConsentEvent, ConsentPurpose, ConsentState, ProcessingRestriction

ORDER = 40  # before retention's purges: consents change daily
RECENT_DAYS = 7
EXPIRY_DAYS = 30
LEDGER_WINDOW = 10_000  # newest events looked at for the recent counts
RECENT_FILTER = "7d"  # the ledger list's filter value for `ledger_recent`


def ledger_recent(queryset=None, *, now: datetime.datetime, window: int = LEDGER_WINDOW):
    """Events recorded in the last RECENT_DAYS among the newest `window` (by primary key: ids grow with
    recording time). The tile counts these and the ledger's "recent" filter lists them, so the two agree."""
    since = now - datetime.timedelta(days=RECENT_DAYS)
    newest = ConsentEvent.objects.order_by("-pk").values("pk")[:window]
    return (ConsentEvent.objects.all() if queryset is None else queryset).filter(pk__in=newest, recorded_at__gte=since)


def recent_event_counts(*, now: datetime.datetime, window: int = LEDGER_WINDOW) -> tuple[dict[str, int], int, bool]:
    """Recent events (see `ledger_recent`) by action, the GPC refusals among them, and whether the window capped them."""
    rows = ledger_recent(now=now, window=window).order_by().values("action", "method").annotate(n=Count("pk"))
    by_action = dict.fromkeys(ConsentEvent.Action.values, 0)
    gpc_refusals = 0
    for row in rows:
        by_action[row["action"]] = by_action.get(row["action"], 0) + row["n"]
        if row["method"] == ConsentEvent.Method.GPC and row["action"] == ConsentEvent.Action.REFUSED:
            gpc_refusals += row["n"]
    return by_action, gpc_refusals, sum(by_action.values()) >= window


def expiry_conditions(*, now: datetime.datetime) -> tuple[Q, Q]:
    """(expires within EXPIRY_DAYS, already past its lifetime) as conditions on "given" ConsentState rows.

    One range of the (purpose, action, effective_at) index per purpose with a lifetime; necessary purposes
    never expire, as in `consents.services.consent_expire_due`. The bounds come from `consents.lapse`, the
    rule the decisions and the expiry job use, so "overdue" here is exactly "lapsed" there."""
    soon = Q(pk__in=[])
    overdue = Q(pk__in=[])
    purposes = ConsentPurpose.objects.filter(is_necessary=False).exclude(lifetime="")
    for pk, lifetime in purposes.values_list("pk", "lifetime"):
        try:
            due_now = lapsed_if_given_by(lifetime=lifetime, at=now)
            due_later = lapsed_if_given_by(lifetime=lifetime, at=now + datetime.timedelta(days=EXPIRY_DAYS))
        except LifetimeUnreadable:
            continue  # a lifetime the expiry task cannot read either; the purpose's page shows it
        soon |= Q(purpose_id=pk, effective_at__gt=due_now, effective_at__lte=due_later)
        overdue |= Q(purpose_id=pk, effective_at__lte=due_now)
    given = Q(action=ConsentEvent.Action.GIVEN)
    return given & soon, given & overdue


def expiry_counts(*, now: datetime.datetime) -> tuple[int, int]:
    """(consents that expire in the next EXPIRY_DAYS, consents already past their lifetime), in one query."""
    soon, overdue = expiry_conditions(now=now)
    counts = ConsentState.objects.filter(soon | overdue).aggregate(
        soon=Count("pk", filter=soon), overdue=Count("pk", filter=overdue)
    )
    return counts["soon"] or 0, counts["overdue"] or 0


def active_restriction_counts(*, now: datetime.datetime) -> dict[str, int]:
    active = ProcessingRestriction.objects.filter(
        Q(ends_at__isnull=True) | Q(ends_at__gt=now), lifted_at__isnull=True, starts_at__lte=now
    )
    counts = dict(active.order_by().values_list("kind").annotate(n=Count("pk")))
    return {kind: counts.get(kind, 0) for kind in ProcessingRestriction.Kind.values}


def render(request) -> Tile | None:
    if not request.user.has_perm("consents.view_consentevent"):
        return None
    now = timezone.now()
    events_url = reverse("admin:consents_consentevent_changelist")
    recent_url = f"{events_url}?recent={RECENT_FILTER}"
    by_action, gpc_refusals, capped = recent_event_counts(now=now)
    total = sum(by_action.values())
    flags = [
        Flag(
            f"{ConsentEvent.Action(action).label.lower()} in {RECENT_DAYS} days",
            n,
            f"{recent_url}&action__exact={action}",
            "info",
        )
        for action, n in by_action.items()
        if n
    ]
    if gpc_refusals:
        url = f"{recent_url}&method__exact={ConsentEvent.Method.GPC}&action__exact={ConsentEvent.Action.REFUSED}"
        flags.append(Flag(f"refused by a Global Privacy Control signal in {RECENT_DAYS} days", gpc_refusals, url, "info"))
    restrictions_url = reverse("admin:consents_processingrestriction_changelist")
    for kind, n in active_restriction_counts(now=now).items():
        if n:
            label = ProcessingRestriction.Kind(kind).label.lower()
            flags.append(Flag(f"active {label}s", n, f"{restrictions_url}?state=active&kind__exact={kind}", "amber"))
    soon, overdue = expiry_counts(now=now)
    states_url = reverse("admin:consents_consentstate_changelist")
    if overdue:
        label = "consents past their lifetime not yet expired (is the expiry task running?)"
        flags.append(Flag(label, overdue, f"{states_url}?expiry=overdue", "amber"))
    if soon:
        flags.append(Flag(f"consents expiring in the next {EXPIRY_DAYS} days", soon, f"{states_url}?expiry=soon", "info"))
    words, severity = [f"consent events in the last {RECENT_DAYS} days"], "ok"
    if request.user.has_perm("policies.view_policyversion"):
        policy_words, policy_flags, severity = policy_status(now=now)
        words.extend(policy_words)
        flags.extend(policy_flags)
    return Tile(
        title="Consents",
        value=f"{total}+" if capped else total,
        url=recent_url,
        severity=severity,
        flags=flags,
        description="; ".join(words),
    )


register_tile("consents.consents", title="Consents", order=ORDER, render=render)
