"""PM-III-6: one rule for "has this consent lapsed", and every reader agrees with it.

The table covers the edges: the exact lapse instant, no lifetime, month-end clamping, a given time in
another zone, an unreadable lifetime (fails closed), and a backdated event. The last tests check that the
decision, the cookie check, the dashboard and the expiry job give the same answer at the same instant.
"""

import datetime
from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

import pytest

from consents import dashboard
from consents.decisions import decision_cache_clear, is_processing_allowed
from consents.lapse import LifetimeUnreadable, consent_lapsed, consent_lapses_at, lapsed_if_given_by, lifetime_end
from consents.ledger import consent_record
from consents.models import ConsentPurpose, ConsentState
from consents.services import consent_expire_due
from tests.factories.accounts import UserFactory
from tests.factories.consents import purpose_with_notice

T = datetime.datetime
TOKYO = ZoneInfo("Asia/Tokyo")

CASES = [
    # (lifetime, given_at, at, lapsed)
    ("P13M", T(2025, 1, 10, 9, 0, tzinfo=UTC), T(2026, 2, 10, 9, 0, tzinfo=UTC), True),  # the exact instant
    ("P13M", T(2025, 1, 10, 9, 0, tzinfo=UTC), T(2026, 2, 10, 8, 59, 59, 999999, tzinfo=UTC), False),  # a tick before
    ("", T(2000, 1, 1, tzinfo=UTC), T(2099, 1, 1, tzinfo=UTC), False),  # no lifetime: never
    ("  ", T(2000, 1, 1, tzinfo=UTC), T(2099, 1, 1, tzinfo=UTC), False),  # blank is no lifetime
    ("P1M", T(2025, 1, 31, 12, 0, tzinfo=UTC), T(2025, 2, 28, 12, 0, tzinfo=UTC), True),  # clamped to 28 Feb
    ("P1M", T(2025, 1, 31, 12, 0, tzinfo=UTC), T(2025, 2, 28, 11, 59, tzinfo=UTC), False),
    ("P1M", T(2024, 1, 31, 12, 0, tzinfo=UTC), T(2024, 2, 29, 12, 0, tzinfo=UTC), True),  # leap year
    ("P1D", T(2025, 3, 10, 0, 30, tzinfo=TOKYO), T(2025, 3, 10, 15, 30, tzinfo=UTC), True),  # zones: same instant
    ("P1D", T(2025, 3, 10, 0, 30, tzinfo=TOKYO), T(2025, 3, 10, 15, 29, tzinfo=UTC), False),
    ("PT1H", T(2025, 6, 1, 10, 0, tzinfo=UTC), T(2025, 6, 1, 11, 0, tzinfo=UTC), True),  # fixed part only
    ("P1Y", T(2020, 2, 29, 0, 0, tzinfo=UTC), T(2021, 2, 28, 0, 0, tzinfo=UTC), True),  # 29 Feb + 1 year
    ("13 months", T(2025, 1, 1, tzinfo=UTC), T(2025, 1, 1, tzinfo=UTC), True),  # unreadable: lapsed at once
    ("P9999Y", T(2025, 1, 1, tzinfo=UTC), T(2025, 1, 2, tzinfo=UTC), True),  # past year 9999: fails closed
]


@pytest.mark.parametrize(("lifetime", "given_at", "at", "lapsed"), CASES)
def test_pm_iii_6_the_lapse_rule_on_its_edges(lifetime, given_at, at, lapsed):
    assert consent_lapsed(given_at=given_at, lifetime=lifetime, at=at) is lapsed


@pytest.mark.parametrize(("lifetime", "given_at", "at", "lapsed"), [c for c in CASES if c[0].strip() and c[0][0] == "P"][:-1])
def test_pm_iii_6_the_query_bound_selects_exactly_the_lapsed(lifetime, given_at, at, lapsed):
    bound = lapsed_if_given_by(lifetime=lifetime, at=at)
    assert (given_at <= bound) is lapsed
    # The bound is tight to the microsecond: the next tick has not lapsed, the bound itself has.
    assert consent_lapsed(given_at=bound, lifetime=lifetime, at=at)
    assert not consent_lapsed(given_at=bound + timedelta(microseconds=1), lifetime=lifetime, at=at)


def test_pm_iii_6_the_strict_form_raises_on_an_unreadable_lifetime():
    with pytest.raises(LifetimeUnreadable):
        lifetime_end(T(2025, 1, 1, tzinfo=UTC), "13 months")
    with pytest.raises(LifetimeUnreadable):
        lapsed_if_given_by(lifetime="13 months", at=T(2025, 1, 1, tzinfo=UTC))
    assert consent_lapses_at(given_at=T(2025, 1, 1, tzinfo=UTC), lifetime="13 months") == T(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def functionality(db):
    return purpose_with_notice("cookies-functionality", cookie_category="functionality", lifetime="P1M")


def test_pm_iii_6_decision_dashboard_and_expiry_job_agree_at_the_clamped_instant(functionality, monkeypatch):
    user = UserFactory()
    given_at = T(2025, 1, 31, 12, 0, tzinfo=UTC)
    consent_record(purpose=functionality, action="given", method="banner", subject=user, effective_at=given_at)
    lapse = T(2025, 2, 28, 12, 0, tzinfo=UTC)

    before = lapse - timedelta(microseconds=1)
    assert bool(is_processing_allowed(user, functionality, at=before))
    assert dashboard.expiry_counts(now=before)[1] == 0
    assert consent_expire_due(now=before) == 0

    decision_cache_clear()
    assert not is_processing_allowed(user, functionality, at=lapse)
    assert dashboard.expiry_counts(now=lapse)[1] == 1
    assert consent_expire_due(now=lapse) == 1
    state = ConsentState.objects.get(subject_ref=user.subject_ref, purpose=functionality)
    assert (state.action, state.effective_at) == ("expired", lapse)


def test_pm_iii_6_a_backdated_consent_arrives_already_lapsed_everywhere(functionality):
    user = UserFactory()
    now = T(2025, 6, 1, 12, 0, tzinfo=UTC)
    given_at = T(2025, 4, 1, 12, 0, tzinfo=UTC)  # recorded now, effective two months ago, lifetime one month
    consent_record(purpose=functionality, action="given", method="import", subject=user, effective_at=given_at)

    assert not is_processing_allowed(user, functionality, at=now)
    assert dashboard.expiry_counts(now=now)[1] == 1
    assert consent_expire_due(now=now) == 1
    state = ConsentState.objects.get(subject_ref=user.subject_ref, purpose=functionality)
    assert state.effective_at == T(2025, 5, 1, 12, 0, tzinfo=UTC)  # dated when it lapsed, not when the job ran


def test_pm_iii_6_an_unreadable_lifetime_reads_as_lapsed_and_the_choice_service_does_not_fail(functionality):
    user = UserFactory()
    consent_record(purpose=functionality, action="given", method="banner", subject=user)
    ConsentPurpose.objects.filter(pk=functionality.pk).update(lifetime="13 months")  # only a raw edit gets past validation
    functionality.refresh_from_db()
    decision_cache_clear()

    assert not is_processing_allowed(user, functionality)
    assert consent_expire_due() == 0  # the job does not rewrite the ledger from a typo
    # Asking again works (it used to raise): the lapsed consent is given anew.
    from consents.services import consent_set

    written = consent_set(choices={functionality.code: True}, method="portal", subject=user)
    assert [e.action for e in written] == ["given"]
