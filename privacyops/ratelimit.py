"""Rate limits kept in the cache (locmem in embedded mode, Redis otherwise): re-authentication failures, public
intake forms.

A sliding-window counter: each key counts hits in fixed windows, and the current estimate is this window's
count plus the previous window's count weighted by how much of it still overlaps the last `window_seconds`.
So a burst at the end of one window and the start of the next is not let through twice over (a plain fixed
window would allow 2 x limit across the boundary), at the cost of two counters per key instead of a log of
timestamps.

Invariants:
- A refused hit is not counted: the limit is the number of hits allowed per window, and a client that
  keeps trying while refused is let in again as its old hits age out (re-auth failures refuse before the
  password is even checked, so a refused try costs the attacker nothing and tells them nothing).
- Counting is increment-first (one atomic INCR), then the estimate: two racing hits at the limit may both
  be refused, never both allowed.
- Keys are hashed: the cache never holds an e-mail address or a client address in clear.
- The cache is not durable: a restart of locmem (or a Redis flush) forgets counters. That errs on the side
  of the user, which is acceptable for throttles whose job is to make guessing slow, not to keep records.
"""

from __future__ import annotations

import contextlib
import hashlib
import time

from django.core.cache import cache

_now = time.time  # the tests move the clock through this


def _keys(key: str, window_seconds: int, now: float) -> tuple[str, str, float]:
    digest = hashlib.sha256(f"{window_seconds}:{key}".encode()).hexdigest()[:32]
    index = int(now // window_seconds)
    # Weight of the previous window: the part of it still inside the last `window_seconds`.
    weight = 1.0 - (now % window_seconds) / window_seconds
    return f"ratelimit:{digest}:{index - 1}", f"ratelimit:{digest}:{index}", weight


def _estimate(previous: int, current: int, weight: float) -> float:
    return previous * weight + current


def rate_limit_hit(*, key: str, limit: int, window_seconds: int) -> bool:
    """Count one hit on `key`; True when it is within `limit` hits per `window_seconds` (allowed), False when
    it is over (refused, and not counted)."""
    if limit < 1 or window_seconds < 1:
        raise ValueError("A rate limit needs a limit and a window of at least 1.")
    previous_key, current_key, weight = _keys(key, window_seconds, _now())
    # The previous window's counter must outlive its own window by one more, to be weighted.
    cache.add(current_key, 0, timeout=2 * window_seconds)
    try:
        current = cache.incr(current_key)
    except ValueError:
        # The counter expired between add and incr (or was evicted): start it again.
        cache.add(current_key, 0, timeout=2 * window_seconds)
        current = cache.incr(current_key)
    previous = cache.get(previous_key) or 0
    if _estimate(previous, current, weight) > limit:
        with contextlib.suppress(ValueError):  # expired meanwhile: nothing left to take back
            cache.decr(current_key)
        return False
    return True


def rate_limit_exceeded(*, key: str, limit: int, window_seconds: int) -> bool:
    """True when one more hit on `key` would be refused; counts nothing (to refuse before doing the work)."""
    previous_key, current_key, weight = _keys(key, window_seconds, _now())
    counts = cache.get_many([previous_key, current_key])
    return _estimate(counts.get(previous_key, 0), counts.get(current_key, 0), weight) + 1 > limit


def rate_limit_reset(*, key: str, window_seconds: int) -> None:
    """Forget the hits on `key` (after a success, its failures no longer count)."""
    previous_key, current_key, _ = _keys(key, window_seconds, _now())
    cache.delete_many([previous_key, current_key])
