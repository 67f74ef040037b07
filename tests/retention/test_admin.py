"""The retention workbench: rules (Confirm, Preview, Run now, Disable), legal holds (place, what they keep,
lift) and purge runs (read-only, progress and counts), by role (POLICY-MAP VI)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from chat.models import AccessLog
from inventory.models import DataCategory
from privacyops.models import AuditEvent
from retention.models import LegalHold, PurgeRun, RetentionRule
from tests.factories.accounts import UserFactory
from tests.factories.chat import AccessLogFactory
from tests.factories.inventory import staff_in_role

pytestmark = pytest.mark.django_db

LOG_RULE = "log-data-180d"


def url(name, *args):
    return reverse(f"admin:retention_{name}", args=args)


def rule(code=LOG_RULE) -> RetentionRule:
    return RetentionRule.objects.select_related("category").get(code=code)


def old_logs(n, *, user=None, days=200):
    created = timezone.now() - timedelta(days=days)
    return [AccessLogFactory(user=user or UserFactory(), created=created) for _ in range(n)]


@pytest.fixture
def analyst(client):
    user = staff_in_role("Privacy analyst")
    client.force_login(user)
    return user


def _confirm(client, code=LOG_RULE):
    return client.post(url("retentionrule_confirm", rule(code).pk))


def _queries(client, path) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(path).status_code == 200
    return len(ctx.captured_queries)


# --- Pages render, in a fixed number of queries -------------------------------------------------------


def test_changelists_render_for_the_dpo_without_a_query_per_row(client, seeded, dpo, django_capture_on_commit_callbacks):
    for code in (LOG_RULE, "feedback-3y"):
        with django_capture_on_commit_callbacks(execute=True):
            client.post(url("retentionrule_preview", rule(code).pk))
    LegalHold.objects.create(subject=UserFactory(), reason="claim", reference="C-1", placed_by=dpo)
    paths = [url("retentionrule_changelist"), url("legalhold_changelist"), url("purgerun_changelist")]
    few = {p: _queries(client, p) for p in paths}

    for code in ("usage-data-13m", "user-content-30d-after-closure", "purge-runs-2y"):
        with django_capture_on_commit_callbacks(execute=True):
            client.post(url("retentionrule_preview", rule(code).pk))
    for n in range(3):
        LegalHold.objects.create(
            subject=UserFactory(), category=rule().category, reason="claim", reference=f"C-{n + 2}", placed_by=dpo
        )
    RetentionRule.objects.create(code="extra", name="Extra", category=rule().category, period="P1Y")

    assert {p: _queries(client, p) for p in paths} == few


def test_pm_vi_1_the_rule_page_shows_the_dpo_its_buttons(client, seeded, dpo):
    page = client.get(url("retentionrule_change", rule().pk)).content.decode()
    assert url("retentionrule_confirm", rule().pk) in page
    assert url("retentionrule_preview", rule().pk) in page
    assert "awaiting confirmation" in page or "not confirmed" in page
    assert "P180D delete from created" in page


@pytest.mark.parametrize("role", ["Privacy analyst", "Auditor"])
def test_pm_vi_1_analysts_and_auditors_read_rules_but_cannot_confirm_run_or_change_them(client, seeded, role):
    client.force_login(staff_in_role(role))
    target = rule()
    page = client.get(url("retentionrule_change", target.pk))
    assert page.status_code == 200
    html = page.content.decode()
    for name in ("confirm", "preview", "run", "disable"):
        assert url(f"retentionrule_{name}", target.pk) not in html
    assert 'name="_save"' not in html

    assert client.get(url("retentionrule_confirm", target.pk)).status_code == 403
    assert client.post(url("retentionrule_confirm", target.pk)).status_code == 403
    assert client.post(url("retentionrule_preview", target.pk)).status_code == 403
    assert client.post(url("retentionrule_run", target.pk)).status_code == 403
    assert client.post(url("retentionrule_disable", target.pk)).status_code == 403
    assert client.post(url("retentionrule_change", target.pk), {"period": "P1D"}).status_code == 403
    assert client.get(url("retentionrule_add")).status_code == 403
    target.refresh_from_db()
    assert (target.enabled, target.confirmed_at, target.period) == (False, None, "P180D")
    assert not PurgeRun.objects.exists()


# --- Confirm, Preview, Run now, Disable ---------------------------------------------------------------


def test_pm_vi_1_confirm_states_what_the_rule_does_then_enables_it(client, seeded, dpo):
    page = client.get(url("retentionrule_confirm", rule().pk)).content.decode()
    assert "P180D" in page and "deleted" in page and "chat.AccessLog" in page
    assert "csrfmiddlewaretoken" in page

    response = _confirm(client)

    assert response.status_code == 302
    confirmed = rule()
    assert confirmed.enabled and confirmed.confirmed_by == dpo and confirmed.confirmed_at
    assert AuditEvent.objects.filter(target_id=str(confirmed.pk), action__startswith="retention.").exists()
    page = client.get(url("retentionrule_change", confirmed.pk)).content.decode()
    assert url("retentionrule_confirm", confirmed.pk) not in page
    assert url("retentionrule_run", confirmed.pk) in page


def test_pm_vi_4_preview_counts_what_a_run_would_change_and_changes_nothing(
    client, seeded, dpo, django_capture_on_commit_callbacks
):
    old_logs(3)
    AccessLogFactory()  # recent: not expired

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url("retentionrule_preview", rule().pk))

    run = PurgeRun.objects.get()
    assert response.status_code == 302 and response["Location"] == url("purgerun_change", run.pk)
    assert run.dry_run and run.status == PurgeRun.Status.COMPLETED
    assert run.counts["chat.AccessLog"]["matched"] == 3
    assert AccessLog.objects.count() == 4
    page = client.get(response["Location"]).content.decode()
    assert "chat.AccessLog" in page and "<progress" in page
    assert 'http-equiv="refresh"' not in page  # finished: no more reloading


def test_preview_is_post_only(client, seeded, dpo):
    assert client.get(url("retentionrule_preview", rule().pk)).status_code == 405
    assert not PurgeRun.objects.exists()


def test_pm_vi_4_run_now_asks_first_then_purges_and_its_page_shows_the_counts(
    client, seeded, dpo, django_capture_on_commit_callbacks
):
    subject = UserFactory()
    old_logs(4, user=subject)
    old_logs(2)
    LegalHold.objects.create(subject=subject, reason="claim", reference="C-9", placed_by=dpo)
    _confirm(client)

    page = client.get(url("retentionrule_run", rule().pk)).content.decode()
    assert "not a preview" in page and "1 active hold" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url("retentionrule_run", rule().pk))

    run = PurgeRun.objects.get()
    assert response["Location"] == url("purgerun_change", run.pk)
    assert not run.dry_run and run.status == PurgeRun.Status.COMPLETED
    counts = run.counts["chat.AccessLog"]
    assert (counts["deleted"], counts["held"]) == (2, 4)
    assert AccessLog.objects.filter(user=subject).count() == 4  # PM-VI-3: held rows stay
    page = client.get(response["Location"]).content.decode()
    assert "data-count='deleted'>2<" in page and "data-count='held'>4<" in page


def test_run_now_is_not_offered_for_an_unconfirmed_rule(client, seeded, dpo):
    assert url("retentionrule_run", rule().pk) not in client.get(url("retentionrule_change", rule().pk)).content.decode()


def test_disable_is_a_post_that_stops_the_rule(client, seeded, dpo):
    _confirm(client)
    assert client.get(url("retentionrule_disable", rule().pk)).status_code == 405
    response = client.post(url("retentionrule_disable", rule().pk))
    assert response.status_code == 302
    assert not rule().enabled


# --- Saving a rule through the service -------------------------------------------------------------------


def _rule_form(target: RetentionRule, **changes) -> dict:
    data = {
        "code": target.code,
        "name": target.name,
        "description": target.description,
        "category": target.category_id,
        "store": target.store_id or "",
        "policy_ref": target.policy_ref,
        "period": target.period,
        "counts_from": target.counts_from,
        "timestamp_field": target.timestamp_field,
        "action": target.action,
    }
    data.update(changes)
    return data


def test_a_rule_saved_from_the_form_goes_through_the_service(client, seeded, dpo):
    target = rule()
    response = client.post(url("retentionrule_change", target.pk), _rule_form(target, period="P90D"))
    assert response.status_code == 302
    assert rule().period == "P90D"
    assert AuditEvent.objects.filter(target_id=str(target.pk), action__startswith="retention.").exists()


def test_a_bad_period_is_shown_on_the_period_field_and_nothing_is_written(client, seeded, dpo):
    target = rule()
    events = AuditEvent.objects.count()
    response = client.post(url("retentionrule_change", target.pk), _rule_form(target, period="180 days"))
    assert response.status_code == 200
    assert "period" in response.context["adminform"].form.errors
    assert rule().period == "P180D"
    assert AuditEvent.objects.count() == events


def test_anonymise_through_a_parent_is_refused_on_the_form(client, seeded, dpo):
    target = rule("user-content-30d-after-closure")
    response = client.post(url("retentionrule_change", target.pk), _rule_form(target, action="anonymise"))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert rule("user-content-30d-after-closure").action == "delete"


def test_a_new_rule_is_added_through_the_service_disabled(client, seeded, dpo):
    category = DataCategory.objects.get(code="log-data")
    data = _rule_form(rule(), code="log-data-90d", name="Log data, 90 days", period="P90D", category=category.pk)
    response = client.post(url("retentionrule_add"), data)
    assert response.status_code == 302
    added = RetentionRule.objects.get(code="log-data-90d")
    assert not added.enabled and added.confirmed_at is None


# --- Legal holds ------------------------------------------------------------------------------------------


def test_pm_vi_3_the_dpo_places_a_hold_through_the_service(client, seeded, dpo):
    subject = UserFactory()
    response = client.post(
        url("legalhold_add"), {"subject": subject.pk, "reason": "Litigation", "reference": "Case 42", "review_date": ""}
    )
    assert response.status_code == 302
    hold = LegalHold.objects.get()
    assert (hold.subject, hold.placed_by, hold.reference) == (subject, dpo, "Case 42")
    assert AuditEvent.objects.filter(target_id=str(hold.pk), action__startswith="retention.").exists()


def test_a_hold_without_any_scope_is_refused_on_the_form(client, seeded, dpo):
    response = client.post(url("legalhold_add"), {"reason": "x", "reference": "y"})
    assert response.status_code == 200
    assert not LegalHold.objects.exists()


def test_pm_vi_3_the_hold_page_shows_what_it_keeps_and_its_scope_cannot_be_edited(client, seeded, dpo):
    subject = UserFactory()
    old_logs(3, user=subject)
    hold = LegalHold.objects.create(subject=subject, reason="claim", reference="C-1", placed_by=dpo)

    page = client.get(url("legalhold_change", hold.pk)).content.decode()

    assert "chat.AccessLog</td><td class='kept-count'>3<" in page
    assert url("legalhold_lift", hold.pk) in page
    assert 'name="_save"' not in page
    other = UserFactory()
    assert client.post(url("legalhold_change", hold.pk), {"subject": other.pk}).status_code == 403
    hold.refresh_from_db()
    assert hold.subject == subject


def test_pm_vi_3_the_dpo_lifts_a_hold_with_a_reason(client, seeded, dpo):
    hold = LegalHold.objects.create(subject=UserFactory(), reason="claim", reference="C-1", placed_by=dpo)
    page = client.get(url("legalhold_lift", hold.pk)).content.decode()
    assert "Lift this hold" in page

    response = client.post(url("legalhold_lift", hold.pk), {"reason": "Case settled"})

    assert response.status_code == 302
    hold.refresh_from_db()
    assert hold.lifted_by == dpo and hold.lifted_at and not hold.is_active


@pytest.mark.parametrize("role", ["Privacy analyst", "Auditor"])
def test_pm_vi_3_only_the_dpo_lifts_holds(client, seeded, role):
    hold = LegalHold.objects.create(subject=UserFactory(), reason="claim", reference="C-1")
    client.force_login(staff_in_role(role))
    page = client.get(url("legalhold_change", hold.pk))
    assert page.status_code == 200
    assert url("legalhold_lift", hold.pk) not in page.content.decode()
    assert client.get(url("legalhold_lift", hold.pk)).status_code == 403
    assert client.post(url("legalhold_lift", hold.pk), {"reason": "no"}).status_code == 403
    hold.refresh_from_db()
    assert hold.is_active


def test_the_auditor_cannot_place_holds(client, seeded, auditor):
    assert client.get(url("legalhold_add")).status_code == 403
    assert client.post(url("legalhold_add"), {"subject": UserFactory().pk, "reason": "x", "reference": "y"}).status_code == 403
    assert not LegalHold.objects.exists()


# --- Purge runs -----------------------------------------------------------------------------------------


def _run(**kwargs) -> PurgeRun:
    values = {"rule": rule(), "cutoff": timezone.now(), "dry_run": True, **kwargs}
    return PurgeRun.objects.create(**values)


def test_purge_runs_are_read_only_even_for_the_dpo(client, seeded, dpo):
    run = _run(status=PurgeRun.Status.COMPLETED)
    assert client.get(url("purgerun_add")).status_code == 403
    page = client.get(url("purgerun_change", run.pk)).content.decode()
    assert 'name="_save"' not in page
    assert client.post(url("purgerun_change", run.pk), {"status": "failed"}).status_code == 403
    assert client.post(url("purgerun_delete", run.pk), {"post": "yes"}).status_code == 403
    assert PurgeRun.objects.get(pk=run.pk).status == PurgeRun.Status.COMPLETED


def test_a_running_run_reloads_itself_and_shows_its_progress(client, seeded, auditor):
    counts = {"chat.AccessLog": {"matched": 10, "held": 1, "kept": 0, "deleted": 9, "anonymised": 0}}
    run = _run(status=PurgeRun.Status.RUNNING, total_steps=4, position={"step": 2}, batches_done=7, counts=counts)

    page = client.get(url("purgerun_change", run.pk)).content.decode()

    assert 'http-equiv="refresh"' in page
    assert '<progress value="2" max="4"' in page and "7 batches" in page
    assert "data-count='deleted'>9<" in page
    listing = client.get(url("purgerun_changelist")).content.decode()
    assert '<progress value="2" max="4"' in listing and "9 / 0 / 1" in listing
