"""Import and export of the register: natural keys, all-or-nothing imports with clear errors, one audit
event per import and per export, formula escaping, and separate import / export permissions."""

import csv
import hashlib
import io
import json

import openpyxl
import pytest
import tablib
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from inventory import models
from inventory.resources import (
    REGISTER_FORMATS,
    RESOURCES,
    RegisterCSV,
    TransferResource,
    escape_formula,
    unescape_formula,
)
from inventory.services import register_import_apply
from privacyops.models import AuditEvent
from tests.factories import inventory as f

pytestmark = pytest.mark.django_db

FORMAT_INDEX = {fmt().get_title(): i for i, fmt in enumerate(REGISTER_FORMATS)}


def _url(model, view, *args):
    return reverse(f"admin:inventory_{model._meta.model_name}_{view}", args=args)


def export_file(client, model, fmt: str) -> bytes:
    """Export every row of `model` through the admin's export page, all columns selected."""
    resource = RESOURCES[model]
    data = {"format": FORMAT_INDEX[fmt], "resource": "0"}
    for field in resource().get_export_order():
        data[f"{resource.__name__.lower()}_{field}"] = "on"
    response = client.post(_url(model, "export"), data)
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Disposition"].startswith("attachment")
    return response.content


def preview_import(client, model, fmt: str, content: bytes, name: str | None = None):
    upload = SimpleUploadedFile(name or f"register.{fmt}", content)
    return client.post(_url(model, "import"), {"resource": "0", "format": FORMAT_INDEX[fmt], "import_file": upload})


def confirm_import(client, model, preview):
    confirm = preview.context["confirm_form"]
    assert confirm is not None, "the preview offered no confirmation"
    return client.post(_url(model, "process_import"), dict(confirm.initial))


def snapshot(model) -> list:
    """Every row of `model` as its resource exports it, plus the timestamps an import must not touch."""
    rows = RESOURCES[model]().export(queryset=model.objects.order_by("pk")).dict
    stamps = list(model.objects.order_by("pk").values_list(*[n for n in ("updated_at",) if hasattr(model, "updated_at")]))
    return [rows, stamps, model.objects.count()]


# --- Round trip -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(RESOURCES), ids=lambda m: m._meta.model_name)
def test_json_export_imports_back_without_any_change(client, dpo, seeded, model):
    if not model.objects.exists():
        f.DataStoreFactory()  # the seed has no data store yet (the next issue fills them from code)
    before = snapshot(model)
    content = export_file(client, model, "json")
    assert len(json.loads(content)) == model.objects.count()

    preview = preview_import(client, model, "json", content)
    assert preview.status_code == 200
    result = preview.context["result"]
    assert not result.has_errors() and not result.has_validation_errors()
    assert result.totals["skip"] == model.objects.count()
    assert result.totals["new"] == result.totals["update"] == 0

    assert confirm_import(client, model, preview).status_code == 302
    assert snapshot(model) == before
    event = AuditEvent.objects.filter(action=f"register.{model._meta.model_name}.imported").get()
    assert event.details["skipped"] == model.objects.count()
    assert event.details["new"] == event.details["updated"] == event.details["deleted"] == 0
    assert event.details["sha256"] == hashlib.sha256(content).hexdigest()
    assert event.details["format"] == "json"


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_spreadsheet_exports_import_back_without_any_change(client, dpo, seeded, fmt):
    for model in (models.Transfer, models.Jurisdiction, models.PurposeBasis):
        before = snapshot(model)
        preview = preview_import(client, model, fmt, export_file(client, model, fmt))
        result = preview.context["result"]
        assert not result.has_errors() and not result.has_validation_errors(), model
        assert result.totals["skip"] == model.objects.count()
        confirm_import(client, model, preview)
        assert snapshot(model) == before


# --- Applying an import ---------------------------------------------------------------------------


def test_pm_vii_2_import_applies_changes_with_one_audit_event(client, dpo, seeded):
    content = (
        b"code,name,description,policy_ref,dpv,needs_review,review_note,category,country,role,purposes,data_categories\n"
        b"acme-analytics,Acme Analytics,Counts visits.,PM-IV-3,,0,,analytics-and-search,US,processor,"
        b'provide-service,"usage-data,cookies"\n'
        b"acme-support,Acme Support,Answers tickets.,PM-IV-2,,0,,service-providers,SG,processor,support-and-improvement,"
        b"communication-information\n"
    )
    preview = preview_import(client, models.Recipient, "csv", content)
    result = preview.context["result"]
    assert not result.has_validation_errors(), [r.error_dict for r in result.invalid_rows]
    assert result.totals["new"] == 2
    assert not models.Recipient.objects.filter(code__startswith="acme-").exists()  # the preview wrote nothing

    response = confirm_import(client, models.Recipient, preview)
    assert response.status_code == 302
    acme = models.Recipient.objects.get(code="acme-analytics")
    assert acme.category.code == "analytics-and-search"
    assert sorted(c.code for c in acme.data_categories.all()) == ["cookies", "usage-data"]
    assert [p.code for p in acme.purposes.all()] == ["provide-service"]
    (event,) = AuditEvent.objects.filter(action="register.recipient.imported")
    assert event.details["new"] == 2 and event.details["updated"] == 0
    assert event.details["codes"]["new"] == ["acme-analytics", "acme-support"]
    assert event.details["sha256"] == hashlib.sha256(content).hexdigest()
    assert event.actor_label == dpo.email
    # One event for the file, none per row.
    assert not AuditEvent.objects.filter(action__in=["register.recipient.created", "register.recipient.updated"]).exists()


def test_link_rows_are_matched_by_the_codes_of_both_ends(client, dpo, seeded):
    row = models.PurposeBasis.objects.get(purpose__code="marketing", basis__code="consent", jurisdiction__isnull=True)
    content = (
        "purpose,basis,jurisdiction,condition,needs_review,review_note\n"
        f"marketing,consent,,Changed condition,{int(row.needs_review)},{row.review_note}\n"
    ).encode()
    count = models.PurposeBasis.objects.count()
    preview = preview_import(client, models.PurposeBasis, "csv", content)
    assert preview.context["result"].totals["update"] == 1
    confirm_import(client, models.PurposeBasis, preview)
    row.refresh_from_db()
    assert row.condition == "Changed condition"
    assert models.PurposeBasis.objects.count() == count


BAD_RECIPIENTS = (
    b"code,name,category,country,role,purposes,data_categories,needs_review\n"
    b"ok-one,Fine,service-providers,SG,processor,provide-service,usage-data,0\n"
    b"bad-code,Unknown category,no-such-category,SG,processor,provide-service,usage-data,0\n"
    b'bad-choice,Bad role,service-providers,SG,owner,provide-service,"usage-data,nonsense",0\n'
    b"ok-two,Fine too,service-providers,SG,processor,,,0\n"
)


def test_a_file_with_bad_rows_imports_nothing_and_says_where_and_why(client, dpo, seeded):
    count = models.Recipient.objects.count()
    preview = preview_import(client, models.Recipient, "csv", BAD_RECIPIENTS)
    assert preview.status_code == 200
    assert "confirm_form" not in preview.context  # no way to apply it
    result = preview.context["result"]
    invalid = {row.number: row.field_specific_errors for row in result.invalid_rows}
    assert set(invalid) == {2, 3}
    assert "no recipient category has the code “no-such-category”" in invalid[2]["category"][0]
    assert "owner" in invalid[3]["role"][0]
    assert "nonsense" in invalid[3]["data_categories"][0]
    page = preview.content.decode()
    assert "Nothing was imported" in page
    assert "Row 2, column <code>category</code>: no recipient category has the code “no-such-category”" in page
    assert "Row 3, column <code>role</code>:" in page
    assert models.Recipient.objects.count() == count
    assert not AuditEvent.objects.filter(action="register.recipient.imported").exists()


def test_rows_that_break_between_preview_and_confirm_roll_back_the_whole_file(client, dpo, seeded):
    f.RecipientCategoryFactory(code="short-lived")
    content = (
        b"code,name,category,country,role,needs_review\n"
        b"first-new,First,service-providers,SG,processor,0\n"
        b"second-new,Second,short-lived,SG,processor,0\n"
    )
    preview = preview_import(client, models.Recipient, "csv", content)
    assert preview.context["result"].totals["new"] == 2
    models.RecipientCategory.objects.filter(code="short-lived").delete()

    response = confirm_import(client, models.Recipient, preview)
    assert response.status_code == 200
    assert "Nothing was imported" in response.content.decode()
    assert not models.Recipient.objects.filter(code__in=["first-new", "second-new"]).exists()
    assert not AuditEvent.objects.filter(action="register.recipient.imported").exists()


def test_the_service_rolls_back_every_row_when_one_breaks_a_constraint(django_user_model):
    registry = f.small_register()
    actor = f.staff_in_role("DPO")
    dataset = tablib.Dataset(headers=["code", "name", "from_country", "to_country", "mechanism", "needs_review"])
    dataset.append(["sg-to-id", "Fine", "SG", "ID", "scc", "0"])
    dataset.append(["sg-to-sg", "Not a transfer", "SG", "SG", "scc", "0"])  # the database check refuses it
    dataset.append(["sg-to-cn", "Changed name", "SG", "CN", "unspecified", "1"])
    result = register_import_apply(actor=actor, resource=TransferResource(), dataset=dataset, file_format="csv", file_bytes=b"x")
    assert result.has_validation_errors()
    assert [row.number for row in result.invalid_rows] == [2]
    assert not models.Transfer.objects.filter(code__in=["sg-to-id", "sg-to-sg"]).exists()
    registry["amber"].refresh_from_db()
    assert registry["amber"].name != "Changed name"
    assert not AuditEvent.objects.filter(action="register.transfer.imported").exists()


# --- Export ---------------------------------------------------------------------------------------


def test_pm_vii_2_export_is_audited_with_row_count_and_format(client, dpo, seeded):
    export_file(client, models.Purpose, "xlsx")
    (event,) = AuditEvent.objects.filter(action="register.purpose.exported")
    assert event.details == {"format": "xlsx", "rows": models.Purpose.objects.count()}
    assert event.actor_label == dpo.email


def test_export_writes_codes_not_ids(client, dpo, seeded):
    rows = json.loads(export_file(client, models.Transfer, "json"))
    cn = next(r for r in rows if r["code"] == "sg-to-cn")
    assert cn["recipient_category"] == "group-affiliates"
    assert "user-content" in cn["data_categories"].split(",")
    assert "id" not in cn and "seed_digest" not in cn and "updated_at" not in cn


FORMULA = '=HYPERLINK("https://attacker.example","click")'


@pytest.fixture
def formula_category():
    return f.DataCategoryFactory(code="formula-test", description=FORMULA, example_fields="+1+1, @SUM(A1)")


def test_csv_export_escapes_formulae_and_imports_them_back_unchanged(client, dpo, formula_category):
    content = export_file(client, models.DataCategory, "csv")
    rows = list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))
    row = next(r for r in rows if r["code"] == "formula-test")
    assert row["description"] == "'" + FORMULA
    assert row["example_fields"] == "'+1+1, @SUM(A1)"
    assert not any(cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r.values() if cell)

    preview = preview_import(client, models.DataCategory, "csv", content)
    assert preview.context["result"].totals["skip"] == models.DataCategory.objects.count()


def test_xlsx_export_escapes_formulae(client, dpo, formula_category):
    content = export_file(client, models.DataCategory, "xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(content)).active
    cells = [cell for row in sheet.iter_rows() for cell in row]
    assert not [c.coordinate for c in cells if c.data_type == "f"]  # no formula cell anywhere
    escaped = [c for c in cells if c.value == "'" + FORMULA]
    assert len(escaped) == 1 and escaped[0].data_type == "s"
    preview = preview_import(client, models.DataCategory, "xlsx", content)
    assert preview.context["result"].totals["skip"] == models.DataCategory.objects.count()


@pytest.mark.parametrize(
    "value",
    ["=1+1", "+1", "-2", "@A1", "\tx", "'=already", "''", "'", "plain", "it's", "", None, 3],
)
def test_formula_escaping_is_reversible(value):
    assert unescape_formula(escape_formula(value)) == value
    escaped = escape_formula(value)
    assert not (isinstance(escaped, str) and escaped[:1] in ("=", "+", "-", "@", "\t", "\r"))


def test_json_export_is_not_escaped(client, dpo, formula_category):
    rows = json.loads(export_file(client, models.DataCategory, "json"))
    assert next(r for r in rows if r["code"] == "formula-test")["description"] == FORMULA


def test_csv_format_reads_escaped_cells_back():
    dataset = RegisterCSV(encoding="utf-8").create_dataset("code,description\nx,'=1+1\n")
    assert dataset.dict == [{"code": "x", "description": "=1+1"}]


# --- Permissions ----------------------------------------------------------------------------------


def test_view_and_export_without_import_permission(client, seeded):
    client.force_login(f.staff_with_permissions("inventory.view_transfer", "inventory.export_transfer"))
    page = client.get(_url(models.Transfer, "changelist")).content.decode()
    assert _url(models.Transfer, "export") in page
    assert _url(models.Transfer, "import") not in page
    assert client.get(_url(models.Transfer, "import")).status_code == 403
    assert client.post(_url(models.Transfer, "process_import"), {}).status_code == 403
    assert export_file(client, models.Transfer, "json")


def test_view_and_import_without_export_permission(client, seeded):
    client.force_login(
        f.staff_with_permissions(
            "inventory.view_transfer", "inventory.import_transfer", "inventory.add_transfer", "inventory.change_transfer"
        )
    )
    page = client.get(_url(models.Transfer, "changelist")).content.decode()
    assert _url(models.Transfer, "import") in page
    assert _url(models.Transfer, "export") not in page
    assert client.get(_url(models.Transfer, "export")).status_code == 403
    assert client.post(_url(models.Transfer, "export"), {"format": FORMAT_INDEX["csv"], "resource": "0"}).status_code == 403
    assert not AuditEvent.objects.filter(action="register.transfer.exported").exists()
    assert client.get(_url(models.Transfer, "import")).status_code == 200


def test_auditor_may_export_but_not_import(client, seeded):
    client.force_login(f.staff_in_role("Auditor"))
    assert client.get(_url(models.Purpose, "import")).status_code == 403
    assert export_file(client, models.Purpose, "csv")
