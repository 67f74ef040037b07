"""PM-IX-9: the statutory deadline rules seeded with the register by `loadpolicy` (requests/seed/deadlines.yaml)."""

import datetime
import io
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from django.core.management import CommandError, call_command

from inventory.policy import PolicyFileError, policy_file_read, register_policy_load
from privacyops.models import AuditEvent
from requests import deadlines, seeding
from requests.models import ClockStart, DeadlineRule, PeriodUnit, Right, Roll

pytestmark = pytest.mark.django_db

SGT = ZoneInfo("Asia/Singapore")

# (jurisdiction, right) -> (period, unit, extension, times, clock starts, pauses, roll, acknowledgement, words in the citation)
R, V = ClockStart.RECEIPT, ClockStart.VERIFICATION
NO, SUN, BUS = Roll.NONE, Roll.SUNDAY_OR_HOLIDAY, Roll.BUSINESS_DAY
H = PeriodUnit.HOURS
EXPECTED = {
    ("EU", ""): (1, PeriodUnit.CALENDAR_MONTHS, 2, 1, R, False, BUS, None, ["Art. 12(3)", "1182/71", "3(4)"]),
    ("UK", ""): (1, PeriodUnit.CALENDAR_MONTHS, 2, 1, V, True, BUS, None, ["Art. 12(3)", "Art. 12A", "DUAA 2025 s76"]),
    ("SG", ""): (30, PeriodUnit.CALENDAR_DAYS, 0, 0, R, False, SUN, None, ["s21", "reg 5", "Interpretation Act 1965 s50(b)"]),
    ("ID", Right.ACCESS): (72, H, 0, 0, R, False, NO, None, ["27/2022", "Art. 32(2)"]),
    ("ID", Right.RECTIFICATION): (72, H, 0, 0, R, False, NO, None, ["27/2022", "Art. 30"]),
    ("ID", Right.RESTRICTION): (72, H, 0, 0, R, False, NO, None, ["27/2022", "Art. 41(1)"]),
    ("ID", Right.WITHDRAW_CONSENT): (72, H, 0, 0, R, False, NO, None, ["27/2022", "Art. 40"]),
    ("ID", ""): (30, PeriodUnit.CALENDAR_DAYS, 0, 0, R, False, NO, None, ["42-44", "Art. 10", "Art. 13", "PM-IX-9"]),
    ("CN", ""): (30, PeriodUnit.CALENDAR_DAYS, 0, 0, R, False, NO, None, ["PIPL", "configurable default"]),
    ("US-CA", ""): (
        45,
        PeriodUnit.CALENDAR_DAYS,
        45,
        1,
        R,
        False,
        BUS,
        (10, PeriodUnit.BUSINESS_DAYS),
        ["§7021(b)", "§7021(a)", "§12a"],
    ),
    ("DEFAULT", ""): (30, PeriodUnit.CALENDAR_DAYS, 0, 0, R, False, NO, None, ["PM-IX-9"]),
}


@pytest.fixture(autouse=True)
def zone(settings):
    settings.DEADLINE_TIME_ZONE = "Asia/Singapore"


def _load(*args) -> str:
    out = io.StringIO()
    call_command("loadpolicy", *args, stdout=out)
    return out.getvalue()


def _document() -> dict:
    return yaml.safe_load(seeding.DEFAULT_SEED_PATH.read_text())


def _use(monkeypatch, tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "deadlines.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    monkeypatch.setattr(seeding, "DEFAULT_SEED_PATH", path)
    return path


def _rows() -> dict:
    return {(r.jurisdiction.code, r.right): r for r in DeadlineRule.objects.select_related("jurisdiction")}


def test_pm_ix_9_the_seed_names_only_jurisdictions_of_the_seed_register():
    jurisdictions = policy_file_read().codes("jurisdictions")
    assert {r["jurisdiction"] for r in seeding.rules_file_read().rows} <= jurisdictions


def test_pm_ix_9_loadpolicy_seeds_every_rule_with_its_citation():
    output = _load()

    rows = _rows()
    assert set(rows) == set(EXPECTED)
    for key, (value, unit, extension, times, starts, pauses, roll, acknowledge, cited) in EXPECTED.items():
        rule = rows[key]
        assert (rule.period_value, rule.period_unit) == (value, unit), key
        assert (rule.extension_value, rule.extensions_allowed) == (extension, times), key
        assert (rule.clock_starts, rule.pauses_for_verification, rule.roll) == (starts, pauses, roll), key
        # Every seeded calendar comes from the jurisdiction (the EU, of many countries, has none).
        assert rule.holiday_calendar == "", key
        assert ((rule.acknowledge_value, rule.acknowledge_unit) if rule.acknowledge_value else None) == acknowledge, key
        for words in cited:
            assert words in rule.citation, (key, words)
    assert re.search(r"^Deadline rules +11 created, 0 updated, 0 unchanged, 0 kept", output, re.M)


def test_pm_ix_9_the_issue_examples_hold_with_the_seeded_rules():
    _load()
    assert deadlines.compute_due("EU", Right.ACCESS, datetime.datetime(2026, 4, 14, 10, tzinfo=SGT)) == datetime.datetime(
        2026, 5, 14, 23, 59, 59, 999999, tzinfo=SGT
    )
    assert deadlines.compute_due("US-CA", Right.ERASURE, datetime.datetime(2026, 3, 2, 10, tzinfo=SGT)) == datetime.datetime(
        2026, 4, 16, 23, 59, 59, 999999, tzinfo=SGT
    )
    assert deadlines.compute_due("ID", Right.ACCESS, datetime.datetime(2026, 3, 2, 9, tzinfo=SGT)) == datetime.datetime(
        2026, 3, 5, 9, tzinfo=SGT
    )
    # Indonesia has no statutory period for erasure: its general row's 30 days, citing the articles.
    erasure = deadlines.rule_for("ID", Right.ERASURE)
    assert (erasure.jurisdiction.code, erasure.right, erasure.period_value) == ("ID", "", 30)
    # The seeded calendars: SG and US-CA from their jurisdictions, none for the EU.
    assert [deadlines.holiday_calendar_code(deadlines.rule_for(code, Right.ACCESS)) for code in ("SG", "US-CA", "UK", "EU")] == [
        "SG",
        "US-CA",
        "GB",
        "",
    ]
    # Singapore's National Day, Sun 9 Aug 2026 (observed Mon 10 Aug): received 10 Jul -> due Tue 11 Aug.
    assert deadlines.compute_due("SG", Right.ACCESS, datetime.datetime(2026, 7, 10, 10, tzinfo=SGT)) == datetime.datetime(
        2026, 8, 11, 23, 59, 59, 999999, tzinfo=SGT
    )
    assert deadlines.compute_due("ID", Right.WITHDRAW_CONSENT, datetime.datetime(2026, 3, 2, 9, tzinfo=SGT)) == datetime.datetime(
        2026, 3, 5, 9, tzinfo=SGT
    )


def test_pm_ix_9_a_second_load_creates_nothing_and_writes_no_audit_event():
    _load()
    events = AuditEvent.objects.count()

    report = register_policy_load()

    assert report.extensions[seeding.LABEL].as_dict() == {"created": 0, "updated": 0, "unchanged": 11, "kept": 0}
    assert not report.changed
    assert AuditEvent.objects.count() == events


def test_pm_ix_9_the_load_audit_event_counts_the_rules():
    report = register_policy_load()
    event = AuditEvent.objects.get(pk=report.audit_event_id)
    assert event.details["counts"][seeding.LABEL]["created"] == 11


def test_pm_ix_9_a_rule_the_dpo_edited_is_never_overwritten_and_reset_restores_it():
    _load()
    DeadlineRule.objects.filter(jurisdiction__code="SG").update(period_value=14, citation="Our own target")

    report = register_policy_load()

    sg = _rows()[("SG", "")]
    assert (sg.period_value, sg.citation) == (14, "Our own target")
    assert report.extensions[seeding.LABEL].kept == 1
    assert "deadline rules: SG / every right" in report.kept

    report = register_policy_load(reset=True)

    assert _rows()[("SG", "")].period_value == 30
    assert report.extensions[seeding.LABEL].updated == 1


def test_pm_ix_9_a_changed_seed_does_not_touch_existing_rows_but_creates_new_ones(monkeypatch, tmp_path):
    _load()
    document = _document()
    next(r for r in document["rules"] if r["jurisdiction"] == "CN")["period_value"] = 15
    document["rules"].append(
        {"jurisdiction": "CN", "right": "erasure", "period_value": 15, "period_unit": "business_days", "citation": "PIPL Art. 47"}
    )
    _use(monkeypatch, tmp_path, document)

    report = register_policy_load()

    rows = _rows()
    assert rows[("CN", "")].period_value == 30
    assert (rows[("CN", Right.ERASURE)].period_value, rows[("CN", Right.ERASURE)].period_unit) == (15, "business_days")
    assert report.extensions[seeding.LABEL].as_dict() == {"created": 1, "updated": 0, "unchanged": 10, "kept": 1}


def test_pm_ix_9_rules_not_in_the_file_are_left_alone_and_a_deleted_rule_comes_back():
    _load()
    DeadlineRule.objects.filter(jurisdiction__code="DEFAULT").update(right=Right.ACCESS)
    DeadlineRule.objects.filter(jurisdiction__code="SG").delete()

    report = register_policy_load()

    rows = _rows()
    assert ("DEFAULT", Right.ACCESS) in rows and ("DEFAULT", "") in rows and ("SG", "") in rows
    assert report.extensions[seeding.LABEL].created == 2


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda rules: rules[0].pop("citation"), "rules[EU/every right].citation: required"),
        (lambda rules: rules[0].update(period_unit="fortnights"), "rules[EU/every right].period_unit"),
        (lambda rules: rules[0].update(colour="blue"), "rules[EU/every right].colour: unknown field"),
        (lambda rules: rules[0].update(right="flying"), "rules[EU/flying].right"),
        (lambda rules: rules[0].update(extensions_allowed=0), "rules[EU/every right].extensions_allowed"),
        (lambda rules: rules[0].update(extension_unit=""), "rules[EU/every right].extension_unit"),
        (lambda rules: rules[2].update(acknowledge_value=5), "rules[SG/every right].acknowledge_unit"),
        (lambda rules: rules.append(dict(rules[3])), "rules[ID/access]: appears twice"),
        (lambda rules: rules[0].update(roll="monday"), "rules[EU/every right].roll"),
        (lambda rules: rules[0].update(clock_starts="whenever"), "rules[EU/every right].clock_starts"),
        (lambda rules: rules[0].update(holiday_calendar="XX"), "rules[EU/every right].holiday_calendar: 'XX'"),
    ],
)
def test_pm_ix_9_a_bad_seed_names_the_rule_and_field_and_the_whole_load_writes_nothing(monkeypatch, tmp_path, change, expected):
    document = _document()
    change(document["rules"])
    _use(monkeypatch, tmp_path, document)
    events = AuditEvent.objects.count()

    with pytest.raises(PolicyFileError) as caught:
        register_policy_load()

    assert expected in str(caught.value)
    assert DeadlineRule.objects.count() == 0
    assert AuditEvent.objects.count() == events


def test_pm_ix_9_the_command_reports_a_bad_seed(monkeypatch, tmp_path):
    document = _document()
    document["rules"][0]["period_value"] = 0
    _use(monkeypatch, tmp_path, document)
    with pytest.raises(CommandError, match=r"rules\[EU/every right\]\.period_value"):
        _load()


def test_pm_ix_9_a_register_without_the_jurisdictions_skips_the_rules_with_a_note(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("jurisdictions:\n  - code: DEFAULT\n    name: Everywhere\n")

    report = register_policy_load(path=path)

    assert list(_rows()) == [("DEFAULT", "")]
    assert any("skipped deadline rule EU / every right" in note for note in report.notes)
