"""Property: the state cache always equals the ledger (PM-0-2).

Random sequences of consent events for accounts and visitors -- effective times that tie, arrive out of
order or are backdated, answers through `consent_set` as the UIs send them, and visitor ids joined to
accounts at random points -- and after every single step, for every principal, `ConsentState` must be
exactly what `state_from_ledger` computes from the ledger alone.
"""

import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consents.ledger import consent_record, state_from_ledger, state_of, visitor_link
from consents.services import consent_set
from tests.factories.accounts import UserFactory
from tests.factories.consents import purpose_with_notice

pytestmark = pytest.mark.django_db

ACCOUNTS = 2
VISITORS = 3
PRINCIPALS = ACCOUNTS + VISITORS

# Effective times on a coarse grid (six hours apart over four days) so that ties are common; any order.
moments = st.integers(0, 16)
events = st.tuples(
    st.just("event"),
    st.integers(0, PRINCIPALS - 1),
    st.integers(0, 1),
    st.sampled_from(["given", "refused", "withdrawn", "expired"]),
    moments,
)
choices = st.tuples(st.just("set"), st.integers(0, PRINCIPALS - 1), st.integers(0, 1), st.booleans())
links = st.tuples(st.just("link"), st.integers(0, VISITORS - 1), st.integers(0, ACCOUNTS - 1))
steps = st.lists(st.one_of(events, events, choices, links), min_size=1, max_size=18)


@pytest.fixture
def world(db):
    return {
        "purposes": [
            purpose_with_notice("marketing-communications"),
            purpose_with_notice("cookies-analytics", cookie_category="analytics", lifetime="P13M"),
        ],
        "accounts": [UserFactory() for _ in range(ACCOUNTS)],
    }


def _principal(index, accounts, visitors):
    return {"subject": accounts[index]} if index < ACCOUNTS else {"visitor_id": visitors[index - ACCOUNTS]}


def _assert_state_equals_ledger(accounts, visitors, step):
    for account in accounts:
        assert state_of(subject_ref=account.subject_ref) == state_from_ledger(subject_ref=account.subject_ref), step
    for visitor in visitors:
        assert state_of(visitor_id=visitor) == state_from_ledger(visitor_id=visitor), step


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=steps)
def test_pm_0_2_state_always_equals_the_ledger(world, steps):
    purposes, accounts = world["purposes"], world["accounts"]
    with transaction.atomic():
        visitors = [uuid.uuid4() for _ in range(VISITORS)]
        base = timezone.now() - timedelta(days=5)
        for step in steps:
            kind = step[0]
            if kind == "event":
                _, who, which, action, moment = step
                consent_record(
                    purpose=purposes[which],
                    action=action,
                    method="expiry" if action == "expired" else "api",
                    effective_at=base + timedelta(hours=6 * moment),
                    **_principal(who, accounts, visitors),
                )
            elif kind == "set":
                _, who, which, agree = step
                consent_set(choices={purposes[which].code: agree}, method="portal", **_principal(who, accounts, visitors))
            else:
                _, visitor, account = step
                visitor_link(visitor_id=visitors[visitor], subject=accounts[account], method="signin")
            _assert_state_equals_ledger(accounts, visitors, step)
        transaction.set_rollback(True)
