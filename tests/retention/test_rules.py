"""Saving and confirming retention rules: what is refused and why, who confirms (PM-VI-1, PM-VI-2)."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from privacyops.models import AuditEvent
from retention.models import PurgeRun, RetentionRule
from retention.services import purge_run_start, rule_confirm, rule_disable, rule_save
from tests.factories.inventory import staff_in_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def dpo_user(db):
    return staff_in_role("DPO")


def new_rule(register, category, **fields):
    fields.setdefault("period", "P30D")
    return RetentionRule(
        code=fields.pop("code", f"rule-{category}"),
        name=f"Rule for {category}",
        category=register["categories"][category],
        **fields,
    )


def errors_of(excinfo) -> dict:
    return excinfo.value.message_dict


def test_pm_vi_1_a_rule_is_saved_disabled_and_audited(register, dpo_user):
    rule = rule_save(rule=new_rule(register, "log-data", period="P180D"), actor=dpo_user)
    assert rule.pk and not rule.enabled and rule.confirmed_at is None
    event = AuditEvent.objects.get(action="retention.rule_created", target_id=str(rule.pk))
    assert event.details["code"] == "rule-log-data" and event.actor_id == dpo_user.pk


def test_pm_vi_1_an_invalid_period_is_refused(register, dpo_user):
    with pytest.raises(ValidationError) as excinfo:
        rule_save(rule=new_rule(register, "log-data", period="180 days"), actor=dpo_user)
    assert "ISO 8601" in errors_of(excinfo)["period"][0]


def test_pm_vi_1_a_timestamp_rule_needs_a_timestamp_the_category_declares(register, dpo_user):
    rule = new_rule(register, "user-content", counts_from="timestamp", timestamp_field="closed_at")
    with pytest.raises(ValidationError) as excinfo:
        rule_save(rule=rule, actor=dpo_user)
    message = errors_of(excinfo)["timestamp_field"][0]
    assert "closed_at" in message and "user-content" in message and "updated" in message

    rule.timestamp_field = "updated"
    assert rule_save(rule=rule, actor=dpo_user).pk


def test_pm_vi_1_anonymise_is_refused_for_rows_linked_through_a_parent(register, dpo_user):
    with pytest.raises(ValidationError) as excinfo:
        rule_save(rule=new_rule(register, "user-content", action="anonymise"), actor=dpo_user)
    messages = " ".join(errors_of(excinfo)["action"])
    assert "chat.Message" in messages and "conversation__user" in messages
    assert "chat.Attachment" in messages

    assert rule_save(rule=new_rule(register, "usage-data", period="P13M", action="anonymise"), actor=dpo_user).pk


def test_pm_vi_1_the_audit_trail_cannot_be_purged(register, dpo_user):
    with pytest.raises(ValidationError) as excinfo:
        rule_save(rule=new_rule(register, "audit-records", period="P10Y"), actor=dpo_user)
    assert "privacyops.AuditEvent" in errors_of(excinfo)["category"][0]


def test_pm_vi_1_only_a_dpo_confirms_and_confirming_enables(register, dpo_user):
    rule = rule_save(rule=new_rule(register, "log-data"), actor=dpo_user)
    analyst = staff_in_role("Privacy analyst")
    with pytest.raises(PermissionDenied):
        rule_confirm(rule=rule, actor=analyst)

    rule_confirm(rule=rule, actor=dpo_user)
    rule.refresh_from_db()
    assert rule.enabled and rule.confirmed_by == dpo_user and rule.confirmed_at
    assert AuditEvent.objects.filter(action="retention.rule_confirmed", target_id=str(rule.pk)).exists()

    rule_disable(rule=rule, actor=dpo_user)
    rule.refresh_from_db()
    assert not rule.enabled and rule.confirmed_at  # the confirmation stays on record


def test_pm_vi_1_a_rule_cannot_be_enabled_without_confirmation(register, dpo_user):
    with pytest.raises(ValidationError) as excinfo:
        rule_save(rule=new_rule(register, "log-data", enabled=True), actor=dpo_user)
    assert "confirmed" in errors_of(excinfo)["enabled"][0]


def test_pm_vi_1_one_enabled_rule_per_category_and_store(register, dpo_user):
    first = rule_confirm(rule=rule_save(rule=new_rule(register, "log-data"), actor=dpo_user), actor=dpo_user)
    second = rule_save(rule=new_rule(register, "log-data", code="logs-longer", period="P1Y"), actor=dpo_user)
    with pytest.raises(ValidationError) as excinfo:
        rule_confirm(rule=second, actor=dpo_user)
    assert first.code in errors_of(excinfo)["enabled"][0]

    in_store = rule_save(
        rule=new_rule(register, "log-data", code="logs-chat", store=register["stores"]["django-chat"]), actor=dpo_user
    )
    rule_confirm(rule=in_store, actor=dpo_user)  # a store-specific rule may sit beside the category-wide one
    assert RetentionRule.objects.filter(enabled=True, category__code="log-data").count() == 2


def test_pm_vi_1_changing_what_a_confirmed_rule_does_needs_a_dpo_again(register, dpo_user):
    rule = rule_confirm(rule=rule_save(rule=new_rule(register, "log-data"), actor=dpo_user), actor=dpo_user)

    rule.description = "Clearer words"
    rule_save(rule=rule, actor=None)
    rule.refresh_from_db()
    assert rule.enabled and rule.confirmed_at  # wording is not substance

    rule.period = "P7D"
    rule_save(rule=rule, actor=None)
    rule.refresh_from_db()
    assert not rule.enabled and rule.confirmed_at is None

    rule = rule_confirm(rule=rule, actor=dpo_user)
    other_dpo = staff_in_role("DPO")
    rule.period = "P14D"
    rule_save(rule=rule, actor=other_dpo, changed=["period"])
    rule.refresh_from_db()
    assert rule.enabled and rule.confirmed_by == other_dpo
    event = AuditEvent.objects.filter(action="retention.rule_updated", target_id=str(rule.pk)).latest("id")
    assert event.details["fields"] == ["period"]


def test_pm_vi_1_a_rule_is_not_changed_under_a_running_purge(register, dpo_user):
    rule = rule_confirm(rule=rule_save(rule=new_rule(register, "log-data"), actor=dpo_user), actor=dpo_user)
    purge_run_start(rule=rule, enqueue=False)
    rule.period = "P1D"
    with pytest.raises(ValidationError):
        rule_save(rule=rule, actor=dpo_user)


def test_pm_vi_4_only_confirmed_enabled_rules_run_and_one_run_at_a_time(register, dpo_user):
    rule = rule_save(rule=new_rule(register, "log-data"), actor=dpo_user)
    with pytest.raises(ValidationError):
        purge_run_start(rule=rule, enqueue=False)
    preview = purge_run_start(rule=rule, dry_run=True, enqueue=False)  # a preview needs no confirmation
    assert preview.dry_run and preview.position["plan"] == ["chat.AccessLog"]

    rule_confirm(rule=rule, actor=dpo_user)
    run = purge_run_start(rule=rule, actor=dpo_user, enqueue=False)
    assert run.status == PurgeRun.Status.QUEUED and run.requested_by == dpo_user
    assert run.cutoff < timezone.now()
    with pytest.raises(ValidationError):
        purge_run_start(rule=rule, enqueue=False)
    assert AuditEvent.objects.filter(action="retention.run_requested", target_id=str(run.pk)).exists()
