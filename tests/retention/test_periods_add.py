"""`add_period`: when something that lasts an ISO 8601 period from a moment ends (consent lifetimes, PM-III-6)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.core.exceptions import ValidationError

from retention.periods import add_period, cutoff


@pytest.mark.parametrize(
    ("start", "period", "end"),
    [
        (datetime(2024, 1, 15, 10, tzinfo=UTC), "P13M", datetime(2025, 2, 15, 10, tzinfo=UTC)),
        (datetime(2023, 1, 31, 10, tzinfo=UTC), "P1M", datetime(2023, 2, 28, 10, tzinfo=UTC)),
        (datetime(2024, 1, 31, 10, tzinfo=UTC), "P1M", datetime(2024, 2, 29, 10, tzinfo=UTC)),
        (datetime(2024, 2, 29, 0, tzinfo=UTC), "P1Y", datetime(2025, 2, 28, 0, tzinfo=UTC)),
        (datetime(2024, 11, 30, tzinfo=UTC), "P3M", datetime(2025, 2, 28, tzinfo=UTC)),
        (datetime(2024, 1, 1, tzinfo=UTC), "P1M1D", datetime(2024, 2, 2, tzinfo=UTC)),
        (datetime(2024, 1, 1, tzinfo=UTC), "PT36H", datetime(2024, 1, 2, 12, tzinfo=UTC)),
        (datetime(2024, 1, 1, tzinfo=UTC), "P2W", datetime(2024, 1, 15, tzinfo=UTC)),
    ],
)
def test_pm_iii_6_add_period_clamps_calendar_months_like_cutoff(start, period, end):
    assert add_period(start, period) == end


def test_pm_iii_6_add_period_works_in_utc():
    start = datetime(2024, 3, 31, 1, 30, tzinfo=timezone(timedelta(hours=2)))  # 30 March 23:30 UTC
    assert add_period(start, "P1M") == datetime(2024, 4, 30, 23, 30, tzinfo=UTC)


def test_pm_iii_6_add_period_undoes_cutoff_when_no_day_clamps():
    now = datetime(2025, 6, 10, 8, 0, tzinfo=UTC)
    assert add_period(cutoff(now, "P13M"), "P13M") == now


def test_pm_iii_6_add_period_refuses_bad_and_endless_periods():
    with pytest.raises(ValidationError):
        add_period(datetime(2024, 1, 1, tzinfo=UTC), "13 months")
    with pytest.raises(ValidationError, match="9999"):
        add_period(datetime(9999, 6, 1, tzinfo=UTC), "P1Y")
