"""The decision cache: keyed by the subject's chain version, read from the database on every check, so a check
that starts after a withdrawal (or restriction, or objection) has committed never answers "allowed"
(PM-III-6, PM-IX-5, PM-IX-6). On the PostgreSQL leg the cache is Redis and the threads are real
connections racing a real writer.
"""

from __future__ import annotations

import datetime
import threading
import time
import uuid

import pytest
from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

import consents.decisions as decisions
from consents import lapse
from consents.decisions import CACHE_PREFIX, decision_cache_clear, is_processing_allowed, is_processing_allowed_many
from consents.ledger import consent_record, visitor_link
from consents.models import ConsentPurpose
from consents.services import consent_expire_due, restriction_lift, restriction_place
from inventory.models import PurposeBasis
from tests.factories.accounts import UserFactory

MARKETING = "marketing-communications"


@pytest.fixture(autouse=True)
def clean_cache():
    decision_cache_clear()
    yield
    decision_cache_clear()


def give(user, code=MARKETING, **kwargs):
    return consent_record(purpose=ConsentPurpose.objects.get(code=code), action="given", method="api", subject=user, **kwargs)


def withdraw(user, code=MARKETING):
    return consent_record(purpose=ConsentPurpose.objects.get(code=code), action="withdrawn", method="api", subject=user)


def cached_keys(user) -> list[str]:
    """The decision keys about a subject that the cache holds (locmem and Redis both list them)."""
    stored = cache.make_key(f"{CACHE_PREFIX}:{user.subject_ref.hex}:")  # how the backend names it
    if isinstance(getattr(cache, "_cache", None), dict):  # locmem
        keys = [key for key in cache._cache if key.startswith(stored)]
    else:  # django's RedisCache
        keys = [key.decode() for key in cache._cache.get_client(write=False).keys(f"{stored}*")]
    prefix = cache.make_key("")
    return [key.removeprefix(prefix) for key in keys]


# --- The race --------------------------------------------------------------------------------------------------

READERS = 4
ROUNDS = 4
CHECKS_PER_PHASE = 40  # checks the readers make (together) after each commit before the writer moves on


class Race:
    """Readers loop on one question while a writer flips the answer; every check records when it started."""

    def __init__(self, ref: uuid.UUID, code: str):
        self.ref, self.code = ref, code
        self.checks: list[tuple[int, int, bool]] = []  # (started, ended, allowed)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

    def count(self) -> int:
        with self.lock:
            return len(self.checks)

    def reader(self):
        try:
            while not self.stop.is_set():
                started = time.monotonic_ns()
                allowed = is_processing_allowed(self.ref, self.code).allowed
                ended = time.monotonic_ns()
                with self.lock:
                    self.checks.append((started, ended, allowed))
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.errors.append(exc)
        finally:
            connection.close()

    def wait_for_checks(self, more: int) -> None:
        target = self.count() + more
        deadline = time.monotonic() + 120  # a guard against a hang, not a measurement
        while self.count() < target:
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, "the readers stopped checking"
            time.sleep(0.001)

    def run(self, flips) -> list[tuple[str, int, int]]:
        """Run `flips` (callables returning the expected answer after them) in turn; returns, per flip, its
        expected answer, when the flip started and when it had committed."""
        threads = [threading.Thread(target=self.reader) for _ in range(READERS)]
        for thread in threads:
            thread.start()
        marks = []
        try:
            self.wait_for_checks(CHECKS_PER_PHASE)
            for flip in flips:
                began = time.monotonic_ns()
                expected = flip()  # commits before it returns
                committed = time.monotonic_ns()
                marks.append((expected, began, committed))
                self.wait_for_checks(CHECKS_PER_PHASE)
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(timeout=120)
            connection.close()
        assert not any(thread.is_alive() for thread in threads), "a reader hung"
        assert not self.errors, self.errors
        return marks


def stale_answers(race: Race, marks) -> list[tuple[int, bool, bool]]:
    """Checks that started after a flip had committed, ended before the next flip began, and answered otherwise.

    (A check that overlaps the next flip may rightly answer as of either side of it.)"""
    stale = []
    for index, (expected, _began, committed) in enumerate(marks):
        next_began = marks[index + 1][1] if index + 1 < len(marks) else None
        for started, ended, allowed in race.checks:
            if started > committed and (next_began is None or ended < next_began) and allowed is not expected:
                stale.append((index, allowed, expected))
    return stale


def judged(race: Race, marks, index: int) -> int:
    """How many checks fell wholly between flip `index` committing and the next flip beginning."""
    committed = marks[index][2]
    next_began = marks[index + 1][1] if index + 1 < len(marks) else None
    return sum(1 for started, ended, _ in race.checks if started > committed and (next_began is None or ended < next_began))


@pytest.fixture
def register_committed(transactional_db):
    call_command("loadpolicy", verbosity=0)


def test_pm_iii_6_no_check_started_after_a_withdrawal_commits_answers_allowed(register_committed):
    """Runs on both legs; on the PostgreSQL leg with Redis as the cache (REDIS_URL), as production does."""
    user = UserFactory(country="DE", password=None)
    give(user)
    race = Race(user.subject_ref, MARKETING)

    def withdrawal():
        withdraw(user)
        return False

    def consent():
        give(user)
        return True

    marks = race.run([withdrawal, consent] * ROUNDS)
    assert stale_answers(race, marks) == []
    for index in range(len(marks)):  # every phase was really checked (a reader may straddle each flip)
        assert judged(race, marks, index) >= CHECKS_PER_PHASE - READERS
    # The cache was really in play: before the first withdrawal, readers were answered "allowed" many times.
    assert sum(1 for _started, ended, allowed in race.checks if allowed and ended < marks[0][1]) >= CHECKS_PER_PHASE


def test_pm_ix_5_no_check_started_after_an_objection_commits_answers_allowed(register_committed):
    user = UserFactory(country="GB", password=None)
    give(user)
    race = Race(user.subject_ref, "marketing")
    placed = []

    def objection():
        placed.append(restriction_place(actor=None, subject=user, kind="objection", reason="Art. 21(2)", purpose="marketing"))
        return False

    def lift():
        restriction_lift(actor=None, restriction=placed[-1], reason="Withdrawn by the subject")
        return True

    marks = race.run([objection, lift] * 2)
    assert stale_answers(race, marks) == []


@pytest.mark.postgres
@pytest.mark.redis
def test_pm_iii_6_the_production_leg_uses_redis_for_answers(register_committed):
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    user = UserFactory(country="FR", password=None)
    is_processing_allowed(user, "marketing")
    assert len(cached_keys(user)) == 1


# --- What invalidates, and what does not -----------------------------------------------------------------------


@pytest.fixture
def subject(db, seeded):
    return UserFactory(country="FR", password=None)


def test_pm_iii_6_consent_event_invalidates(subject):
    assert not is_processing_allowed(subject, MARKETING)
    give(subject)
    assert is_processing_allowed(subject, MARKETING)
    withdraw(subject)
    assert not is_processing_allowed(subject, MARKETING)


def test_pm_iii_6_linked_visitor_events_invalidate_the_account(subject):
    visitor = uuid.uuid4()
    visitor_link(visitor_id=visitor, subject=subject, method="signin")
    assert not is_processing_allowed(subject, "cookies-analytics")
    consent_record(purpose=ConsentPurpose.objects.get(code="cookies-analytics"), action="given", method="api", visitor_id=visitor)
    assert is_processing_allowed(subject, "cookies-analytics")


def test_pm_iii_6_visitor_link_invalidates(subject):
    visitor = uuid.uuid4()
    consent_record(purpose=ConsentPurpose.objects.get(code="cookies-analytics"), action="given", method="api", visitor_id=visitor)
    assert not is_processing_allowed(subject, "cookies-analytics")
    visitor_link(visitor_id=visitor, subject=subject, method="signup")
    assert is_processing_allowed(subject, "cookies-analytics")


def test_pm_ix_5_restriction_and_lift_invalidate(subject):
    assert is_processing_allowed(subject, "provide-service")
    restriction = restriction_place(actor=None, subject=subject, kind="restriction", reason="Accuracy contested")
    assert not is_processing_allowed(subject, "provide-service")
    restriction_lift(actor=None, restriction=restriction, reason="Accuracy verified")
    assert is_processing_allowed(subject, "provide-service")


def test_pm_iii_6_expiry_job_invalidates(subject):
    give(subject, "cookies-functionality", effective_at=timezone.now() - datetime.timedelta(days=500))
    assert not is_processing_allowed(subject, "cookies-functionality")  # lapsed before the job runs
    consent_expire_due()
    assert not is_processing_allowed(subject, "cookies-functionality")


def test_moving_country_changes_the_answer_at_once(subject):
    give(subject, MARKETING)
    withdraw(subject, MARKETING)
    assert not is_processing_allowed(subject, "marketing")
    type(subject).objects.filter(pk=subject.pk).update(country="US", region="US-CA")
    decision = is_processing_allowed(subject, "marketing")
    assert decision.jurisdiction == "US-CA" and decision.basis == "notice-opt-out"


def test_register_edits_reach_cached_answers_within_the_ttl(subject, settings):
    """Documented bound: a basis changed in the register is seen once the cached answer expires."""
    assert is_processing_allowed(subject, "model-improvement")
    row = PurposeBasis.objects.get(purpose__code="model-improvement", jurisdiction__isnull=True)
    row.basis = type(row.basis).objects.get(code="consent")
    row.save()
    assert is_processing_allowed(subject, "model-improvement")  # cached, at most CONSENT_CACHE_SECONDS
    decision_cache_clear()  # what the TTL does
    assert not is_processing_allowed(subject, "model-improvement")
    settings.CONSENT_CACHE_SECONDS = 0
    row.basis = type(row.basis).objects.get(code="legitimate-interests")
    row.save()
    assert is_processing_allowed(subject, "model-improvement")  # no cache: seen at once


def test_pm_iii_6_an_answer_is_cached_no_longer_than_the_consent_lasts(subject, monkeypatch):
    purpose = ConsentPurpose.objects.get(code="cookies-analytics")
    given_at = timezone.now() - datetime.timedelta(days=390)  # the 13-month lifetime ends in a few days
    give(subject, "cookies-analytics", effective_at=given_at)
    assert is_processing_allowed(subject, purpose)
    [key] = cached_keys(subject)
    ends = lapse.lifetime_end(given_at, purpose.lifetime)
    assert cache.get(key)["valid_until"] == pytest.approx(ends.timestamp())
    # Past the end, the cached "allowed" is not used: the same key now answers "expired", with no write.
    monkeypatch.setattr(decisions.timezone, "now", lambda: ends + datetime.timedelta(seconds=1))
    decision = is_processing_allowed(subject, purpose)
    assert not decision and "expired" in decision.reason


def test_a_check_at_a_given_moment_is_never_cached(subject):
    is_processing_allowed(subject, "marketing", at=timezone.now() - datetime.timedelta(days=1))
    assert cached_keys(subject) == []


def test_a_failing_cache_is_skipped(subject, monkeypatch):
    class Broken:
        def get_many(self, keys):
            raise ConnectionError("cache down")

        def set(self, *args, **kwargs):
            raise ConnectionError("cache down")

        def clear(self):
            pass

    monkeypatch.setattr(decisions, "cache", Broken())
    assert not is_processing_allowed(subject, MARKETING)
    give(subject)
    assert is_processing_allowed(subject, MARKETING)


# --- Queries ---------------------------------------------------------------------------------------------------


def test_cached_check_is_one_query(subject, django_assert_num_queries):
    give(subject)
    for code in ("marketing", MARKETING, "cookies-necessary", "model-improvement"):
        is_processing_allowed(subject, code)
        with django_assert_num_queries(1):  # the subject joined to its chain version
            is_processing_allowed(subject, code)


def test_cached_batch_is_one_query_whatever_its_size(subject, django_assert_num_queries):
    users = [subject, *(UserFactory(country=country, password=None) for country in ("SG", "CN", "US", "BR"))]
    checks = [(user, code) for user in users for code in ("marketing", MARKETING, "cookies-analytics", "provide-service")]
    is_processing_allowed_many(checks)
    with django_assert_num_queries(1):
        is_processing_allowed_many(checks)
    with django_assert_num_queries(1):
        is_processing_allowed_many(checks[:3])


def test_uncached_check_reads_a_bounded_number_of_queries(subject, django_assert_max_num_queries):
    give(subject)
    for code in ("marketing", MARKETING, "cookies-necessary", "cookies-analytics", "model-improvement"):
        decision_cache_clear()
        # subject + chain, consent purpose, register purpose, jurisdictions, bases (theirs, general),
        # restrictions, consent purposes carrying the consent, their states
        with django_assert_max_num_queries(9):
            is_processing_allowed(subject, code)


# --- The per-process copies (in front of Redis) -------------------------------------------------------------


def test_local_copies_are_bounded_and_expire_with_the_shared_entry(settings):
    settings.CONSENT_CACHE_SECONDS = 300
    copies = decisions._LocalCopies(size=3)
    for n in range(5):
        copies.put(f"k{n}", {"valid_until": 1000.0, "stored_at": 0.0, "n": n})
    assert set(copies.entries) == {"k2", "k3", "k4"}  # the least recently used went first
    assert copies.get_many({"k2", "k4", "k0"}, now=299.0) == {
        "k2": {"valid_until": 1000.0, "stored_at": 0.0, "n": 2},
        "k4": copies.entries["k4"][0],
    }
    assert copies.get_many({"k3"}, now=300.0) == {}  # stored_at + CONSENT_CACHE_SECONDS
    copies.put("soon", {"valid_until": 50.0, "stored_at": 0.0})
    assert copies.get_many({"soon"}, now=50.0) == {}  # or valid_until, if sooner


def test_local_copies_only_in_front_of_a_shared_cache():
    shared = not isinstance(caches["default"], LocMemCache)
    assert (decisions._local_copies() is not None) is shared
