"""ISO 8601 retention periods and the cutoffs they give (PM-VI-1)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError

from retention.periods import Period, cutoff, parse_period


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P180D", Period(fixed=timedelta(days=180))),
        ("P13M", Period(months=13)),
        ("P3Y", Period(years=3)),
        ("P2W", Period(fixed=timedelta(weeks=2))),
        ("P1Y2M3W4DT5H6M7S", Period(years=1, months=2, fixed=timedelta(weeks=3, days=4, hours=5, minutes=6, seconds=7))),
        ("PT36H", Period(fixed=timedelta(hours=36))),
        ("PT1.5S", Period(fixed=timedelta(seconds=1.5))),
        ("p30d", Period(fixed=timedelta(days=30))),
    ],
)
def test_pm_vi_1_parses_iso_durations(text, expected):
    assert parse_period(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "ISO 8601 duration"),
        ("180D", "not an ISO 8601 duration"),
        ("P", "not an ISO 8601 duration"),
        ("PT", "not an ISO 8601 duration"),
        ("P1DT", "not an ISO 8601 duration"),
        ("P1.5M", "Only seconds may have a fraction"),
        ("P3D2M", "in that order"),
        ("P1H", "not an ISO 8601 duration"),
        ("-P1D", "cannot be negative"),
        ("P0D", "must be longer"),
        ("P30 days", "not an ISO 8601 duration"),
    ],
)
def test_pm_vi_1_rejects_invalid_periods_with_a_clear_message(text, says):
    with pytest.raises(ValidationError) as excinfo:
        parse_period(text)
    assert says in excinfo.value.messages[0]


def at(*args):
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "period", "expected"),
    [
        (at(2026, 3, 31, 12), "P1M", at(2026, 2, 28, 12)),  # the day clamps to the month's end
        (at(2024, 3, 31, 12), "P1M", at(2024, 2, 29, 12)),  # leap year
        (at(2024, 2, 29), "P1Y", at(2023, 2, 28)),
        (at(2026, 1, 15), "P13M", at(2024, 12, 15)),
        (at(2026, 5, 31), "P3M", at(2026, 2, 28)),
        (at(2026, 3, 10, 6), "P180D", at(2025, 9, 11, 6)),
        (at(2026, 3, 10, 6), "P1M1D", at(2026, 2, 9, 6)),  # calendar part first, then fixed days
        (at(2026, 3, 10, 6), "PT7H", at(2026, 3, 9, 23)),
    ],
)
def test_pm_vi_1_cutoff_uses_calendar_months_and_years(now, period, expected):
    assert cutoff(now, period) == expected
