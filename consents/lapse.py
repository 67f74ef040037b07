"""When a consent lapses: the one rule every reader and the expiry job use (PM-III-6).

A consent given at `given_at` for a purpose with lifetime P lapses at `consent_lapses_at` =
`retention.periods.add_period(given_at, P)`: calendar months first, clamped to the month's last day
(31 Jan + P1M = 28 Feb), then the fixed part, counted in UTC whatever zone `given_at` is in. It has
lapsed at `at` when `consent_lapses_at <= at`: at the exact instant it no longer counts. A purpose
without a lifetime never lapses. The clock starts at the event's effective time, not when it was
recorded, so a backdated consent (an import, a client's effective_at) may arrive already lapsed.

A lifetime that cannot be read (the model validates it, so only a raw database edit gets one) or that
reaches past year 9999 fails closed: the consent counts as lapsed from the moment it was given, and
the error is logged. Readers therefore say "not given"; the expiry job, which would write `expired`
events, skips such a purpose instead (a typo must not rewrite the ledger).

Before this module, decisions, the choice service and the dashboard each did this arithmetic, with an
unreadable lifetime failing three ways and the dashboard counting from a clamped cut-off that disagreed
with the others near month ends and at the exact instant.
"""

from __future__ import annotations

import datetime
import logging

from django.core.exceptions import ValidationError

from retention.periods import add_period

logger = logging.getLogger(__name__)

_UTC = datetime.UTC
# add_period(t) moves by less than this much more than the period's nominal length (month clamping).
_SEARCH_SPAN = datetime.timedelta(days=4)
_TICK = datetime.timedelta(microseconds=1)


class LifetimeUnreadable(ValueError):
    """A purpose's lifetime is not an ISO 8601 duration the periods parser accepts (or overflows)."""


def lifetime_end(given_at: datetime.datetime, lifetime: str) -> datetime.datetime | None:
    """Strict form: when a consent given at `given_at` lapses; None without a lifetime. Raises
    LifetimeUnreadable when the lifetime cannot be read (the expiry job uses this and skips the purpose)."""
    if not (lifetime or "").strip():
        return None
    try:
        return add_period(given_at, lifetime)
    except ValidationError as exc:
        raise LifetimeUnreadable(f"lifetime {lifetime!r}: {'; '.join(exc.messages)}") from None


def consent_lapses_at(*, given_at: datetime.datetime, lifetime: str) -> datetime.datetime | None:
    """When a consent given at `given_at` stops counting (None: never). Fails closed on an unreadable lifetime."""
    try:
        return lifetime_end(given_at, lifetime)
    except LifetimeUnreadable:
        logger.error("consent purpose lifetime %r is not an ISO 8601 duration: its consents count as lapsed", lifetime)
        return given_at.astimezone(_UTC) if given_at.tzinfo else given_at


def consent_lapsed(*, given_at: datetime.datetime, lifetime: str, at: datetime.datetime) -> bool:
    """True when a consent given at `given_at` no longer counts at `at` (the lapse instant included)."""
    ends = consent_lapses_at(given_at=given_at, lifetime=lifetime)
    return ends is not None and ends <= at


def lapsed_if_given_by(*, lifetime: str, at: datetime.datetime) -> datetime.datetime | None:
    """The latest given time whose consent has lapsed at `at`, for queries: `effective_at <= bound` selects
    exactly the lapsed ones (add_period only grows with its start, so the lapsed ones are a prefix).
    None without a lifetime. Raises LifetimeUnreadable (a query cannot fail closed row by row)."""
    if not (lifetime or "").strip():
        return None
    at = at.astimezone(_UTC)
    # Bracket the answer: `low` has lapsed, `high` has not, then halve to the microsecond (about 40 steps).
    first = lifetime_end(at, lifetime)
    nominal = first - at
    low, high = at - nominal - _SEARCH_SPAN, at - nominal + _SEARCH_SPAN
    while lifetime_end(low, lifetime) > at:
        low -= _SEARCH_SPAN
    while lifetime_end(high, lifetime) <= at:
        high += _SEARCH_SPAN
    while high - low > _TICK:
        middle = low + (high - low) / 2
        if lifetime_end(middle, lifetime) <= at:
            low = middle
        else:
            high = middle
    return low
