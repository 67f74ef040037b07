"""The Consents tile on the staff dashboard: recent events, GPC refusals, active restrictions, expiries and the
policy version with its notices, in a fixed number of queries (PM-0-2, PM-III-6, PM-IX-5, PM-X-2)."""

import datetime
import uuid

import pytest
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from consents import dashboard
from consents.ledger import consent_record
from consents.models import ProcessingRestriction
from policies.models import PolicyNoticeDelivery
from privacyops.dashboard import tiles_for
from tests.factories.accounts import UserFactory
from tests.factories.consents import ConsentPurposeFactory, PolicyVersionFactory, purpose_with_notice
from tests.factories.inventory import staff_in_role

pytestmark = pytest.mark.django_db

KEY = "consents.consents"


def _tile(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return next((t for t in tiles_for(request) if t.key == KEY), None)


def _flag(tile, words):
    return next((f for f in tile.flags if words in f.label), None)


@pytest.fixture
def purpose():
    return purpose_with_notice("marketing-communications", lifetime="P13M")


def _events(purpose, n, *, action="given", method="banner"):
    return [consent_record(visitor_id=uuid.uuid4(), purpose=purpose, action=action, method=method) for _ in range(n)]


def test_the_tile_is_shown_to_ledger_readers_only():
    assert _tile(staff_in_role("Support agent")) is None
    for role in ("DPO", "Privacy analyst", "Auditor"):
        assert _tile(staff_in_role(role)).title == "Consents"


def test_pm_0_2_the_tile_counts_last_weeks_events_by_action(purpose):
    _events(purpose, 3)
    _events(purpose, 2, action="refused")

    tile = _tile(staff_in_role("DPO"))

    assert tile.value == 5
    assert _flag(tile, "given in 7 days").count == 3
    assert _flag(tile, "refused in 7 days").count == 2
    assert _flag(tile, "withdrawn") is None


def test_only_events_of_the_last_seven_days_count(purpose):
    _events(purpose, 2)
    by_action, _gpc, capped = dashboard.recent_event_counts(now=timezone.now() + datetime.timedelta(days=8))
    assert sum(by_action.values()) == 0 and not capped


def test_recent_events_are_read_from_a_bounded_window_of_the_ledger(purpose):
    _events(purpose, 5)
    by_action, _gpc, capped = dashboard.recent_event_counts(now=timezone.now(), window=3)
    assert by_action["given"] == 3 and capped


def test_pm_iii_6_gpc_refusals_are_shown(purpose):
    consent_record(visitor_id=uuid.uuid4(), purpose=purpose, action="refused", method="gpc", gpc=True)
    _events(purpose, 1, action="refused")
    flag = _flag(_tile(staff_in_role("Auditor")), "Global Privacy Control")
    assert flag.count == 1 and "method__exact=gpc" in flag.url


def test_pm_ix_5_active_restrictions_and_objections_are_counted(purpose):
    subject = UserFactory()
    now = timezone.now()
    ProcessingRestriction.objects.create(subject=subject, kind="restriction", reason="accuracy contested")
    ProcessingRestriction.objects.create(subject=subject, kind="objection", reason="no marketing")
    ProcessingRestriction.objects.create(subject=subject, kind="objection", reason="old", lifted_at=now)
    ProcessingRestriction.objects.create(
        subject=subject, kind="objection", reason="later", starts_at=now + datetime.timedelta(days=3)
    )

    tile = _tile(staff_in_role("DPO"))

    assert _flag(tile, "active restrictions").count == 1
    assert _flag(tile, "active objections").count == 1


def test_consents_expiring_within_thirty_days_and_overdue_ones_are_flagged(purpose):
    now = timezone.now()
    soon = now - datetime.timedelta(days=365 + 10)  # P13M is about 395 days: expires in about 20 days
    overdue = now - datetime.timedelta(days=500)
    fresh = now - datetime.timedelta(days=30)
    for effective_at in (soon, soon, overdue, fresh):
        consent_record(visitor_id=uuid.uuid4(), purpose=purpose, action="given", method="banner", effective_at=effective_at)
    withdrawn = uuid.uuid4()  # expiring soon, but withdrawn since: nothing left to expire
    consent_record(visitor_id=withdrawn, purpose=purpose, action="given", method="banner", effective_at=soon)
    consent_record(visitor_id=withdrawn, purpose=purpose, action="withdrawn", method="banner")
    necessary = ConsentPurposeFactory(code="cookies-necessary", is_necessary=True, cookie_category="necessary", lifetime="P1D")
    consent_record(visitor_id=uuid.uuid4(), purpose=necessary, action="given", method="api", effective_at=overdue)

    assert dashboard.expiry_counts(now=now) == (2, 1)
    tile = _tile(staff_in_role("DPO"))
    assert _flag(tile, "expiring in the next 30 days").count == 2
    overdue_flag = _flag(tile, "past their lifetime")
    assert overdue_flag.count == 1 and overdue_flag.severity == "amber"


def test_pm_x_2_the_tile_shows_the_policy_in_force_and_how_far_the_next_ones_notices_went():
    now = timezone.now()
    PolicyVersionFactory(label="2025-04-25", effective_at=now - datetime.timedelta(days=300), published_at=now)
    upcoming = PolicyVersionFactory(label="2026-01-01", effective_at=now + datetime.timedelta(days=40), published_at=now)
    notified, failed, _waiting = UserFactory(), UserFactory(), UserFactory()
    PolicyNoticeDelivery.objects.create(version=upcoming, user=notified, status="sent")
    PolicyNoticeDelivery.objects.create(version=upcoming, user=failed, status="failed")

    tile = _tile(staff_in_role("DPO"))

    assert "policy 2025-04-25 in force" in tile.description
    assert f"2026-01-01 takes effect {timezone.localtime(upcoming.effective_at):%Y-%m-%d}" in tile.description
    assert "1 account holders still to notify of 2026-01-01" in tile.description  # `_waiting`; staff get no notice
    assert _flag(tile, "2026-01-01 notices: e-mail sent").count == 1
    assert _flag(tile, "2026-01-01 notices: e-mail refused or failed").severity == "amber"
    assert tile.severity == "ok"  # the version is not in force yet: there is still time to notify


def test_pm_x_2_account_holders_not_notified_of_a_version_in_force_turn_the_tile_amber():
    now = timezone.now()
    PolicyVersionFactory(label="2025-04-25", effective_at=now - datetime.timedelta(days=300), published_at=now)
    PolicyVersionFactory(label="2025-09-01", effective_at=now - datetime.timedelta(days=1), published_at=now)
    UserFactory()
    tile = _tile(staff_in_role("DPO"))
    assert "1 account holders still to notify of 2025-09-01" in tile.description and tile.severity == "amber"


def test_pm_x_1_no_policy_in_force_is_red():
    tile = _tile(staff_in_role("DPO"))
    assert "no published privacy policy version is in force" in tile.description
    assert tile.worst_severity == "red"


def test_every_flag_opens_the_list_of_exactly_the_rows_it_counts(client, purpose):
    now = timezone.now()
    _events(purpose, 3)
    _events(purpose, 1, action="refused")
    consent_record(visitor_id=uuid.uuid4(), purpose=purpose, action="refused", method="gpc", gpc=True)
    for days in (375, 500):  # one expiring soon, one overdue
        consent_record(
            visitor_id=uuid.uuid4(),
            purpose=purpose,
            action="given",
            method="banner",
            effective_at=now - datetime.timedelta(days=days),
        )
    subject = UserFactory()
    ProcessingRestriction.objects.create(subject=subject, kind="objection", reason="no marketing")
    ProcessingRestriction.objects.create(subject=subject, kind="objection", reason="old", lifted_at=now)
    PolicyVersionFactory(label="2025-04-25", effective_at=now - datetime.timedelta(days=300), published_at=now)
    upcoming = PolicyVersionFactory(label="2026-01-01", effective_at=now + datetime.timedelta(days=40), published_at=now)
    PolicyNoticeDelivery.objects.create(version=upcoming, user=subject, status="sent")
    PolicyNoticeDelivery.objects.create(version=upcoming, user=UserFactory(), status="failed")
    dpo = staff_in_role("DPO")
    client.force_login(dpo)

    tile = _tile(dpo)

    assert len(tile.flags) >= 8
    for flag in tile.flags:
        response = client.get(flag.url)
        assert response.status_code == 200, flag.url
        assert response.context["cl"].result_count == flag.count, flag
    assert client.get(tile.url).context["cl"].result_count == tile.value


def test_the_tile_takes_a_fixed_number_of_queries_whatever_the_ledger_holds(purpose):
    dpo = staff_in_role("DPO")
    PolicyVersionFactory(
        label="2025-04-25", effective_at=timezone.now() - datetime.timedelta(days=1), published_at=timezone.now()
    )
    _events(purpose, 2)

    def queries():
        with CaptureQueriesContext(connection) as ctx:
            assert _tile(dpo) is not None
        return [q["sql"] for q in ctx.captured_queries if "consents_" in q["sql"] or "accounts_" in q["sql"]]

    queries()  # the user's permissions are read once, then cached on the user
    few = len(queries())
    _events(purpose, 20)
    _events(purpose, 5, action="refused")
    ProcessingRestriction.objects.create(subject=UserFactory(), kind="objection", reason="no marketing")
    assert len(queries()) == few


def test_the_tile_renders_on_the_admin_index(client, purpose):
    _events(purpose, 1)
    client.force_login(staff_in_role("DPO"))
    page = client.get("/admin/").content.decode()
    assert 'data-tile="consents.consents"' in page and "consent events in the last 7 days" in page
