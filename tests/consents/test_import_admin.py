"""Admin import of historical consents: ConsentImportMixin and the resources behind it (issue 4 §7).

The mixin is exercised on an admin site of this module's own (URLs below), so these tests prove the mixin
itself; `test_the_workbench_ledger_offers_the_import` checks that the workbench's ConsentEventAdmin carries it.
"""

import datetime
import hashlib
import io

import openpyxl
import pytest
import tablib
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import path, reverse

from consents.imports import bulk
from consents.imports.admin import ConsentImportMixin
from consents.imports.resources import ConsentEventResource, DefaultConsentEventResource
from consents.models import ConsentEvent, ConsentState
from privacyops.models import AuditEvent
from tests.consents.test_bulk import all_chain_problems, states_match_ledger
from tests.factories.accounts import UserFactory
from tests.factories.consents import ConsentNoticeFactory, ConsentPurposeFactory
from tests.factories.inventory import staff_in_role

site = admin.AdminSite(name="consent_import_test")


class LedgerImportAdmin(ConsentImportMixin, admin.ModelAdmin):
    pass


site.register(ConsentEvent, LedgerImportAdmin)
urlpatterns = [path("admin/", site.urls)]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

HEADER = "subject_ref,purpose,action,effective_at,language,jurisdiction,notice_version"
IMPORT_URL = "admin:consents_consentevent_import"
CONFIRM_URL = "admin:consents_consentevent_process_import"


@pytest.fixture
def purposes():
    marketing = ConsentPurposeFactory(code="marketing-communications")
    analytics = ConsentPurposeFactory(code="cookies-analytics", cookie_category="analytics")
    for purpose in (marketing, analytics):
        ConsentNoticeFactory(purpose=purpose, version="1")
    return marketing, analytics


def csv_file(lines: list[str], name="history.csv") -> io.BytesIO:
    upload = io.BytesIO(("\n".join([HEADER, *lines]) + "\n").encode("utf-8"))
    upload.name = name
    return upload


def lines_for(subjects, purposes, count=None) -> list[str]:
    marketing, analytics = purposes
    rows = []
    for n, subject in enumerate(subjects * 2 if count is None else (subjects * count)[:count]):
        purpose = marketing if n % 2 else analytics
        action = ("given", "withdrawn", "refused")[n % 3]
        when = datetime.datetime(2022, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(hours=n)
        rows.append(f"{subject.subject_ref},{purpose.code},{action},{when.isoformat()},en,,")
    return rows


def preview(client, upload, file_format=0):
    return client.post(reverse(IMPORT_URL), {"format": file_format, "import_file": upload, "resource": 0})


def confirm(client, response):
    initial = response.context["confirm_form"].initial
    return client.post(reverse(CONFIRM_URL), {key: value for key, value in initial.items() if value is not None})


def test_pm_0_2_preview_then_confirm_writes_verifiable_chains_and_state_equal_to_the_ledger(client, purposes):
    dpo = staff_in_role("DPO")
    client.force_login(dpo)
    subjects = UserFactory.create_batch(4)
    upload = csv_file(lines_for(subjects, purposes))
    content = upload.getvalue()

    response = preview(client, upload)
    assert response.status_code == 200
    assert response.context.get("confirm_form")
    assert b"All 8 rows are valid" in response.content
    assert ConsentEvent.objects.count() == 0  # the preview writes nothing

    response = confirm(client, response)
    assert response.status_code == 302
    assert ConsentEvent.objects.filter(method="import").count() == 8
    assert all_chain_problems() == []
    assert states_match_ledger([s.subject_ref for s in subjects])
    event = AuditEvent.objects.get(action=bulk.IMPORT_ACTION)
    assert event.details["sha256"] == hashlib.sha256(content).hexdigest()
    assert event.details["channel"] == "admin" and event.details["events"] == 8
    assert event.actor_id == dpo.pk
    assert set(ConsentEvent.objects.values_list("actor_label", flat=True)) == {dpo.get_username()}


def test_a_file_with_one_bad_row_imports_nothing_and_the_error_names_the_line(client, purposes):
    client.force_login(staff_in_role("DPO"))
    subject = UserFactory()
    lines = lines_for([subject], purposes)
    lines.insert(1, f"{subject.subject_ref},no-such-purpose,given,2022-01-01,en,,")  # line 3 of the file

    response = preview(client, csv_file(lines))
    assert response.status_code == 200
    assert not response.context.get("confirm_form")
    text = response.content.decode()
    assert "Nothing was imported" in text
    assert "Line 3, column <code>purpose</code>: no consent purpose has this code" in text
    assert ConsentEvent.objects.count() == 0


def test_xlsx_files_import_like_csv(client, purposes):
    client.force_login(staff_in_role("DPO"))
    subject = UserFactory()
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(HEADER.split(","))
    moment = datetime.datetime(2021, 3, 4, 5, 6)  # a spreadsheet date cell: no zone, read as UTC
    sheet.append([str(subject.subject_ref), "marketing-communications", "given", moment, "en", "", 1])
    sheet.append([str(subject.subject_ref), "marketing-communications", "withdrawn", "2022-01-01T00:00:00Z", "", "", ""])
    upload = io.BytesIO()
    workbook.save(upload)
    upload.seek(0)
    upload.name = "history.xlsx"

    response = preview(client, upload, file_format=1)
    assert response.context.get("confirm_form"), response.content.decode()[-2000:]
    confirm(client, response)
    events = list(ConsentEvent.objects.order_by("seq"))
    assert [(e.action, e.effective_at) for e in events] == [
        ("given", datetime.datetime(2021, 3, 4, 5, 6, tzinfo=datetime.UTC)),
        ("withdrawn", datetime.datetime(2022, 1, 1, tzinfo=datetime.UTC)),
    ]
    assert events[0].notice_version == "1"
    assert states_match_ledger([subject.subject_ref])


def test_the_confirm_step_is_all_or_nothing_when_the_data_changed_since_the_preview(client, purposes):
    client.force_login(staff_in_role("DPO"))
    marketing, _ = purposes
    subjects = UserFactory.create_batch(3)
    response = preview(client, csv_file(lines_for(subjects, purposes)))
    assert response.context.get("confirm_form")
    marketing.is_active = False  # withdrawn from offer between the preview and the confirmation
    marketing.save()

    response = confirm(client, response)
    assert response.status_code == 200
    assert "Nothing was imported" in response.content.decode()
    assert ConsentEvent.objects.count() == 0
    assert not AuditEvent.objects.filter(action=bulk.IMPORT_ACTION).exists()


def test_the_same_file_cannot_be_imported_twice(client, purposes):
    client.force_login(staff_in_role("DPO"))
    lines = lines_for(UserFactory.create_batch(2), purposes)
    confirm(client, preview(client, csv_file(lines)))
    assert ConsentEvent.objects.count() == 4

    response = preview(client, csv_file(lines))
    assert not response.context.get("confirm_form")
    assert "already imported" in response.content.decode()
    assert ConsentEvent.objects.count() == 4


def test_a_file_with_unknown_columns_is_refused_with_the_format(client, purposes):
    client.force_login(staff_in_role("DPO"))
    upload = io.BytesIO(b"subject,purpose,action,effective_at\nx,y,z,2020-01-01\n")
    upload.name = "wrong.csv"
    response = preview(client, upload)
    text = response.content.decode()
    assert not response.context.get("confirm_form")
    assert "unknown column “subject”" in text and "missing column “subject_ref”" in text


def test_preview_shows_the_first_rows_only(client, purposes):
    client.force_login(staff_in_role("DPO"))
    response = preview(client, csv_file(lines_for(UserFactory.create_batch(5), purposes, count=150)))
    assert b"All 150 rows are valid" in response.content
    assert b"The first 100 rows are shown" in response.content
    assert response.content.count(b'<tr class="new">') == 100


@pytest.mark.parametrize(("role", "allowed"), [("DPO", True), ("Privacy analyst", False), ("Auditor", False)])
def test_only_holders_of_the_import_permission_may_import(client, purposes, role, allowed):
    client.force_login(staff_in_role(role))
    response = client.get(reverse(IMPORT_URL))
    assert response.status_code == (200 if allowed else 403)


def test_the_workbench_ledger_offers_the_import():
    from django.contrib.admin import site as workbench

    assert isinstance(workbench._registry[ConsentEvent], ConsentImportMixin)


def _dataset(lines: list[str]) -> tablib.Dataset:
    return tablib.Dataset().load("\n".join([HEADER, *lines]) + "\n", format="csv")


def test_tuned_resource_queries_grow_with_batches_not_rows(purposes):
    subjects = UserFactory.create_batch(50)
    actor = staff_in_role("DPO")

    def run(count, name):
        resource = ConsentEventResource(source=bulk.ImportSource(name=name, sha256=name * 8, file_format="csv"))
        resource._meta.batch_size = 50
        lines = lines_for(subjects, purposes, count=count)
        with CaptureQueriesContext(connection) as queries:
            result = resource.import_data(_dataset(lines), dry_run=False, use_transactions=True, user=actor)
        assert not result.has_errors() and not result.has_validation_errors()
        return len(queries.captured_queries)

    small, large = run(100, "a"), run(400, "b")
    # 300 more rows are 6 more batches of 50: a few statements per batch, never one per row.
    assert large - small <= 6 * 4
    assert large < 400 / 5
    assert all_chain_problems() == []


def test_default_resource_baseline_writes_the_same_ledger_through_consent_record(purposes):
    subjects = UserFactory.create_batch(3)
    resource = DefaultConsentEventResource(source=bulk.ImportSource(name="base", sha256="b" * 64))
    result = resource.import_data(_dataset(lines_for(subjects, purposes)), dry_run=False, use_transactions=True)
    assert not result.has_errors(), [e.error for e in result.base_errors] + [e.error for _, es in result.row_errors() for e in es]
    assert not result.has_validation_errors()
    assert ConsentEvent.objects.filter(method="import").count() == 6
    assert all_chain_problems() == []
    assert states_match_ledger([s.subject_ref for s in subjects])
    assert ConsentState.objects.count() == 6


@pytest.mark.urls("privacyops.urls")
def test_the_workbench_ledger_links_the_import_page_for_the_dpo(client):
    client.force_login(staff_in_role("DPO"))
    changelist = client.get(reverse("admin:consents_consentevent_changelist"))
    assert reverse("admin:consents_consentevent_import").encode() in changelist.content
    page = client.get(reverse("admin:consents_consentevent_import"))
    assert page.status_code == 200
    assert b"Every row is checked before anything is written" in page.content
