"""Statutory clocks for rights requests (PM-IX-9): when an answer is due, from `DeadlineRule` rows.

How a period is counted (the rules, and where they come from; docs/rights-request-deadlines.md says why
each reading was chosen):
- The day the period starts from is not counted; a period starts the next day (EU Regulation 1182/71 art.
  3(1), which also governs the GDPR's "one month" of art. 12(3); the UK regulator counts the same way;
  Singapore's Interpretation Act 1965 s50(a)). CCPA's "45 calendar days" from receipt (11 CCR §7021(b)) is
  counted the same way: received 2 Mar 2026, due 16 Apr.
- Where it starts from (`clock_starts`): receipt of the request, or, for a rule whose clock starts at
  verification (the UK: UK GDPR art. 12A, DUAA 2025 s76), the latest of receipt, the end of a hold
  awaiting proof of identity (the proof arrived) and `verified_at`. The period then runs from that moment
  afresh: an earlier start and the days already run do not count.
- Day, business-day and month periods count calendar dates in `settings.DEADLINE_TIME_ZONE` (where the
  controller answers from) and end at the end of the due day there, 23:59:59.999999 local (1182/71 art.
  3(2)(b),(c): "the expiry of the last hour of the last day"). A daylight-saving change inside the period
  therefore changes its length in hours, never its last date.
- A period in months ends on the day of the later month with the same number as the start day, or on
  that month's last day when it has no such day (1182/71 art. 3(2)(c)): 31 Jan + 1 month -> 28 Feb (29 Feb
  in a leap year).
- Business days are Monday to Friday except the public holidays of the rule's calendar (CCPA's 10 business
  days to acknowledge, 11 CCR §7021(a)).
- Hour periods (Indonesia's 3x24 hours, UU 27/2022 arts. 30, 32(2), 40, 41(1)) are exact from the moment
  of receipt and never roll: received Mon 2 Mar 2026 09:00 -> Thu 5 Mar 2026 09:00.
- Pauses (clock-stopping holds) count only where the rule pauses (`pauses_for_verification`). Where the
  clock starts at receipt, every clock-stopping hold pushes the due moment by its exact length (overlaps
  once, time before receipt not at all). Where it starts at verification, a verification hold restarts the
  period (above), and the days of a clarification hold do not count: from the day we asked to the day the
  answer came, both included, after the start (the UK's art. 12A; DPA 2018 s54(3C) words it the same way),
  so the due date moves by that many days. An open hold counts up to now. Pauses apply after the period
  (and any extensions) and before the roll.
- Then the roll (`roll`): a period ending on a non-working day ends at the end of the next working day.
  "Sunday or holiday" (Singapore, Interpretation Act 1965 s50(b)) skips Sundays and public holidays;
  "business day" (1182/71 art. 3(4); California's Code of Civil Procedure §12a, §12, §135, for the CCPA's
  periods) also skips Saturdays. Hour periods never roll.
- Public holidays come from the `holidays` package (offline data; the DPO keeps the package current):
  the rule's `holiday_calendar` ("SG", "US-CA", "GB-ENG"), or, when empty, the jurisdiction's own when it
  covers one country or region (`Jurisdiction.countries`); a jurisdiction of several countries (the EU)
  has no holidays unless the rule names a calendar, so there only weekends roll. Fewer holidays make a
  deadline earlier, never later than the legal one.
- A right with no row for its jurisdiction uses the jurisdiction's general row (right empty), else
  `DEFAULT`'s row for that right, else `DEFAULT`'s general row.

The rows themselves (and the citation for each) are seeded from `requests/seed/deadlines.yaml`.
"""

from __future__ import annotations

import calendar
import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

from inventory.models import Jurisdiction

from .calendars import holiday_calendar, holiday_calendar_error
from .models import ClockStart, DeadlineRule, HoldReason, PeriodUnit, Roll

END_OF_DAY = datetime.time.max  # 23:59:59.999999
SATURDAY, SUNDAY = 5, 6
ONE_DAY = datetime.timedelta(days=1)


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


# --- Public holidays --------------------------------------------------------------------------------


def holiday_calendar_code(rule: DeadlineRule) -> str:
    """The calendar whose public holidays the rule skips: its own, else its jurisdiction's single country
    or region; "" (no holidays) for a jurisdiction of several countries or none, or one the package lacks."""
    if rule.holiday_calendar:
        return rule.holiday_calendar
    countries = rule.jurisdiction.countries or []
    if len(countries) == 1 and holiday_calendar_error(countries[0]) is None:
        return countries[0]
    return ""


@dataclass(frozen=True)
class WorkingDays:
    """Which days are working days for one rule: Saturdays and Sundays are not, nor the calendar's holidays."""

    calendar_code: str = ""

    def is_holiday(self, day: datetime.date) -> bool:
        return bool(self.calendar_code) and day in holiday_calendar(self.calendar_code)

    def is_business_day(self, day: datetime.date) -> bool:
        return day.weekday() < SATURDAY and not self.is_holiday(day)

    def rolls_past(self, day: datetime.date, roll: str) -> bool:
        """Whether a period ending on `day` runs on to the next day, under `roll`."""
        if roll == Roll.SUNDAY_OR_HOLIDAY:
            return day.weekday() == SUNDAY or self.is_holiday(day)
        if roll == Roll.BUSINESS_DAY:
            return not self.is_business_day(day)
        return False


def working_days_for(rule: DeadlineRule) -> WorkingDays:
    return WorkingDays(holiday_calendar_code(rule))


# --- Counting ---------------------------------------------------------------------------------------


def add_months(day: datetime.date, months: int) -> datetime.date:
    """The same day number `months` later, or that month's last day when it has none."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return day.replace(year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1]))


def add_business_days(day: datetime.date, count: int, working: WorkingDays | None = None) -> datetime.date:
    """`count` business days after `day` (which itself is not counted, whatever day it is)."""
    working = working or WorkingDays()
    while count > 0:
        day += ONE_DAY
        if working.is_business_day(day):
            count -= 1
    return day


def end_of_day(day: datetime.date, zone: ZoneInfo) -> datetime.datetime:
    return datetime.datetime.combine(day, END_OF_DAY, tzinfo=zone)


def add_period(
    start: datetime.datetime, value: int, unit: str, zone: ZoneInfo | None = None, working: WorkingDays | None = None
) -> datetime.datetime:
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
        day = add_business_days(day, value, working)
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


def paused_days(
    pauses: Iterable[tuple], since: datetime.date, zone: ZoneInfo, now: datetime.datetime | None = None
) -> set[datetime.date]:
    """The dates (in `zone`) that `pauses` (start, end) touch after the date `since`, from the day a pause
    started to the day it ended, both included; an open pause (end None) runs up to `now`'s date."""
    now = now or timezone.now()
    days: set[datetime.date] = set()
    for start, end in pauses:
        day, last = start.astimezone(zone).date(), (end or now).astimezone(zone).date()
        day = max(day, since + ONE_DAY)
        while day <= last:
            days.add(day)
            day += ONE_DAY
    return days


def push_by_days(due: datetime.datetime, days: set[datetime.date], since: datetime.date, zone: ZoneInfo) -> datetime.datetime:
    """`due` moved one day later for every date of `days` that the period (from `since` to the moving end)
    covers: days that do not count make the period end that many days later, and a day that does not count
    inside the added stretch moves it again."""
    end = due.astimezone(zone).date()
    extra = sum(1 for day in days if since < day <= end)
    while extra:
        new_end = end + datetime.timedelta(days=extra)
        extra = sum(1 for day in days if end < day <= new_end)
        end = new_end
    return end_of_day(end, zone)


def roll_to_working_day(
    moment: datetime.datetime, zone: ZoneInfo, roll: str = Roll.BUSINESS_DAY, working: WorkingDays | None = None
) -> datetime.datetime:
    """A due moment on a day that `roll` skips (in `zone`) becomes the end of the next day it does not skip."""
    working = working or WorkingDays()
    day = moment.astimezone(zone).date()
    if not working.rolls_past(day, roll):
        return moment
    while working.rolls_past(day, roll):
        day += ONE_DAY
    return end_of_day(day, zone)


@dataclass(frozen=True)
class Clock:
    """What a request's clock depends on besides its rule: when it was received, when verified, and its
    clock-stopping holds as (reason, start, end) with end None while the hold is open."""

    received_at: datetime.datetime
    verified_at: datetime.datetime | None = None
    holds: tuple[tuple[str, datetime.datetime, datetime.datetime | None], ...] = ()


def clock_start(rule: DeadlineRule, clock: Clock, now: datetime.datetime | None = None) -> datetime.datetime:
    """Where the period runs from: receipt, or (clock starting at verification) the latest of receipt,
    `verified_at` and the end of each verification hold; an open one counts as ending now."""
    start = clock.received_at
    if rule.clock_starts != ClockStart.VERIFICATION:
        return start
    now = now or timezone.now()
    moments = [clock.verified_at] if clock.verified_at else []
    moments += [end or now for reason, _, end in clock.holds if reason == HoldReason.AWAITING_VERIFICATION]
    return max([start, *moments])


def due_for_clock(
    rule: DeadlineRule, clock: Clock, *, extensions: int = 0, now: datetime.datetime | None = None
) -> datetime.datetime:
    """The due moment under `rule` for `clock`, after `extensions` extensions (each added to the end of the
    period before it), pushed by the pauses where the rule pauses, then rolled where the rule rolls. Aware,
    in the deadline time zone."""
    if timezone.is_naive(clock.received_at):
        raise ValueError("received_at must be an aware datetime")
    zone = deadline_zone()
    working = working_days_for(rule)
    start = clock_start(rule, clock, now)
    due = add_period(start, rule.period_value, rule.period_unit, zone, working)
    last_unit = rule.period_unit
    for _ in range(extensions):
        due = add_period(due, rule.extension_value, rule.extension_unit, zone, working)
        last_unit = rule.extension_unit
    if rule.pauses_for_verification:
        if rule.clock_starts == ClockStart.VERIFICATION:
            # A verification hold restarted the period; only clarification holds leave days uncounted.
            spans = [(s, e) for reason, s, e in clock.holds if reason != HoldReason.AWAITING_VERIFICATION]
            if last_unit == PeriodUnit.HOURS:
                due = due + paused_length(spans, start, now)
            else:
                since = start.astimezone(zone).date()
                due = push_by_days(due, paused_days(spans, since, zone, now), since, zone)
        else:
            due = due + paused_length([(s, e) for _, s, e in clock.holds], clock.received_at, now)
    if rule.roll != Roll.NONE and last_unit != PeriodUnit.HOURS:
        due = roll_to_working_day(due, zone, rule.roll, working)
    return due.astimezone(zone)


def due_from_rule(
    rule: DeadlineRule,
    received_at: datetime.datetime,
    pauses: Iterable[tuple] = (),
    *,
    extensions: int = 0,
    now: datetime.datetime | None = None,
) -> datetime.datetime:
    """`due_for_clock` for a request received at `received_at` whose clock-stopping pauses are `pauses`,
    (start, end) pairs of clarification holds (they never restart a clock)."""
    holds = tuple((HoldReason.AWAITING_CLARIFICATION, start, end) for start, end in pauses)
    return due_for_clock(rule, Clock(received_at=received_at, holds=holds), extensions=extensions, now=now)


def compute_due(jurisdiction, right: str, received_at: datetime.datetime, pauses: Iterable[tuple] = ()) -> datetime.datetime:
    """PM-IX-9: when an answer to `right` received at `received_at` is due in `jurisdiction` (a
    Jurisdiction or its code), given the clock-stopping `pauses` as (start, end) pairs. See the module
    comment for how the period is counted."""
    return due_from_rule(rule_for(jurisdiction, right), received_at, pauses)


# --- A request's own clock ----------------------------------------------------------------------------


def clock_of(rights_request) -> Clock:
    """The request's receipt, verification and clock-stopping holds, read from its rows."""
    holds = ()
    if rights_request.pk is not None:
        holds = tuple((p.reason, p.started_at, p.ended_at) for p in rights_request.pauses.all() if p.stops_clock)
    return Clock(received_at=rights_request.received_at, verified_at=rights_request.verified_at, holds=holds)


def due_for(rights_request, *, now: datetime.datetime | None = None) -> datetime.datetime:
    """The request's legal deadline without extensions (what `RightsRequest.due_at` holds), recomputed from
    its receipt, its verification and its clock-stopping holds (an open one up to now)."""
    rule = rule_for(rights_request.jurisdiction, rights_request.right)
    return due_for_clock(rule, clock_of(rights_request), now=now)


def extended_due_for(rights_request, *, now: datetime.datetime | None = None) -> datetime.datetime | None:
    """The deadline with the extensions already used (what `RightsRequest.extended_due_at` holds), recomputed
    like `due_for`; None when the request was never extended."""
    if not rights_request.extensions_used:
        return None
    rule = rule_for(rights_request.jurisdiction, rights_request.right)
    return due_for_clock(rule, clock_of(rights_request), extensions=rights_request.extensions_used, now=now)


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
    return due_for_clock(rule, clock_of(rights_request), extensions=rights_request.extensions_used + 1, now=now)


def acknowledge_by(rights_request) -> datetime.datetime | None:
    """When receipt must be acknowledged (US-CA: 10 business days, 11 CCR §7021(a)); None where the rule sets
    no acknowledgement period. It runs from receipt; pauses and the roll do not apply to it."""
    rule = rule_for(rights_request.jurisdiction, rights_request.right)
    if rule.acknowledge_value is None:
        return None
    return add_period(rights_request.received_at, rule.acknowledge_value, rule.acknowledge_unit, working=working_days_for(rule))
