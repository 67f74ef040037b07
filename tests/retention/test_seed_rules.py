"""The example retention rules seeded with the register by `loadpolicy` (POLICY-MAP VI, issue 3 §4)."""

import io
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command
from django.utils import timezone

from inventory.policy import PolicyFileError, policy_file_read, register_policy_load
from privacyops.models import AuditEvent
from retention import seeding
from retention.models import RetentionRule
from retention.periods import parse_period
from tests.factories.accounts import StaffFactory

pytestmark = pytest.mark.django_db

EXPECTED = {
    ("log-data", None): ("P180D", "created", "delete"),
    ("usage-data", None): ("P13M", "created", "anonymise"),
    ("user-content", None): ("P30D", "account_closure", "delete"),
    ("feedback", None): ("P3Y", "created", "anonymise"),
    ("retention-records", None): ("P2Y", "created", "delete"),
    ("rights-request-records", None): ("P24M", "timestamp", "delete"),
    ("rights-request-records", "django-requests-packages"): ("P7D", "created", "delete"),
}


def _load(*args) -> str:
    out = io.StringIO()
    call_command("loadpolicy", *args, stdout=out)
    return out.getvalue()


def _rules_document() -> dict:
    return yaml.safe_load(seeding.DEFAULT_RULES_PATH.read_text())


def _use_rules(monkeypatch, tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    monkeypatch.setattr(seeding, "DEFAULT_RULES_PATH", path)
    return path


def _confirm(rule: RetentionRule) -> None:
    RetentionRule.objects.filter(pk=rule.pk).update(enabled=True, confirmed_at=timezone.now(), confirmed_by=StaffFactory())


def test_pm_vi_1_the_seed_file_names_only_categories_of_the_seed_register_and_valid_periods():
    categories = policy_file_read().codes("data_categories")
    rules = seeding.rules_file_read()
    assert {r["category"] for r in rules.rows} <= categories
    for row in rules.rows:
        parse_period(row["period"])


def test_pm_vi_1_loadpolicy_seeds_the_example_rules_disabled_and_unconfirmed():
    output = _load()

    rules = {
        (r.category.code, r.store.code if r.store else None): r for r in RetentionRule.objects.select_related("category", "store")
    }
    assert {code: (r.period, r.counts_from, r.action) for code, r in rules.items()} == EXPECTED
    assert all(not r.enabled and r.confirmed_at is None and r.confirmed_by is None for r in rules.values())
    assert all(len(r.seed_digest) == 64 for r in rules.values())
    assert {key for key, r in rules.items() if r.store is not None} == {("rights-request-records", "django-requests-packages")}
    assert "Retention rules" in output and f"{len(EXPECTED)} created" in output.split("Retention rules")[1]


def test_a_second_load_creates_and_updates_nothing_and_writes_no_audit_event():
    register_policy_load()
    events = AuditEvent.objects.count()

    report = register_policy_load()

    counts = report.extensions[seeding.LABEL]
    assert (counts.created, counts.updated, counts.unchanged, counts.kept) == (0, 0, len(EXPECTED), 0)
    assert not report.changed
    assert AuditEvent.objects.count() == events
    assert f"0 created, 0 updated, {len(EXPECTED)} unchanged" in _load().split("Retention rules")[1]


def test_the_load_audit_event_counts_the_rules():
    report = register_policy_load()
    event = AuditEvent.objects.get(pk=report.audit_event_id)
    assert event.details["counts"][seeding.LABEL]["created"] == len(EXPECTED)


def test_a_rule_the_dpo_edited_is_kept_and_reset_restores_it():
    register_policy_load()
    RetentionRule.objects.filter(code="log-data-180d").update(period="P90D")

    output = _load()
    assert RetentionRule.objects.get(code="log-data-180d").period == "P90D"
    assert "kept (edited by DPO): retention rules: log-data-180d" in output

    _load("--reset")
    assert RetentionRule.objects.get(code="log-data-180d").period == "P180D"
    assert register_policy_load().extensions[seeding.LABEL].unchanged == len(EXPECTED)


def test_pm_vi_1_a_confirmed_rule_is_kept_and_never_rewritten_without_reset(monkeypatch, tmp_path):
    register_policy_load()
    rule = RetentionRule.objects.get(code="feedback-3y")
    _confirm(rule)
    document = _rules_document()
    next(r for r in document["rules"] if r["code"] == "feedback-3y")["period"] = "P2Y"
    _use_rules(monkeypatch, tmp_path, document)

    report = register_policy_load()
    rule.refresh_from_db()
    assert (rule.period, rule.enabled) == ("P3Y", True)
    assert report.extensions[seeding.LABEL].kept == 1

    register_policy_load(reset=True)
    rule.refresh_from_db()
    # A reset that changes what a confirmed rule does withdraws the confirmation: it never runs unconfirmed.
    assert (rule.period, rule.enabled, rule.confirmed_at, rule.confirmed_by) == ("P2Y", False, None, None)


def test_a_confirmed_rule_with_the_seed_values_is_unchanged_and_stays_enabled():
    register_policy_load()
    _confirm(RetentionRule.objects.get(code="log-data-180d"))

    report = register_policy_load(reset=True)

    assert report.extensions[seeding.LABEL].unchanged == len(EXPECTED)
    assert RetentionRule.objects.get(code="log-data-180d").enabled


def test_a_changed_seed_updates_untouched_rules(monkeypatch, tmp_path):
    register_policy_load()
    document = _rules_document()
    document["rules"][0]["description"] = "New wording."
    _use_rules(monkeypatch, tmp_path, document)

    report = register_policy_load()

    assert report.extensions[seeding.LABEL].updated == 1
    assert RetentionRule.objects.get(code=document["rules"][0]["code"]).description == "New wording."


def test_rules_not_in_the_file_are_left_alone_and_a_deleted_seeded_rule_comes_back():
    register_policy_load()
    RetentionRule.objects.filter(code="purge-runs-2y").delete()
    own = RetentionRule.objects.create(
        code="dpo-own", name="Own", category=RetentionRule.objects.first().category, period="P1Y", store=None
    )

    report = register_policy_load()

    assert report.extensions[seeding.LABEL].created == 1
    assert RetentionRule.objects.filter(pk=own.pk).exists()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda rules: rules[0].update(enabled=True), "rules[log-data-180d].enabled: seeded rules are never enabled"),
        (lambda rules: rules[0].update(period="180 days"), "rules[log-data-180d].period"),
        (lambda rules: rules[0].update(period="P0D"), "rules[log-data-180d].period"),
        (lambda rules: rules[0].update(action="shred"), "rules[log-data-180d].action"),
        (lambda rules: rules[0].update(counts_from="birthday"), "rules[log-data-180d].counts_from"),
        (lambda rules: rules[0].update(colour="blue"), "rules[log-data-180d].colour: unknown field"),
        (lambda rules: rules[0].update(counts_from="timestamp"), "rules[log-data-180d].timestamp_field"),
        (lambda rules: rules[0].pop("category"), "rules[log-data-180d].category: required"),
        (lambda rules: rules.append(dict(rules[0])), "rules[log-data-180d]: appears twice"),
    ],
)
def test_a_bad_rules_file_names_the_rule_and_field_and_the_whole_load_writes_nothing(monkeypatch, tmp_path, change, expected):
    document = _rules_document()
    change(document["rules"])
    _use_rules(monkeypatch, tmp_path, document)
    events = AuditEvent.objects.count()

    with pytest.raises(PolicyFileError) as caught:
        register_policy_load()

    assert expected in str(caught.value)
    assert RetentionRule.objects.count() == 0
    assert AuditEvent.objects.count() == events


def test_a_rule_the_workbench_would_refuse_is_refused_by_the_load_too(monkeypatch, tmp_path):
    document = _rules_document()
    next(r for r in document["rules"] if r["code"] == "user-content-30d-after-closure")["action"] = "anonymise"
    _use_rules(monkeypatch, tmp_path, document)

    with pytest.raises(PolicyFileError, match=r"rules\[user-content-30d-after-closure\]\.action"):
        register_policy_load()

    assert RetentionRule.objects.count() == 0
    assert not AuditEvent.objects.filter(action="register.policy_loaded").exists()


def test_the_command_reports_a_bad_rules_file(monkeypatch, tmp_path):
    document = _rules_document()
    document["rules"][1]["action"] = "forget"
    _use_rules(monkeypatch, tmp_path, document)
    with pytest.raises(CommandError, match=r"rules\[usage-data-13m\]\.action"):
        _load()


def test_a_register_without_the_categories_skips_the_rules_with_a_note(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("jurisdictions:\n  - code: DEFAULT\n    name: Everywhere\n")

    report = register_policy_load(path=path)

    assert RetentionRule.objects.count() == 0
    assert any("skipped retention rule log-data-180d" in note for note in report.notes)
