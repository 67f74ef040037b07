"""`manage.py retention`: preview, run, hold and lift from the command line (POLICY-MAP VI)."""

import io

import pytest
from django.core.management import CommandError, call_command

from chat.models import AccessLog
from privacyops.models import AuditEvent
from retention.models import LegalHold, PurgeRun
from tests.factories.accounts import UserFactory
from tests.factories.chat import AccessLogFactory

from .conftest import days_ago

pytestmark = pytest.mark.django_db


def retention(*args) -> str:
    out = io.StringIO()
    call_command("retention", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def logs():
    user = UserFactory(email="held@example.org")
    other = UserFactory()
    return {
        "held": AccessLogFactory(user=user, created=days_ago(60)),
        "other": AccessLogFactory(user=other, created=days_ago(60)),
        "new": AccessLogFactory(user=other, created=days_ago(1)),
        "user": user,
    }


def test_pm_vi_4_preview_prints_counts_per_model_and_changes_nothing(make_rule, logs):
    make_rule("log-data", code="logs-30d", enabled=False)
    out = retention("preview", "--rule", "logs-30d")
    assert "Preview" in out and "logs-30d" in out
    line = next(x for x in out.splitlines() if "chat.AccessLog" in x)
    assert line.split()[1:] == ["2", "0", "0", "2", "0"]
    assert AccessLog.objects.count() == 3


def test_pm_vi_4_run_without_a_rule_runs_every_enabled_rule_inline(make_rule, logs):
    make_rule("log-data", code="logs-30d")
    make_rule("usage-data", code="usage-off", enabled=False)
    out = retention("run")
    assert "logs-30d" in out and "usage-off" not in out
    assert "Completed" in out
    assert list(AccessLog.objects.values_list("pk", flat=True)) == [logs["new"].pk]
    assert PurgeRun.objects.get(rule__code="logs-30d").status == PurgeRun.Status.COMPLETED


def test_pm_vi_4_run_dry_run_counts_only(make_rule, logs):
    make_rule("log-data", code="logs-30d")
    retention("run", "--rule", "logs-30d", "--dry-run")
    assert AccessLog.objects.count() == 3
    assert PurgeRun.objects.get().dry_run


def test_pm_vi_3_hold_and_lift_from_the_command_line(make_rule, logs):
    out = retention("hold", "--subject", "HELD@example.org", "--reason", "Claim", "--reference", "CLAIM-7")
    hold = LegalHold.objects.get()
    assert f"Hold {hold.pk} placed" in out and "chat.AccessLog: 1" in out
    assert hold.subject == logs["user"] and hold.placed_by is None
    event = AuditEvent.objects.get(action="retention.hold_placed")
    assert event.actor_id is None and event.subject_ref == logs["user"].subject_ref

    make_rule("log-data", code="logs-30d")
    retention("run", "--rule", "logs-30d")
    assert set(AccessLog.objects.values_list("pk", flat=True)) == {logs["held"].pk, logs["new"].pk}

    retention("lift", str(hold.pk), "--reason", "Settled")
    hold.refresh_from_db()
    assert not hold.is_active and hold.lift_reason == "Settled"


def test_pm_vi_3_hold_on_a_category_in_a_store(register):
    retention("hold", "--category", "log-data", "--store", "django-chat", "--reason", "Audit", "--reference", "REF")
    hold = LegalHold.objects.get()
    assert hold.category.code == "log-data" and hold.store.code == "django-chat" and hold.subject is None


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("run", "--rule", "nope"), "No retention rule 'nope'"),
        (("preview", "--rule", "nope"), "No retention rule 'nope'"),
        (("hold", "--subject", "ghost@example.org", "--reason", "x", "--reference", "y"), "No account"),
        (("hold", "--category", "no-such", "--reason", "x", "--reference", "y"), "No data category 'no-such'"),
        (("hold", "--store", "no-such", "--reason", "x", "--reference", "y"), "No data store 'no-such'"),
        (("hold", "--reason", "x", "--reference", "y"), "names a subject, a category or a store"),
        (("lift", "999999"), "No legal hold 999999"),
    ],
)
def test_unknown_codes_and_emails_are_clear_errors(register, args, says):
    with pytest.raises(CommandError) as excinfo:
        retention(*args)
    assert says in str(excinfo.value)


def test_a_rule_that_cannot_run_fails_the_command(make_rule):
    make_rule("log-data", code="logs-off", enabled=False)
    with pytest.raises(CommandError) as excinfo:
        retention("run", "--rule", "logs-off")
    assert "logs-off" in str(excinfo.value)
