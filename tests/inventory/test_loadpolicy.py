"""`manage.py loadpolicy`: idempotent, keeps what the DPO edited, refuses a bad file whole, audits changes."""

import io
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from inventory.models import (
    DataCategory,
    DataStore,
    Jurisdiction,
    ProcessingActivity,
    Purpose,
    PurposeBasis,
    Transfer,
)
from inventory.policy import DEFAULT_POLICY_PATH, SECTIONS, PolicyFileError, policy_file_read, register_policy_load
from inventory.services import DATASTORE_SYNC_LABEL, register_entry_save
from privacyops.models import AuditEvent
from tests.factories.accounts import StaffFactory
from tests.factories.inventory import PurposeFactory

pytestmark = pytest.mark.django_db

MODELS = [s.model for s in SECTIONS]


def _load(*args) -> str:
    out = io.StringIO()
    call_command("loadpolicy", *args, stdout=out)
    return out.getvalue()


def _row_counts() -> dict[str, int]:
    return {m.__name__: m.objects.count() for m in MODELS}


def _registry_store_codes() -> set[str]:
    from privacyops.privacy import registry

    return {d.store_code for d in registry.personal()}


def _seed() -> dict:
    return yaml.safe_load(DEFAULT_POLICY_PATH.read_text())


def _write(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False))
    return path


def _purpose(document: dict, code: str) -> dict:
    return next(p for p in document["purposes"] if p["code"] == code)


def test_loading_twice_gives_identical_rows_and_the_second_run_changes_nothing():
    first = register_policy_load()
    rows = _row_counts()
    events = AuditEvent.objects.count()

    second = register_policy_load()

    assert _row_counts() == rows
    # the register's rows, plus one data store per app the code's registry names (DATASTORE_SYNC_LABEL)
    assert first.totals.created + first.extensions[DATASTORE_SYNC_LABEL].created == sum(rows.values()) > 0
    assert second.totals.created == second.totals.updated == second.totals.kept == 0
    assert {label: c.unchanged for label, c in second.counts.items()} == {label: c.created for label, c in first.counts.items()}
    assert not second.changed
    assert second.audit_event_id is None
    assert AuditEvent.objects.count() == events


def test_the_command_reports_nothing_changed_on_a_second_run():
    _load()
    output = _load()
    assert "Total" in output
    assert "0 created, 0 updated" in output
    assert "nothing written" in output


def test_a_changing_run_writes_one_audit_event_with_counts_reset_flag_and_file_digest():
    before = AuditEvent.objects.count()
    report = register_policy_load()

    events = list(AuditEvent.objects.order_by("id")[before:])
    assert len(events) == 1
    event = events[0]
    assert event.pk == report.audit_event_id
    assert event.action == "register.policy_loaded"
    assert event.actor_label == AuditEvent.SYSTEM_ACTOR
    assert event.details["reset"] is False
    assert event.details["file_digest"] == report.file_digest == policy_file_read().digest
    assert event.details["counts"]["purposes"]["created"] == Purpose.objects.count()


def test_every_seeded_row_carries_its_seed_digest():
    register_policy_load()
    for model in MODELS:
        rows = model.objects.all()
        if model is DataStore:  # the registry's stores come from the code, not from the seed file
            rows = rows.exclude(code__in=_registry_store_codes())
        digests = list(rows.values_list("seed_digest", flat=True))
        assert all(len(d) == 64 for d in digests), model.__name__


def test_a_row_the_dpo_edited_is_kept_then_overwritten_with_reset():
    register_policy_load()
    marketing = Purpose.objects.get(code="marketing")
    seeded_name = marketing.name
    marketing.name = "Newsletters"
    register_entry_save(actor=StaffFactory(), instance=marketing, changed_fields=["name"])
    before = AuditEvent.objects.count()

    output = _load()

    assert Purpose.objects.get(code="marketing").name == "Newsletters"
    assert "kept (edited by DPO): purposes: marketing" in output
    assert "1 kept (edited by DPO)" in output
    assert AuditEvent.objects.count() == before  # nothing changed, nothing audited

    output = _load("--reset")

    assert Purpose.objects.get(code="marketing").name == seeded_name
    event = AuditEvent.objects.order_by("-id").first()
    assert event.action == "register.policy_loaded"
    assert event.details["reset"] is True
    assert event.details["counts"]["purposes"]["updated"] == 1
    assert "kept" not in output.split("Total")[1].replace("0 kept", "")
    # the reset row is the seed's again: the next plain run leaves it unchanged
    assert register_policy_load().counts["purposes"].unchanged == Purpose.objects.count()


def test_an_edited_link_counts_as_an_edit():
    register_policy_load()
    Purpose.objects.get(code="marketing").subject_categories.remove(
        *Purpose.objects.get(code="marketing").subject_categories.filter(code="correspondents")
    )
    basis = PurposeBasis.objects.get(purpose__code="marketing", basis__code="consent", jurisdiction__isnull=True)
    basis.condition = "always"
    basis.save()

    report = register_policy_load()

    assert report.counts["purposes"].kept == 1
    assert report.counts["purpose bases"].kept == 1
    assert PurposeBasis.objects.get(pk=basis.pk).condition == "always"
    assert not Purpose.objects.get(code="marketing").subject_categories.filter(code="correspondents").exists()


def test_a_changed_seed_updates_rows_the_dpo_did_not_edit_and_keeps_those_it_did(tmp_path):
    register_policy_load()
    edited = Purpose.objects.get(code="legal-compliance")
    edited.description = "Our own wording."
    edited.save()
    document = _seed()
    _purpose(document, "legal-compliance")["description"] = "A new seed description."
    _purpose(document, "marketing")["description"] = "A new seed description."
    _purpose(document, "model-improvement")["activities"][1]["note"] = "Ratings are kept with the conversation."

    report = register_policy_load(path=_write(tmp_path, document))

    assert Purpose.objects.get(code="marketing").description == "A new seed description."
    assert Purpose.objects.get(code="legal-compliance").description == "Our own wording."
    assert report.counts["purposes"].updated == 1
    assert report.counts["purposes"].kept == 1
    assert report.counts["processing activities"].updated == 1
    assert ProcessingActivity.objects.get(purpose__code="model-improvement", category__code="feedback").note


def test_rows_not_in_the_file_are_left_alone_and_a_deleted_seeded_row_comes_back():
    register_policy_load()
    own = PurposeFactory(code="dpo-own-purpose")
    Transfer.objects.get(code="sg-to-id").delete()

    report = register_policy_load()

    assert Purpose.objects.filter(pk=own.pk).exists()
    assert report.counts["transfers"].created == 1
    assert Transfer.objects.filter(code="sg-to-id").exists()


def test_a_bad_seed_file_raises_a_command_error_naming_the_entry_and_field_and_writes_nothing(tmp_path):
    document = _seed()
    _purpose(document, "marketing")["activities"].append({"category": "acount-information"})
    path = _write(tmp_path, document)
    before = AuditEvent.objects.count()

    with pytest.raises(CommandError) as caught:
        _load("--file", str(path))

    message = str(caught.value)
    assert "purposes[marketing].activities[acount-information].category" in message
    assert "unknown data category code 'acount-information'" in message
    assert "nothing was written" in message
    assert all(count == 0 for count in _row_counts().values())
    assert AuditEvent.objects.count() == before


def test_a_bad_seed_file_leaves_a_loaded_register_exactly_as_it_was(tmp_path):
    register_policy_load()
    document = _seed()
    document["data_categories"][0]["description"] = "Would change"
    document["transfers"][0]["mechanism"] = "handshake"
    rows = _row_counts()

    with pytest.raises(PolicyFileError, match=r"transfers\[sg-to-id\]\.mechanism"):
        register_policy_load(path=_write(tmp_path, document))

    assert _row_counts() == rows
    assert DataCategory.objects.get(code=document["data_categories"][0]["code"]).description != "Would change"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["purposes"][0].update(colour="blue"), "purposes[provide-service].colour: unknown field"),
        (lambda d: d.update(cookies_banner=[]), "cookies_banner: unknown section"),
        (lambda d: d["purposes"][0].update(kind="side"), "purposes[provide-service].kind"),
        (lambda d: d["purposes"][0]["activities"][0].update(form="blurred"), "activities[account-information].form"),
        (lambda d: d["purposes"][0]["bases"][0].update(jurisdiction="XX"), "unknown jurisdiction code 'XX'"),
        (lambda d: d["recipients"][0].update(country="Singapore"), "recipients[alibaba-group-affiliates-sg].country"),
        (lambda d: d["transfers"][0].update(to_country="SG"), "transfers[sg-to-id].to_country: a transfer must cross a border"),
        (lambda d: d["jurisdictions"][0].update(complaint_url="not a url"), "jurisdictions[EU].complaint_url"),
        (lambda d: d["purposes"][0].update(position="first"), "purposes[provide-service].position: must be a whole number"),
        (lambda d: d["lawful_bases"].append(dict(d["lawful_bases"][0])), "lawful_bases[contract]: appears twice"),
        (lambda d: d["data_categories"][0].pop("name"), "data_categories[account-information].name: required"),
    ],
)
def test_validation_names_the_entry_and_field_at_fault(tmp_path, change, expected):
    document = _seed()
    change(document)
    with pytest.raises(PolicyFileError) as caught:
        policy_file_read(path=_write(tmp_path, document))
    assert expected in str(caught.value)


def test_norway_is_a_country_code_not_false(tmp_path):
    # YAML 1.1 reads a bare NO as a boolean; the loader must not.
    path = tmp_path / "policy.yaml"
    path.write_text(
        "jurisdictions:\n"
        "  - code: EU\n"
        "    name: Europe\n"
        "    countries: [FR, NO, IS]\n"
        "  - code: DEFAULT\n"
        "    name: Everywhere else\n"
        "    needs_review: true\n"
    )
    policy = policy_file_read(path=path)
    assert policy.rows["jurisdictions"][0]["countries"] == ["FR", "NO", "IS"]
    register_policy_load(path=path)
    assert Jurisdiction.objects.get(code="EU").countries == ["FR", "NO", "IS"]
    assert Jurisdiction.objects.get(code="DEFAULT").needs_review is True


def test_the_project_seed_file_is_valid():
    policy = policy_file_read()
    assert policy.codes("purposes")
    assert len(policy.digest) == 64


def test_reading_and_validating_the_seed_file_needs_no_database(django_assert_num_queries):
    # start-up checks (the registry's category check) read the file without a database
    with django_assert_num_queries(0):
        policy = policy_file_read()
    assert "account-information" in policy.codes("data_categories")
