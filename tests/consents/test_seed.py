"""The consent purposes, notices, cookies and policy version seeded by `loadpolicy` (issue 4 §1, §5)."""

import copy
import io
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command

from consents import seeding
from consents.models import ConsentNotice, ConsentPurpose, CookieInventory
from inventory.models import Purpose
from inventory.policy import PolicyFileError, policy_file_read, register_policy_load
from policies.models import PolicyVersion
from privacyops.models import AuditEvent

pytestmark = pytest.mark.django_db


def _document() -> dict:
    return yaml.safe_load(seeding.DEFAULT_SEED_PATH.read_text())


def _use(monkeypatch, tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "consents.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    monkeypatch.setattr(seeding, "DEFAULT_SEED_PATH", path)
    return path


def _purpose_entry(document: dict, code: str) -> dict:
    return next(p for p in document["purposes"] if p["code"] == code)


def _errors(excinfo) -> str:
    return "\n".join(excinfo.value.errors)


def test_the_seed_file_names_only_purposes_of_the_seed_register():
    purposes = policy_file_read().codes("purposes")
    seed = seeding.seed_file_read()
    assert {p["purpose"] for p in seed.purposes} <= purposes


def test_pm_iii_loadpolicy_seeds_the_consent_purposes_and_cookie_categories():
    register_policy_load()

    purposes = {p.code: p for p in ConsentPurpose.objects.select_related("purpose")}
    assert {
        code: (p.purpose.code, p.cookie_category, p.is_necessary, p.is_sale_or_sharing, p.lifetime)
        for code, p in purposes.items()
    } == {
        "marketing-communications": ("marketing", "", False, False, ""),
        "cookies-necessary": ("provide-service", "necessary", True, False, ""),
        "cookies-functionality": ("provide-service", "functionality", False, False, "P13M"),
        "cookies-analytics": ("support-and-improvement", "analytics", False, True, "P13M"),
    }
    assert purposes["marketing-communications"].dpv == "dpv:DirectMarketing"
    assert all(
        p.description and p.consequences and p.dpv.startswith("dpv:") and len(p.seed_digest) == 64 for p in purposes.values()
    )


def test_pm_0_2_each_purpose_gets_an_english_notice_v1_with_its_hash():
    register_policy_load()

    notices = {n.purpose.code: n for n in ConsentNotice.objects.select_related("purpose")}
    assert set(notices) == {"marketing-communications", "cookies-necessary", "cookies-functionality", "cookies-analytics"}
    for notice in notices.values():
        assert (notice.version, notice.language) == ("1", "en")
        assert notice.sha256 == ConsentNotice.digest(notice.text)


def test_pm_iii_5_the_cookie_inventory_lists_every_cookie_and_the_beacon():
    register_policy_load()

    cookies = {c.name: (c.category.code, c.kind, c.party) for c in CookieInventory.objects.select_related("category")}
    assert cookies == {
        "sessionid": ("cookies-necessary", "cookie", "first"),
        "csrftoken": ("cookies-necessary", "cookie", "first"),
        settings.CONSENT_COOKIE_NAME: ("cookies-necessary", "cookie", "first"),
        "privacyops_lang": ("cookies-functionality", "cookie", "first"),
        "privacyops_analytics": ("cookies-analytics", "cookie", "first"),
        "/beacon.gif": ("cookies-analytics", "beacon", "first"),
    }


def test_pm_x_1_the_policy_of_2025_04_25_is_seeded_published_and_already_notified():
    register_policy_load()

    version = PolicyVersion.objects.get()
    assert version.label == "2025-04-25"
    assert version.last_updated.isoformat() == "2025-04-25"
    assert version.effective_at.isoformat() == "2025-04-25T00:00:00+00:00"
    assert version.published_at is not None and version.published_by is None
    assert version.notice_sent_at is not None  # the baseline: nobody is e-mailed about it
    assert version.url == settings.POLICY_URL
    assert version.summary and version.text == ""


def test_a_second_load_changes_nothing_and_writes_no_audit_event():
    register_policy_load()
    events = AuditEvent.objects.count()

    report = register_policy_load()

    for label in (seeding.LABEL_PURPOSES, seeding.LABEL_NOTICES, seeding.LABEL_COOKIES, seeding.LABEL_VERSIONS):
        counts = report.extensions[label]
        assert (counts.created, counts.updated, counts.kept) == (0, 0, 0), label
    assert not report.changed
    assert AuditEvent.objects.count() == events


def test_the_loadpolicy_command_reports_the_consent_rows():
    out = io.StringIO()
    call_command("loadpolicy", stdout=out)

    assert "Consent purposes" in out.getvalue() and "4 created" in out.getvalue().split("Consent purposes")[1]


def test_a_purpose_edited_by_the_dpo_is_kept_unless_reset(monkeypatch, tmp_path):
    register_policy_load()
    ConsentPurpose.objects.filter(code="marketing-communications").update(name="Our newsletter")
    document = _document()
    _purpose_entry(document, "marketing-communications")["description"] = "A new description from the file."
    _use(monkeypatch, tmp_path, document)

    report = register_policy_load()

    assert report.extensions[seeding.LABEL_PURPOSES].kept == 1
    assert "consent purposes: marketing-communications" in report.kept
    assert ConsentPurpose.objects.get(code="marketing-communications").name == "Our newsletter"

    register_policy_load(reset=True)

    purpose = ConsentPurpose.objects.get(code="marketing-communications")
    assert (purpose.name, purpose.description) == ("News and offers by e-mail", "A new description from the file.")


def test_an_untouched_purpose_follows_the_file(monkeypatch, tmp_path):
    register_policy_load()
    document = _document()
    _purpose_entry(document, "cookies-analytics")["lifetime"] = "P6M"
    _use(monkeypatch, tmp_path, document)

    report = register_policy_load()

    assert report.extensions[seeding.LABEL_PURPOSES].updated == 1
    assert ConsentPurpose.objects.get(code="cookies-analytics").lifetime == "P6M"


def test_a_cookie_edited_by_the_dpo_is_kept(monkeypatch, tmp_path):
    register_policy_load()
    CookieInventory.objects.filter(name="csrftoken").update(duration="Until the browser closes")
    document = _document()
    next(c for c in document["cookies"] if c["name"] == "csrftoken")["description"] = "Changed in the file."
    _use(monkeypatch, tmp_path, document)

    report = register_policy_load()

    assert "cookies: csrftoken" in report.kept
    assert CookieInventory.objects.get(name="csrftoken").duration == "Until the browser closes"


def test_a_bad_file_is_refused_naming_entry_and_field_and_nothing_is_written(monkeypatch, tmp_path):
    document = _document()
    _purpose_entry(document, "cookies-analytics")["lifetime"] = "13 months"
    _purpose_entry(document, "cookies-necessary")["is_sale_or_sharing"] = True
    document["cookies"][0]["category"] = "cookies-unknown"
    document["cookies"][1]["colour"] = "blue"
    document["policy_versions"][0]["effective_at"] = "2025-04-25T00:00:00"
    _use(monkeypatch, tmp_path, document)

    with pytest.raises(PolicyFileError) as excinfo:
        register_policy_load()

    errors = _errors(excinfo)
    assert "purposes[cookies-analytics].lifetime:" in errors
    assert "purposes[cookies-necessary].is_necessary:" in errors
    assert "cookies[sessionid].category: unknown consent purpose 'cookies-unknown'" in errors
    assert "cookies[csrftoken].colour: unknown field" in errors
    assert "policy_versions[2025-04-25].effective_at: give the time zone" in errors
    assert not Purpose.objects.exists() and not ConsentPurpose.objects.exists()


def test_a_bad_cookie_category_and_choice_are_named(monkeypatch, tmp_path):
    document = _document()
    _purpose_entry(document, "marketing-communications")["cookie_category"] = "tracking"
    document["cookies"][0]["kind"] = "pixel"
    document["cookies"].append({**document["cookies"][3], "category": "marketing-communications", "name": "newsletter"})
    _use(monkeypatch, tmp_path, document)

    with pytest.raises(PolicyFileError) as excinfo:
        seeding.seed_file_read()

    errors = _errors(excinfo)
    assert "purposes[marketing-communications].cookie_category:" in errors
    assert "cookies[sessionid].kind:" in errors


def test_a_purpose_without_notices_is_refused(monkeypatch, tmp_path):
    document = _document()
    del _purpose_entry(document, "cookies-functionality")["notices"]
    _use(monkeypatch, tmp_path, document)

    with pytest.raises(PolicyFileError) as excinfo:
        seeding.seed_file_read()

    assert "purposes[cookies-functionality].notices: give at least one notice" in _errors(excinfo)


def test_pm_0_2_a_notice_is_never_rewritten_a_changed_text_needs_a_new_version(monkeypatch, tmp_path):
    register_policy_load()
    stored = ConsentNotice.objects.get(purpose__code="marketing-communications")
    document = _document()
    original = copy.deepcopy(_purpose_entry(document, "marketing-communications")["notices"][0])
    _purpose_entry(document, "marketing-communications")["notices"][0]["text"] = "A different wording."
    _use(monkeypatch, tmp_path, document)

    for reset in (False, True):
        with pytest.raises(PolicyFileError) as excinfo:
            register_policy_load(reset=reset)
        assert "purposes[marketing-communications].notices[1].text: differs from the stored notice" in _errors(excinfo)
        assert "new version" in _errors(excinfo)
    assert ConsentNotice.objects.get(pk=stored.pk).text == stored.text

    _purpose_entry(document, "marketing-communications")["notices"] = [
        original,
        {"version": "2", "language": "en", "text": "A different wording."},
    ]
    _use(monkeypatch, tmp_path, document)

    report = register_policy_load()

    assert report.extensions[seeding.LABEL_NOTICES].created == 1
    versions = dict(ConsentNotice.objects.filter(purpose__code="marketing-communications").values_list("version", "text"))
    assert versions == {"1": stored.text, "2": "A different wording."}


def test_a_purpose_the_register_lacks_is_skipped_with_a_note(monkeypatch, tmp_path):
    document = _document()
    _purpose_entry(document, "cookies-analytics")["purpose"] = "no-such-purpose"
    _use(monkeypatch, tmp_path, document)

    report = register_policy_load()

    assert "skipped consent purpose cookies-analytics: register purpose no-such-purpose is not in the register" in report.notes
    assert any(n.startswith("skipped cookie privacyops_analytics") for n in report.notes)
    assert not ConsentPurpose.objects.filter(code="cookies-analytics").exists()
    assert ConsentPurpose.objects.count() == 3
    assert not CookieInventory.objects.filter(category__code="cookies-analytics").exists()


def test_pm_x_1_a_published_version_keeps_its_dates_whatever_the_file_says(monkeypatch, tmp_path):
    register_policy_load()
    before = PolicyVersion.objects.get()
    document = _document()
    document["policy_versions"][0]["effective_at"] = "2025-05-01T00:00:00Z"
    _use(monkeypatch, tmp_path, document)

    report = register_policy_load(reset=True)

    assert any("2025-04-25 is published: its effective_at never change" in n for n in report.notes)
    assert PolicyVersion.objects.get().effective_at == before.effective_at


def test_pm_x_1_the_loader_never_touches_the_text_the_dpo_pasted(monkeypatch, tmp_path):
    register_policy_load()
    PolicyVersion.objects.update(text="# Qwen Chat Privacy Policy\n\nThe full text.")
    document = _document()
    document["policy_versions"][0]["summary"] = "A clearer summary."
    _use(monkeypatch, tmp_path, document)

    report = register_policy_load()

    version = PolicyVersion.objects.get()
    assert report.extensions[seeding.LABEL_VERSIONS].updated == 1
    assert (version.summary, version.text) == ("A clearer summary.", "# Qwen Chat Privacy Policy\n\nThe full text.")


def test_a_draft_with_the_label_of_a_published_file_version_is_not_published_by_the_loader():
    from tests.factories.consents import PolicyVersionFactory

    PolicyVersionFactory(label="2025-04-25")

    report = register_policy_load()

    assert PolicyVersion.objects.get().published_at is None
    assert any("publish it in the workbench" in n for n in report.notes)
