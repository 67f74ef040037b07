"""Retention's dashboard tile: the last purge runs and the flags that need the DPO (PM-VI-3, PM-VI-4)."""

from datetime import timedelta

import pytest
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from privacyops.dashboard import tiles_for
from retention.models import LegalHold, PurgeRun, RetentionRule
from tests.factories.accounts import UserFactory
from tests.factories.inventory import staff_in_role, staff_with_permissions

pytestmark = pytest.mark.django_db

KEY = "retention.purges"


def _tile(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return next((t for t in tiles_for(request) if t.key == KEY), None)


def _run(code="log-data-180d", **kwargs) -> PurgeRun:
    values = {"rule": RetentionRule.objects.get(code=code), "cutoff": timezone.now(), "dry_run": False, **kwargs}
    return PurgeRun.objects.create(**values)


def _flag(tile, words):
    return next((f for f in tile.flags if words in f.label), None)


def _confirm_all():
    RetentionRule.objects.update(confirmed_at=timezone.now())


def test_the_tile_is_hidden_from_users_who_may_not_view_purge_runs(seeded):
    assert _tile(staff_with_permissions("retention.view_retentionrule")) is None
    assert _tile(staff_in_role("Support agent")) is None
    assert _tile(staff_in_role("Auditor")) is not None


def test_pm_vi_4_the_tile_lists_the_last_runs_with_their_counts(seeded):
    _confirm_all()
    counts = {
        "chat.AccessLog": {"matched": 12, "held": 2, "kept": 0, "deleted": 10, "anonymised": 0},
        "chat.UsageEvent": {"matched": 5, "held": 1, "kept": 0, "deleted": 0, "anonymised": 4},
    }
    run = _run(status=PurgeRun.Status.COMPLETED, counts=counts)

    tile = _tile(staff_in_role("DPO"))

    flag = _flag(tile, "log-data-180d (run)")
    assert "10 deleted, 4 anonymised, 3 held skipped" in flag.label
    assert flag.url == reverse("admin:retention_purgerun_change", args=[run.pk])
    assert tile.worst_severity == "ok"


def test_a_rule_whose_last_run_failed_is_red_until_a_later_run_completes(seeded):
    _confirm_all()
    _run(status=PurgeRun.Status.FAILED, error="boom", created_at=timezone.now() - timedelta(hours=1))

    tile = _tile(staff_in_role("DPO"))
    assert _flag(tile, "last run failed").count == 1
    assert tile.worst_severity == "red"

    _run(status=PurgeRun.Status.COMPLETED)
    assert _flag(_tile(staff_in_role("DPO")), "last run failed") is None


def test_a_run_whose_lease_expired_is_flagged_stalled_amber(seeded):
    _confirm_all()
    _run(status=PurgeRun.Status.RUNNING, lease_owner="w1", lease_expires_at=timezone.now() - timedelta(minutes=5))
    _run("feedback-3y", dry_run=True, status=PurgeRun.Status.RUNNING, lease_expires_at=timezone.now() + timedelta(minutes=1))

    flag = _flag(_tile(staff_in_role("DPO")), "stalled")

    assert (flag.count, flag.severity) == (1, "amber")


def test_pm_vi_3_holds_past_their_review_date_are_amber(seeded):
    _confirm_all()
    today = timezone.localdate()
    LegalHold.objects.create(subject=UserFactory(), reason="r", reference="A", review_date=today - timedelta(days=1))
    LegalHold.objects.create(subject=UserFactory(), reason="r", reference="B", review_date=today + timedelta(days=30))
    LegalHold.objects.create(
        subject=UserFactory(),
        reason="r",
        reference="C",
        review_date=today - timedelta(days=9),
        placed_at=timezone.now() - timedelta(days=30),
        lifted_at=timezone.now(),
    )

    flag = _flag(_tile(staff_in_role("DPO")), "review date")

    assert (flag.count, flag.severity) == (1, "amber")
    assert flag.url.endswith("?state=review")


def test_pm_vi_1_seeded_rules_awaiting_confirmation_are_flagged(seeded):
    flag = _flag(_tile(staff_in_role("DPO")), "awaiting confirmation")
    assert (flag.count, flag.severity) == (RetentionRule.objects.count(), "info")
    assert flag.url.endswith("?confirmed=no")


def test_the_tile_shows_on_the_admin_index_for_the_dpo_in_a_fixed_number_of_queries(client, seeded, dpo):
    _confirm_all()
    for _ in range(3):
        _run(dry_run=True, status=PurgeRun.Status.COMPLETED)
    response = client.get(reverse("admin:index"))
    assert f'data-tile="{KEY}"' in response.content.decode()
    first = _queries(client)
    for _ in range(5):
        _run("feedback-3y", dry_run=True, status=PurgeRun.Status.COMPLETED)
    assert _queries(client) == first


def _queries(client) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        client.get(reverse("admin:index"))
    return len(ctx.captured_queries)
