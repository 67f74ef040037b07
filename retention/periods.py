"""Retention periods: ISO 8601 durations, and the cutoff they give from a moment.

A period is written `PnYnMnWnDTnHnMnS` (any subset of the parts, at least one, in that order; `T` only
before hours, minutes or seconds). Only seconds may have a fraction: "P1.5M" has no calendar meaning we
could apply without guessing. Zero and negative periods are refused: a rule that expires everything at
once is a mistake, not a policy.

Years and months are calendar units: the cutoff for P1M on 31 March is the last day of February (the day
clamps to the month's end), P1Y on 29 February 2024 is 28 February 2023. Weeks, days and the time part are
fixed lengths subtracted after the calendar part, in UTC, so a daylight-saving change never moves a cutoff.
`add_period` goes the other way (when something that lasts a period from a moment ends) with the same
clamping: P1M from 31 January ends on the last day of February.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError

_PATTERN = re.compile(
    r"^P(?!$)"
    r"(?:(?P<years>\d+)Y)?"
    r"(?:(?P<months>\d+)M)?"
    r"(?:(?P<weeks>\d+)W)?"
    r"(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)"
    r"(?:(?P<hours>\d+)H)?"
    r"(?:(?P<minutes>\d+)M)?"
    r"(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?"
    r")?$"
)


@dataclass(frozen=True)
class Period:
    """A parsed duration: calendar years and months, and a fixed length for the rest."""

    years: int = 0
    months: int = 0
    fixed: timedelta = timedelta(0)

    @property
    def is_zero(self) -> bool:
        return not self.years and not self.months and not self.fixed


def parse_period(text: str) -> Period:
    """Parse an ISO 8601 duration such as P180D, P13M, P3Y or P1DT12H; ValidationError says what is wrong."""
    value = (text or "").strip().upper()
    if not value:
        raise ValidationError("Give the period as an ISO 8601 duration, e.g. P180D, P13M or P3Y.", code="period_empty")
    if value.startswith("-"):
        raise ValidationError(f"{text!r}: a retention period cannot be negative.", code="period_negative")
    match = _PATTERN.match(value)
    if match is None or value.endswith("T"):
        raise ValidationError(
            f"{text!r} is not an ISO 8601 duration. Write P, then any of nY nM nW nD in that order, then optionally T "
            "and nH nM nS, e.g. P180D, P13M, P3Y, P1DT12H. Only seconds may have a fraction.",
            code="period_invalid",
        )
    parts = match.groupdict()
    seconds = Decimal((parts["seconds"] or "0").replace(",", "."))
    period = Period(
        years=int(parts["years"] or 0),
        months=int(parts["months"] or 0),
        fixed=timedelta(
            weeks=int(parts["weeks"] or 0),
            days=int(parts["days"] or 0),
            hours=int(parts["hours"] or 0),
            minutes=int(parts["minutes"] or 0),
            seconds=float(seconds),
        ),
    )
    if period.is_zero:
        raise ValidationError(f"{text!r} is zero: a retention period must be longer than that.", code="period_zero")
    return period


def subtract_months(moment: datetime, months: int) -> datetime:
    """`moment` moved back by calendar months; the day clamps to the target month's last day."""
    index = moment.year * 12 + (moment.month - 1) - months
    year, month = divmod(index, 12)
    month += 1
    if year < 1:
        raise ValidationError("The period reaches back before year 1.", code="period_too_long")
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def add_months(moment: datetime, months: int) -> datetime:
    """`moment` moved forward by calendar months; the day clamps to the target month's last day."""
    index = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    if year > 9999:
        raise ValidationError("The period reaches past year 9999.", code="period_too_long")
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def add_period(moment: datetime, period: str | Period) -> datetime:
    """The moment a period that starts at `moment` ends: calendar part first (clamped like `cutoff`), then
    the fixed part, in UTC. Used where something lasts for a period from a start, e.g. a consent's lifetime."""
    parsed = parse_period(period) if isinstance(period, str) else period
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    end = add_months(moment, parsed.years * 12 + parsed.months)
    try:
        return end + parsed.fixed
    except OverflowError:
        raise ValidationError("The period reaches past year 9999.", code="period_too_long") from None


def cutoff(now: datetime, period: str | Period) -> datetime:
    """The moment before which a row's retention clock must have started for the row to be expired."""
    parsed = parse_period(period) if isinstance(period, str) else period
    if now.tzinfo is not None:
        now = now.astimezone(UTC)
    moment = subtract_months(now, parsed.years * 12 + parsed.months)
    try:
        return moment - parsed.fixed
    except OverflowError:
        raise ValidationError("The period reaches back before year 1.", code="period_too_long") from None
