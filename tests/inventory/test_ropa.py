"""The record of processing activities, GDPR Art. 30(1)(a)–(g): the structure, its renderings, the command
and the admin page (POLICY-MAP II, IV, V)."""

import csv
import io
import json
import re

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from inventory import models, ropa
from inventory.ropa import JSONLD_CONTEXT_PATH, PURPOSE_ORDER, RETENTION_NOT_SET, record_of_processing, render
from privacyops.models import AuditEvent
from tests.factories import inventory as f
from tests.factories.accounts import UserFactory

pytestmark = pytest.mark.django_db

ROPA_URL = "admin:inventory_record_of_processing"


def _transfer(record, code):
    return next(t for t in record["transfers"] if t["code"] == code)


def _run(*args) -> str:
    out = io.StringIO()
    call_command("ropa", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


# --- The structure --------------------------------------------------------------------------------


def test_pm_ii_record_lists_every_purpose_and_the_controller_identity(seeded, settings):
    settings.CONTROLLER_REPRESENTATIVE = "EU Representative Ltd, Dublin"
    record = record_of_processing()
    assert [p["code"] for p in record["purposes"]] == list(
        models.Purpose.objects.order_by(*PURPOSE_ORDER).values_list("code", flat=True)
    )
    assert record["purposes"][0]["code"] == "provide-service"  # the policy's table first, then PM-II-7
    assert len(record["purposes"]) == 14
    controller = record["controller"]
    assert controller["name"] == settings.CONTROLLER_NAME
    assert controller["representative"] == "EU Representative Ltd, Dublin"
    assert controller["dpo"] == {
        "name": settings.DPO_NAME,
        "email": settings.DPO_EMAIL,
        "postal_address": settings.DPO_POSTAL_ADDRESS,
    }
    assert record["security_measures"] == settings.SECURITY_MEASURES


def test_pm_ii_5_model_improvement_uses_user_content_only_de_identified(seeded):
    record = record_of_processing()
    purpose = next(p for p in record["purposes"] if p["code"] == "model-improvement")
    forms = {c["code"]: c["form"] for c in purpose["categories"]}
    assert forms["user-content"] == "de-identified"


def test_pm_ii_bases_are_listed_generally_and_per_jurisdiction_with_condition(seeded):
    record = record_of_processing()
    marketing = next(p for p in record["purposes"] if p["code"] == "marketing")
    general = [b for b in marketing["bases"] if b["jurisdiction"] is None]
    assert [b["code"] for b in general] == ["consent"]
    assert any(b["jurisdiction"] == "US-CA" for b in marketing["bases"])
    # General bases come first, then per jurisdiction.
    assert marketing["bases"][0]["jurisdiction"] is None
    assert any(b["condition"] for b in marketing["bases"])


def test_pm_v_3_unspecified_mechanism_is_flagged_amber(seeded):
    record = record_of_processing()
    cn = _transfer(record, "sg-to-cn")
    assert (cn["mechanism"], cn["flag"]) == ("unspecified", "amber")
    assert any(fl["severity"] == "amber" and "sg-to-cn" in fl["text"] for fl in record["flags"])


def test_pm_v_3_transfer_without_mechanism_is_flagged_red(seeded):
    f.TransferFactory(code="sg-to-us", to_country="US", mechanism=models.Transfer.Mechanism.NONE)
    record = record_of_processing()
    assert _transfer(record, "sg-to-us")["flag"] == "red"
    assert any(fl["severity"] == "red" and "sg-to-us" in fl["text"] for fl in record["flags"])


def test_a_purpose_without_basis_is_flagged_red():
    f.PurposeFactory(code="orphan-purpose")
    record = record_of_processing()
    (purpose,) = record["purposes"]
    assert [fl["severity"] for fl in purpose["flags"]] == ["red"]


def _retention(record, code):
    return next(r for r in record["retention"] if r["category"] == code)


def _confirm_rule(code):
    from retention.models import RetentionRule

    RetentionRule.objects.filter(code=code).update(enabled=True, confirmed_at=timezone.now())


def test_pm_vi_1_retention_is_not_set_without_a_retention_source(seeded, monkeypatch):
    monkeypatch.setattr(ropa, "_retention_source", None)
    record = record_of_processing()
    assert {r["period"] for r in record["retention"]} == {RETENTION_NOT_SET}
    assert len(record["retention"]) == models.DataCategory.objects.count()
    assert all(c["retention"] == RETENTION_NOT_SET for p in record["purposes"] for c in p["categories"])


def test_pm_vi_1_a_category_without_any_rule_is_not_set(seeded):
    assert _retention(record_of_processing(), "account-information")["period"] == RETENTION_NOT_SET


def test_pm_vi_1_a_seeded_rule_shows_as_awaiting_confirmation(seeded):
    record = record_of_processing()
    assert _retention(record, "log-data")["period"] == "rule awaiting confirmation: P180D delete from created"
    assert _retention(record, "user-content")["period"] == "rule awaiting confirmation: P30D delete from account closure"
    (rule,) = _retention(record, "log-data")["rules"]
    assert (rule["code"], rule["state"]) == ("log-data-180d", "awaiting confirmation")


def test_pm_vi_1_the_enabled_rule_is_the_retention_in_every_rendering(seeded):
    _confirm_rule("log-data-180d")
    record = record_of_processing()

    assert _retention(record, "log-data")["period"] == "P180D delete from created"
    assert {c["retention"] for p in record["purposes"] for c in p["categories"] if c["code"] == "log-data"} == {
        "P180D delete from created"
    }
    rows = list(csv.DictReader(io.StringIO(render(record, "csv"))))
    assert {r["retention"] for r in rows if r["category_code"] == "log-data"} == {"P180D delete from created"}
    document = json.loads(render(record, "jsonld"))
    log_data = next(c for c in document["personalDataCategories"] if c["identifier"] == "log-data")
    assert log_data["hasStorageCondition"]["description"] == "P180D delete from created"
    assert json.loads(render(record, "json"))["retention"] == record["retention"]


def test_pm_vi_1_a_store_specific_rule_is_listed_after_the_category_rule(seeded):
    from retention.models import RetentionRule

    _confirm_rule("user-content-30d-after-closure")
    store = f.DataStoreFactory(code="django-chat-archive")
    RetentionRule.objects.create(
        code="archive-7d",
        name="Archive",
        category=models.DataCategory.objects.get(code="user-content"),
        store=store,
        period="P7D",
    )

    text = _retention(record_of_processing(), "user-content")["period"]

    assert text == (
        "P30D delete from account closure; in django-chat-archive: rule awaiting confirmation: P7D delete from created"
    )


def test_pm_vi_1_a_disabled_confirmed_rule_is_not_the_retention(seeded):
    from retention.models import RetentionRule

    RetentionRule.objects.filter(code="log-data-180d").update(enabled=False, confirmed_at=timezone.now())
    assert _retention(record_of_processing(), "log-data")["period"] == RETENTION_NOT_SET


def test_pm_vi_1_each_category_lists_the_stores_it_lives_in(seeded):
    store = f.DataStoreFactory(code="django-chat-test")
    store.categories.add(models.DataCategory.objects.get(code="log-data"))

    record = record_of_processing()

    assert "django-chat-test" in _retention(record, "log-data")["stores"]
    assert "django-chat-test" not in _retention(record, "account-information")["stores"]
    rows = list(csv.DictReader(io.StringIO(render(record, "csv"))))
    assert all("django-chat-test" in r["stores"] for r in rows if r["category_code"] == "log-data")


def test_pm_vi_1_the_admin_page_shows_retention_and_stores_in_f(client, seeded, dpo):
    _confirm_rule("log-data-180d")
    f.DataStoreFactory(code="django-chat-test").categories.add(models.DataCategory.objects.get(code="log-data"))

    page = client.get(reverse(ROPA_URL)).content.decode()

    section = page.split('id="ropa-retention"')[1].split("</section>")[0]
    row = section.split('id="retention-log-data"')[1].split("</tr>")[0]
    assert "P180D delete from created" in row and "django-chat-test" in row and 'data-state="enabled"' in row
    usage = section.split('id="retention-usage-data"')[1].split("</tr>")[0]
    assert "rule awaiting confirmation" in usage


def test_pm_iv_recipients_by_category_and_by_name(seeded):
    record = record_of_processing()
    assert len(record["recipient_categories"]) == 6
    affiliates = next(rc for rc in record["recipient_categories"] if rc["code"] == "group-affiliates")
    assert len(affiliates["recipients"]) == 3


def test_the_record_reads_the_register_in_a_fixed_number_of_queries(seeded, django_assert_max_num_queries):
    with django_assert_max_num_queries(20):
        record_of_processing()


# --- Renderings and the command -------------------------------------------------------------------


def test_jsonld_parses_and_embeds_the_shipped_context(seeded):
    document = json.loads(_run("--format", "jsonld"))
    shipped = json.loads(JSONLD_CONTEXT_PATH.read_text(encoding="utf-8"))
    assert document["@context"] == shipped["@context"]
    assert shipped["@context"]["dpv"] == "https://w3id.org/dpv#"
    assert document["@type"] == "DataProcessingRecord"
    # The terms the record uses are DPV's.
    for term in ("hasPurpose", "hasPersonalData", "hasLegalBasis", "hasRecipient", "hasDataSubject"):
        assert shipped["@context"][term] == f"dpv:{term}" or shipped["@context"][term]["@id"] == f"dpv:{term}"
    processes = document["hasProcess"]
    assert len(processes) == models.Purpose.objects.count()
    service = next(p for p in processes if p["identifier"] == "provide-service")
    assert service["hasLegalBasis"] and service["hasPersonalData"]
    cn = next(t for t in document["transfers"] if t["identifier"] == "sg-to-cn")
    assert cn["flag"] == "amber" and (cn["hasCountry"], cn["hasThirdCountry"]) == ("loc:SG", "loc:CN")
    assert document["hasDataController"]["hasDataProtectionOfficer"]["hasContact"]


def test_jsonld_terms_are_all_defined_in_the_context(seeded):
    """Every key the renderer writes is a keyword or a term of the shipped context (nothing is dropped)."""
    document = json.loads(_run("--format", "jsonld"))
    context = document["@context"]
    seen = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key != "@context":
                    seen.add(key)
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(document)
    assert {k for k in seen if not k.startswith("@")} <= set(context)


def test_csv_has_a_header_and_one_row_per_activity(seeded):
    rows = list(csv.reader(io.StringIO(_run("--format", "csv"))))
    header, body = rows[0], rows[1:]
    assert header[:6] == ["purpose_code", "purpose_name", "purpose_kind", "policy_ref", "category_code", "category_name"]
    without_activity = models.Purpose.objects.filter(activities__isnull=True).count()
    assert len(body) == models.ProcessingActivity.objects.count() + without_activity
    by_key = {(r[0], r[4]): dict(zip(header, r, strict=True)) for r in body}
    improve = by_key[("model-improvement", "user-content")]
    assert improve["form"] == "de-identified"
    assert "sg-to-cn" in by_key[("provide-service", "user-content")]["transfers"]
    assert "amber" in by_key[("provide-service", "user-content")]["transfers"]
    assert {r[0] for r in body} == set(models.Purpose.objects.values_list("code", flat=True))


def test_json_is_the_structure(seeded):
    data = json.loads(_run("--format", "json"))
    assert data["controller"]["name"]
    assert {p["code"] for p in data["purposes"]} == set(models.Purpose.objects.values_list("code", flat=True))


def test_command_writes_to_a_file(seeded, tmp_path):
    target = tmp_path / "ropa.csv"
    call_command("ropa", "--format", "csv", "--output", str(target), stdout=io.StringIO(), stderr=io.StringIO())
    assert target.read_text(encoding="utf-8").startswith("purpose_code,")


def test_command_refuses_an_unknown_format():
    with pytest.raises(CommandError, match=re.escape("“xml”: use --format csv | json | jsonld")):
        call_command("ropa", "--format", "xml")


def test_render_refuses_an_unknown_format():
    with pytest.raises(ValueError, match="csv, json, jsonld"):
        render({}, "pdf")


# --- The admin page -------------------------------------------------------------------------------


def test_admin_page_renders_for_the_dpo(client, seeded, django_assert_max_num_queries):
    f.TransferFactory(code="sg-to-us", to_country="US", mechanism=models.Transfer.Mechanism.NONE)
    client.force_login(f.staff_in_role("DPO"))
    with django_assert_max_num_queries(30):
        response = client.get(reverse(ROPA_URL))
    assert response.status_code == 200
    page = response.content.decode()
    for purpose in models.Purpose.objects.all():
        assert f'id="purpose-{purpose.code}"' in page
    assert response.context["record"]["controller"]["name"] in page
    assert 'data-flag="amber"' in page and 'data-flag="red"' in page
    assert "@media print" in page
    for fmt in ("csv", "json", "jsonld"):
        assert f"{reverse(ROPA_URL)}?format={fmt}" in page


def test_admin_page_downloads_each_format_and_audits_it(client, seeded):
    client.force_login(f.staff_in_role("Auditor"))
    response = client.get(reverse(ROPA_URL), {"format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response.content.decode().startswith("purpose_code,")
    jsonld = client.get(reverse(ROPA_URL), {"format": "jsonld"})
    assert json.loads(jsonld.content)["@type"] == "DataProcessingRecord"
    assert client.get(reverse(ROPA_URL), {"format": "pdf"}).status_code == 400
    assert [e.details["format"] for e in AuditEvent.objects.filter(action="register.record_of_processing.exported")] == [
        "jsonld",
        "csv",
    ]


def test_admin_page_is_refused_to_non_staff(client, seeded):
    client.force_login(UserFactory())
    response = client.get(reverse(ROPA_URL))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_admin_page_needs_the_view_purpose_permission(client, seeded):
    client.force_login(f.staff_with_permissions("inventory.view_transfer"))
    assert client.get(reverse(ROPA_URL)).status_code == 403


def test_purpose_changelist_links_to_the_record(client, seeded):
    client.force_login(f.staff_in_role("DPO"))
    page = client.get(reverse("admin:inventory_purpose_changelist")).content.decode()
    assert reverse(ROPA_URL) in page
