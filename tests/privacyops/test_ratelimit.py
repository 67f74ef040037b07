"""privacyops.ratelimit: a sliding-window counter in the cache (locmem here, Redis when REDIS_URL is set),
behind re-authentication and the public intake forms (issue 5 §3)."""

import pytest
from django.core.cache import cache

from privacyops import ratelimit
from privacyops.ratelimit import rate_limit_exceeded, rate_limit_hit, rate_limit_reset

WINDOW = 900


@pytest.fixture
def clock(monkeypatch):
    """The rate limiter's clock, moved by hand; starts at the beginning of a window."""
    now = {"t": 1_000 * WINDOW}
    monkeypatch.setattr(ratelimit, "_now", lambda: now["t"])

    def move(seconds):
        now["t"] += seconds

    return move


def hits(key, n, limit=5):
    return [rate_limit_hit(key=key, limit=limit, window_seconds=WINDOW) for _ in range(n)]


def test_allows_up_to_the_limit_then_refuses(clock):
    assert hits("k", 7) == [True] * 5 + [False, False]


def test_keys_are_counted_apart(clock):
    hits("a", 5)
    assert hits("b", 1) == [True]
    assert hits("a", 1) == [False]


def test_the_same_key_with_another_window_is_another_limit(clock):
    hits("k", 5)
    assert rate_limit_hit(key="k", limit=5, window_seconds=60) is True


def test_refused_hits_are_not_counted(clock):
    hits("k", 5)
    hits("k", 50)  # all refused
    clock(2 * WINDOW)
    assert hits("k", 5) == [True] * 5


def test_the_previous_window_still_counts_at_the_start_of_the_next(clock):
    """A burst at a window's end and the next one's start is not let through twice (a fixed window would)."""
    clock(WINDOW - 1)
    hits("k", 5)
    clock(2)
    assert hits("k", 1) == [False]


def test_old_hits_age_out_as_the_window_slides(clock):
    hits("k", 5)
    clock(WINDOW + WINDOW // 2)  # half of the previous window still overlaps: 2.5 hits remain
    assert hits("k", 3) == [True, True, False]


def test_exceeded_peeks_without_counting(clock):
    hits("k", 4)
    assert rate_limit_exceeded(key="k", limit=5, window_seconds=WINDOW) is False
    assert rate_limit_exceeded(key="k", limit=5, window_seconds=WINDOW) is False
    hits("k", 1)
    assert rate_limit_exceeded(key="k", limit=5, window_seconds=WINDOW) is True


def test_reset_forgets_the_hits(clock):
    hits("k", 5)
    rate_limit_reset(key="k", window_seconds=WINDOW)
    assert hits("k", 1) == [True]


def test_a_counter_evicted_between_add_and_incr_starts_again(clock, monkeypatch):
    real_add = cache.add
    calls = {"n": 0}

    def add_that_loses_the_first(key, value, timeout=None):
        calls["n"] += 1
        if calls["n"] == 1:
            return True  # pretend it was stored; incr then finds nothing
        return real_add(key, value, timeout=timeout)

    monkeypatch.setattr(ratelimit.cache, "add", add_that_loses_the_first)
    assert rate_limit_hit(key="evicted", limit=1, window_seconds=WINDOW) is True


def test_keys_are_stored_hashed(clock):
    """The cache never holds an address in clear."""
    hits("reauth:user@example.org", 1)
    _, current_key, _ = ratelimit._keys("reauth:user@example.org", WINDOW, 1_000 * WINDOW)
    assert "example.org" not in current_key
    assert cache.get(current_key) == 1


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError):
        rate_limit_hit(key="k", limit=0, window_seconds=WINDOW)
