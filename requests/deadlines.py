"""Statutory clocks for rights requests (PM-IX-9): when an answer is due, from `DeadlineRule` rows.

How a period is counted (the rules, and where they come from):
- The day of receipt is not counted; a period starts the next day (EU Regulation 1182/71 art. 3(1), which
  also governs the GDPR's "one month" of art. 12(3); the UK regulator counts the same way). CCPA's "45
  calendar days" from receipt (11 CCR §7021(b)) is counted the same way: received 2 Mar 2026, due 16 Apr.
- Day, business-day and month periods count calendar dates in `settings.DEADLINE_TIME_ZONE` (where the
  controller answers from) and end at the end of the due day there, 23:59:59.999999 local (1182/71 art.
  3(2)(b),(c): "the expiry of the last hour of the last day"). A daylight-saving change inside the period
  therefore changes its length in hours, never its last date.
- A period in months ends on the day of the later month with the same number as the day of receipt, or
  on that month's last day when it has no such day (1182/71 art. 3(2)(c)): 31 Jan + 1 month → 28 Feb
  (29 Feb in a leap year).
- Business days are Monday to Friday (CCPA's 10 business days to acknowledge, 11 CCR §7021(a)).
- Hour periods (Indonesia's 3×24 hours, UU 27/2022 arts. 30, 32(2), 41(1)) are exact from the moment of
  receipt and never roll: received Mon 2 Mar 2026 09:00 → Thu 5 Mar 2026 09:00.
- Pauses (pairs of start and end datetimes) push the due moment by their exact total length, only where
  the rule pauses (`pauses_for_verification`: the UK's "stop the clock" while identity or clarification is
  awaited, DUAA 2025). Overlapping pauses count once; time before receipt does not count. Pauses apply
  after the period (and any extensions) and before the roll.
- Then, where the rule says so (`rolls_to_working_day`), a period ending on a Saturday or Sunday ends at
  the end of the following Monday (1182/71 art. 3(4), which the UK regulator applies too).
- Public holidays are out of scope: nothing here knows any holiday calendar, so a period ending on a
  public holiday, or business days spanning one, count it as a working day. The DPO can shorten their
  own internal targets; the legal deadline we compute is never later than the one with holidays.
- A right with no row for its jurisdiction uses the jurisdiction's general row (right empty), else
  `DEFAULT`'s row for that right, else `DEFAULT`'s general row.

The rows themselves (and the citation for each) are seeded from `requests/seed/deadlines.yaml`.
"""

from __future__ import annotations

import calendar
import datetime
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

from inventory.models import Jurisdiction

from .models import DeadlineRule, PeriodUnit

END_OF_DAY = datetime.time.max  # 23:59:59.999999
SATURDAY = 5


def deadline_zone() -> ZoneInfo:
    return ZoneInfo(settings.DEADLINE_TIME_ZONE)


def _code(jurisdiction) -> str:
    if jurisdiction is None:
        return Jurisdiction.DEFAULT
    return jurisdiction if isinstance(jurisdiction, str) else jurisdiction.code


def rule_for(jurisdiction, right: str) -> DeadlineRule:
    """The rule in force for `right` in `jurisdiction` (a Jurisdiction or its code): the right's own row,
    else the jurisdiction's general row, else DEFAULT's (its row for the right, else its general row).
    One query. Raises DeadlineRule.DoesNotExist when none of them exists."""
    code = _code(jurisdiction)
    candidates = DeadlineRule.objects.select_related("jurisdiction").filter(
        jurisdiction__code__in={code, Jurisdiction.DEFAULT}, right__in={right or "", ""}
    )
    order = [(code, right), (code, ""), (Jurisdiction.DEFAULT, right), (Jurisdiction.DEFAULT, "")]
    by_key = {(r.jurisdiction.code, r.right): r for r in candidates}
    for key in order:
        if key in by_key:
            return by_key[key]
    raise DeadlineRule.DoesNotExist(f"No deadline rule for {code} / {right or 'every right'}, and no DEFAULT rule.")


# --- Counting ---------------------------------------------------------------------------------------


def add_months(day: datetime.date, months: int) -> datetime.date:
    """The same day number `months` later, or that month's last day when it has none."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return day.replace(year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1]))


def add_business_days(day: datetime.date, count: int) -> datetime.date:
    """`count` Mondays-to-Fridays after `day` (which itself is not counted, whatever weekday it is)."""
    while count > 0:
        day += datetime.timedelta(days=1)
        if day.weekday() < SATURDAY:
            count -= 1
    return day


def end_of_day(day: datetime.date, zone: ZoneInfo) -> datetime.datetime:
    return datetime.datetime.combine(day, END_OF_DAY, tzinfo=zone)


def add_period(start: datetime.datetime, value: int, unit: str, zone: ZoneInfo | None = None) -> datetime.datetime:
    """The moment a period of `value` `unit`s that runs from `start` ends (see the module comment).

    Hours are exact (added in UTC, so a daylight-saving change does not shift them); every other unit
    counts dates in `zone` and ends at the end of the last day there."""
    zone = zone or deadline_zone()
    if unit == PeriodUnit.HOURS:
        return (start.astimezone(datetime.UTC) + datetime.timedelta(hours=value)).astimezone(zone)
    day = start.astimezone(zone).date()
    if unit == PeriodUnit.CALENDAR_DAYS:
        day += datetime.timedelta(days=value)
    elif unit == PeriodUnit.CALENDAR_MONTHS:
        day = add_months(day, value)
    elif unit == PeriodUnit.BUSINESS_DAYS:
        day = add_business_days(day, value)
    else:
        raise ValueError(f"Unknown period unit {unit!r}")
    return end_of_day(day, zone)


def paused_length(pauses: Iterable[tuple], since: datetime.datetime, now: datetime.datetime | None = None) -> datetime.timedelta:
    """The total time covered by `pauses` (start, end) after `since`; overlaps count once, an open pause
    (end None) runs up to `now`."""
    now = now or timezone.now()
    spans = sorted((max(start, since), end or now) for start, end in pauses)
    total = datetime.timedelta()
    covered_to = since
    for start, end in spans:
        start = max(start, covered_to)
        if end > start:
            total += end - start
            covered_to = end
    return total


def roll_to_working_day(moment: datetime.datetime, zone: ZoneInfo) -> datetime.datetime:
    """A moment on a Saturday or Sunday (in `zone`) becomes the end of the next Monday (1182/71 art. 3(4))."""
    local = moment.astimezone(zone)
    if local.weekday() < SATURDAY:
        return moment
    return end_of_day(local.date() + datetime.timedelta(days=7 - local.weekday()), zone)


def due_from_rule(
    rule: DeadlineRule,
    received_at: datetime.datetime,
    pauses: Iterable[tuple] = (),
    *,
    extensions: int = 0,
    now: datetime.datetime | None = None,
) -> datetime.datetime:
    """The due moment under `rule` for a request received at `received_at`, after `extensions` extensions
    (each added to the end of the period before it), pushed by the pauses where the rule pauses, then rolled
    where the rule rolls. Aware, in the deadline time zone."""
    if timezone.is_naive(received_at):
        raise ValueError("received_at must be an aware datetime")
    zone = deadline_zone()
    due = add_period(received_at, rule.period_value, rule.period_unit, zone)
    last_unit = rule.period_unit
    for _ in range(extensions):
        due = add_period(due, rule.extension_value, rule.extension_unit, zone)
        last_unit = rule.extension_unit
    if rule.pauses_for_verification:
        due = due + paused_length(pauses, received_at, now)
    if rule.rolls_to_working_day and last_unit != PeriodUnit.HOURS:
        due = roll_to_working_day(due, zone)
    return due.astimezone(zone)


def compute_due(jurisdiction, right: str, received_at: datetime.datetime, pauses: Iterable[tuple] = ()) -> datetime.datetime:
    """PM-IX-9: when an answer to `right` received at `received_at` is due in `jurisdiction` (a
    Jurisdiction or its code), given the clock-stopping `pauses` as (start, end) pairs. See the module
    comment for how the period is counted."""
    return due_from_rule(rule_for(jurisdiction, right), received_at, pauses)


# --- A request's own clock ----------------------------------------------------------------------------


def _clock_pauses(rights_request) -> list[tuple]:
    if rights_request.pk is None:
        return []
    return [(p.started_at, p.ended_at) for p in rights_request.pauses.all() if p.stops_clock]


def due_for(rights_request, *, now: datetime.datetime | None = None) -> datetime.datetime:
    """The request's legal deadline without extensions (what `RightsRequest.due_at` holds), recomputed from
    its receipt and its clock-stopping pauses: closed pauses by their length, an open one up to now."""
    rule = rule_for(rights_request.jurisdiction, rights_request.right)
    return due_from_rule(rule, rights_request.received_at, _clock_pauses(rights_request), now=now)


def extended_due_for(rights_request, *, now: datetime.datetime | None = None) -> datetime.datetime | None:
    """The deadline with the extensions already used (what `RightsRequest.extended_due_at` holds), recomputed
    like `due_for`; None when the request was never extended."""
    if not rights_request.extensions_used:
        return None
    rule = rule_for(rights_request.jurisdiction, rights_request.right)
    return due_from_rule(
        rule, rights_request.received_at, _clock_pauses(rights_request), extensions=rights_request.extensions_used, now=now
    )


def extension_due(rights_request, *, now: datetime.datetime | None = None) -> datetime.datetime:
    """The deadline after one more extension (EU/UK: +2 months; US-CA: +45 days). Raises ValueError when the
    rule allows no extension, or no more of them."""
    rule = rule_for(rights_request.jurisdiction, rights_request.right)
    if not rule.extensions_allowed or not rule.extension_value:
        raise ValueError(f"The rule for {rule.jurisdiction.code} ({rule.citation}) allows no extension.")
    if rights_request.extensions_used >= rule.extensions_allowed:
        raise ValueError(
            f"The period was already extended {rights_request.extensions_used} time(s); "
            f"{rule.jurisdiction.code} allows {rule.extensions_allowed}."
        )
    return due_from_rule(
        rule,
        rights_request.received_at,
        _clock_pauses(rights_request),
        extensions=rights_request.extensions_used + 1,
        now=now,
    )


def acknowledge_by(rights_request) -> datetime.datetime | None:
    """When receipt must be acknowledged (US-CA: 10 business days, 11 CCR §7021(a)); None where the rule sets
    no acknowledgement period. Pauses and the roll do not apply to it."""
    rule = rule_for(rights_request.jurisdiction, rights_request.right)
    if rule.acknowledge_value is None:
        return None
    return add_period(rights_request.received_at, rule.acknowledge_value, rule.acknowledge_unit)
