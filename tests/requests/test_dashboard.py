"""The rights-request tiles on the staff dashboard: one per queue, counted as the list's filters count (PM-IX-9)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from privacyops.dashboard import tiles_for
from requests.models import HoldReason, Status
from tests.factories.inventory import staff_in_role
from tests.factories.requests import RightsRequestFactory

pytestmark = pytest.mark.django_db

KEYS = ("new", "awaiting_verification", "due_soon", "overdue", "on_hold", "mine")


def _tiles(user) -> dict:
    request = RequestFactory().get("/admin/")
    request.user = user
    return {t.key.removeprefix("requests."): t for t in tiles_for(request) if t.key.startswith("requests.")}


@pytest.fixture
def queues():
    """One request in each queue (and a closed, overdue one that is in none)."""
    dpo = staff_in_role("DPO")
    now = timezone.now()
    past = now - timedelta(days=40)
    RightsRequestFactory(status=Status.RECEIVED, due_at=now + timedelta(days=30))
    RightsRequestFactory(status=Status.AWAITING_VERIFICATION, due_at=now + timedelta(days=20), assignee=dpo)
    RightsRequestFactory(status=Status.IN_PROGRESS, due_at=now + timedelta(days=2), assignee=dpo)
    RightsRequestFactory(status=Status.IN_PROGRESS, received_at=past, due_at=now - timedelta(days=1), assignee=dpo)
    RightsRequestFactory(
        status=Status.ON_HOLD,
        held_from=Status.IN_PROGRESS,
        hold_reason=HoldReason.INTERNAL,
        due_at=now + timedelta(days=20),
        assignee=staff_in_role("Privacy analyst"),
    )
    RightsRequestFactory(status=Status.COMPLETED, received_at=past - timedelta(days=30), due_at=past)
    return dpo


def test_pm_ix_9_a_tile_per_queue_with_its_count_linking_to_its_filter(client, queues):
    dpo = queues
    tiles = _tiles(dpo)
    assert tuple(tiles) == KEYS
    assert {key: tile.value for key, tile in tiles.items()} == {
        "new": 1,  # open and nobody assigned
        "awaiting_verification": 1,
        "due_soon": 1,
        "overdue": 1,
        "on_hold": 1,
        "mine": 3,
    }
    changelist = reverse("admin:requests_rightsrequest_changelist")
    client.force_login(dpo)
    for key, tile in tiles.items():
        assert tile.url == f"{changelist}?queue={key}"
        listed = client.get(tile.url).context["cl"].result_count
        assert listed == tile.value, key  # the tile and the list it opens agree


def test_pm_ix_9_overdue_is_red_when_any_and_ok_when_none(queues):
    tiles = _tiles(queues)
    assert tiles["overdue"].worst_severity == "red"
    assert tiles["due_soon"].worst_severity == "amber"
    assert tiles["on_hold"].worst_severity == "info"
    RightsRequestFactory._meta.model.objects.filter(status=Status.IN_PROGRESS, due_at__lt=timezone.now()).update(
        due_at=timezone.now() + timedelta(days=30)
    )
    assert _tiles(queues)["overdue"].worst_severity == "ok"


def test_who_sees_which_tiles():
    assert set(_tiles(staff_in_role("DPO"))) == set(KEYS)
    assert set(_tiles(staff_in_role("Privacy analyst"))) == set(KEYS)
    assert set(_tiles(staff_in_role("Auditor"))) == set(KEYS) - {"mine"}  # nobody assigns them requests
    assert set(_tiles(staff_in_role("Support agent"))) == set(KEYS) - {"mine"}


def test_all_six_tiles_cost_two_queries_of_requests_however_many_there_are(queues):
    dpo = queues
    dpo.has_perm("requests.view_rightsrequest")  # the permission cache, filled once per user anyway
    with CaptureQueriesContext(connection) as ctx:
        _tiles(dpo)
    for _ in range(20):
        RightsRequestFactory(status=Status.IN_PROGRESS, assignee=dpo)
    dpo.has_perm("requests.view_rightsrequest")
    with CaptureQueriesContext(connection) as again:
        _tiles(dpo)
    ours = [[q for q in c.captured_queries if "requests_rightsrequest" in q["sql"]] for c in (ctx, again)]
    assert len(ours[0]) == len(ours[1]) == 2  # the five queues in one query, and "mine"
    assert len(ctx.captured_queries) == len(again.captured_queries)


def test_the_admin_index_shows_the_tiles(client, queues):
    client.force_login(queues)
    html = client.get(reverse("admin:index")).content.decode()
    assert 'data-tile="requests.overdue"' in html and "Requests: overdue" in html
