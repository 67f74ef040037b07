"""Consents past their lifetime expire and are asked again (issue 4 §1; PM-III-6 for the cookie categories).

The expired event is written once per consent however often (or however concurrently) the job runs, is
dated when the consent lapsed, and never touches a state that changed after the consent was given."""

import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from consents.lapse import consent_lapsed
from consents.ledger import consent_record, state_from_ledger, state_of, visitor_link
from consents.models import ConsentEvent, ConsentState
from consents.services import consent_expire, consent_expire_due, expiry_candidates
from consents.tasks import due_consents_expire
from privacyops.models import AuditEvent
from retention.periods import add_period
from tests.factories.accounts import UserFactory
from tests.factories.consents import purpose_with_notice

pytestmark = pytest.mark.django_db

LONG_AGO = timedelta(days=430)  # past a 13-month lifetime
RECENTLY = timedelta(days=30)


@pytest.fixture
def analytics(db):
    return purpose_with_notice("cookies-analytics", cookie_category="analytics", lifetime="P13M")


@pytest.fixture
def marketing(db):
    return purpose_with_notice("marketing-communications")  # no lifetime: lasts until withdrawn


def _give(purpose, ago, **principal):
    return consent_record(purpose=purpose, action="given", method="banner", effective_at=timezone.now() - ago, **principal)


def _expired(purpose):
    return ConsentEvent.objects.filter(purpose=purpose, action="expired")


def test_pm_iii_6_expiry_writes_one_expired_event_per_lapsed_consent_even_when_run_twice(analytics):
    user, visitor = UserFactory(), uuid.uuid4()
    given_by_user = _give(analytics, LONG_AGO, subject=user)
    _give(analytics, LONG_AGO, visitor_id=visitor)
    _give(analytics, RECENTLY, subject=UserFactory())

    assert consent_expire_due() == 2
    assert consent_expire_due() == 0

    assert _expired(analytics).count() == 2
    event = _expired(analytics).get(subject_ref=user.subject_ref)
    assert (event.method, event.notice_id) == ("expiry", given_by_user.notice_id)
    assert event.effective_at == add_period(given_by_user.effective_at, "P13M")  # when it lapsed, not when the job ran
    assert ConsentState.objects.get(subject_ref=user.subject_ref, purpose=analytics).action == "expired"
    assert state_of(subject_ref=user.subject_ref) == state_from_ledger(subject_ref=user.subject_ref)
    assert AuditEvent.objects.filter(action="consent.expired", subject_ref=user.subject_ref).count() == 1
    assert AuditEvent.objects.get(action="consent.expired_due").details["expired"] == 2


def test_pm_iii_6_a_consent_given_again_after_the_old_one_is_left_alone(analytics):
    user = UserFactory()
    _give(analytics, LONG_AGO, subject=user)
    _give(analytics, RECENTLY, subject=user)
    withdrawn = UserFactory()
    _give(analytics, LONG_AGO, subject=withdrawn)
    consent_record(purpose=analytics, action="withdrawn", method="portal", subject=withdrawn)

    assert consent_expire_due() == 0
    assert not _expired(analytics).exists()


def test_pm_iii_6_a_state_that_changes_between_reading_and_expiring_is_left_alone(analytics):
    user = UserFactory()
    _give(analytics, LONG_AGO, subject=user)
    now = timezone.now()
    (candidate,) = expiry_candidates(purpose=analytics, now=now)

    renewed = consent_record(purpose=analytics, action="given", method="banner", subject=user)  # meanwhile, a new click

    assert consent_expire(purpose=analytics, candidate=candidate, now=now) is None
    assert ConsentState.objects.get(subject_ref=user.subject_ref, purpose=analytics).event == renewed
    assert not _expired(analytics).exists()


def test_pm_iii_6_purposes_without_a_lifetime_never_expire(marketing):
    _give(marketing, timedelta(days=3000), subject=UserFactory())
    assert consent_expire_due() == 0


def test_pm_iii_6_small_batches_still_reach_every_lapsed_consent(analytics):
    for _ in range(5):
        _give(analytics, LONG_AGO, subject=UserFactory())
    assert consent_expire_due(batch_size=2) == 5


def test_pm_iii_6_a_visitors_consent_inherited_by_an_account_expires_once_on_the_visitors_chain(analytics):
    user, visitor = UserFactory(), uuid.uuid4()
    given = _give(analytics, LONG_AGO, visitor_id=visitor)
    visitor_link(visitor_id=visitor, subject=user, method="signin")
    assert ConsentState.objects.get(subject_ref=user.subject_ref, purpose=analytics).event == given

    assert consent_expire_due() == 1

    event = _expired(analytics).get()
    assert (event.visitor_id, event.subject_ref) == (visitor, None)
    assert ConsentState.objects.get(subject_ref=user.subject_ref, purpose=analytics).event == event
    assert state_of(subject_ref=user.subject_ref) == state_from_ledger(subject_ref=user.subject_ref)
    assert state_of(visitor_id=visitor) == state_from_ledger(visitor_id=visitor)


def test_pm_iii_6_a_lifetime_ends_on_the_clamped_calendar_day(db):
    purpose = purpose_with_notice("cookies-functionality", cookie_category="functionality", lifetime="P1M")
    user = UserFactory()
    given_at = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)
    consent_record(purpose=purpose, action="given", method="banner", subject=user, effective_at=given_at)
    lapse = datetime(2025, 2, 28, 12, 0, tzinfo=UTC)

    assert not consent_lapsed(given_at=given_at, lifetime=purpose.lifetime, at=lapse - timedelta(seconds=1))
    assert consent_expire_due(now=lapse - timedelta(seconds=1)) == 0
    assert consent_lapsed(given_at=given_at, lifetime=purpose.lifetime, at=lapse)
    assert consent_expire_due(now=lapse) == 1
    assert _expired(purpose).get().effective_at == lapse


def test_pm_iii_6_a_purpose_with_an_unreadable_lifetime_is_logged_and_the_others_still_expire(analytics, caplog):
    broken = purpose_with_notice("cookies-functionality", cookie_category="functionality", lifetime="13 months")
    _give(broken, LONG_AGO, subject=UserFactory())
    _give(analytics, LONG_AGO, subject=UserFactory())
    with caplog.at_level(logging.ERROR, logger="consents.services"):
        assert consent_expire_due() == 1
    assert "cookies-functionality" in caplog.text


def test_pm_iii_6_the_daily_task_runs_the_expiry(analytics):
    _give(analytics, LONG_AGO, subject=UserFactory())
    assert due_consents_expire.delay().get() == 1


@pytest.mark.postgres
def test_pm_iii_6_two_expiry_runs_at_once_expire_each_consent_once(transactional_db):
    purpose = purpose_with_notice("cookies-analytics", cookie_category="analytics", lifetime="P13M")
    users = [UserFactory() for _ in range(6)]
    for user in users:
        _give(purpose, LONG_AGO, subject=user)
    for _ in range(4):
        _give(purpose, LONG_AGO, visitor_id=uuid.uuid4())
    start = threading.Barrier(2)
    results, errors = [], []

    def run():
        try:
            start.wait()
            results.append(consent_expire_due(batch_size=3))
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert sum(results) == 10
    assert _expired(purpose).count() == 10
    assert all(state_of(subject_ref=u.subject_ref) == state_from_ledger(subject_ref=u.subject_ref) for u in users)
