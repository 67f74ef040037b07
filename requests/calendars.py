"""Public-holiday calendars for the deadline rules, from the `holidays` package (see requests.deadlines).

Its own module so that the model's validation (DeadlineRule.clean) and the clock both use it without the
model importing the clock, which imports the model.
"""

from __future__ import annotations

import functools

import holidays


def holiday_calendar_error(code: str) -> str | None:
    """Why `code` ("SG", "US-CA") names no calendar of the `holidays` package; None when it names one."""
    country, _, subdivision = code.partition("-")
    supported = holidays.list_supported_countries()
    if country not in supported:
        return f"{code!r}: the holidays package has no calendar for the country {country!r}."
    if subdivision and subdivision not in supported[country]:
        regions = ", ".join(supported[country])
        return f"{code!r}: the holidays package knows no region {subdivision!r} of {country} (one of: {regions})."
    return None


@functools.cache
def holiday_calendar(code: str) -> holidays.HolidayBase:
    # One calendar object per code for the process: it fills in each year the first time a date of it is
    # asked about, so a long-running worker never recomputes a year.
    country, _, subdivision = code.partition("-")
    return holidays.country_holidays(country, subdiv=subdivision or None)
