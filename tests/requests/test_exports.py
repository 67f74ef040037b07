"""Access and portability packages (issue 5 §4, PM-IX-1, PM-IX-4): every registered model with the subject's
rows, counts equal to the database, a manifest that matches, other people left out, bounded memory, and the
job that builds, encrypts, stores and closes the request."""

import csv
import datetime
import hashlib
import io
import json
import tracemalloc
import zipfile

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from privacyops.audit import audit_record
from privacyops.models import AuditEvent
from privacyops.privacy import registry
from requests import crypto, exports
from requests.models import ExportPackage, JobStatus, RequestEvent, Right, Status
from tests.factories.accounts import StaffFactory, UserFactory
from tests.factories.chat import (
    AccessLogFactory,
    AttachmentFactory,
    ConversationFactory,
    FeedbackFactory,
    MessageFactory,
    SupportMessageFactory,
    UsageEventFactory,
)
from tests.factories.inventory import small_register
from tests.factories.requests import RequestEventFactory, RightsRequestFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    return StaffFactory(email="assignee.staff@privacyops.test")


@pytest.fixture
def subject(staff):
    """A subject with rows in every chat table, a support e-mail sent before signing up (found by address),
    an audit event naming a staff actor, and a request assigned to staff with a staff note."""
    user = UserFactory(email="ada@example.org")
    conversation = ConversationFactory(user=user, title="Holiday plans")
    MessageFactory.create_batch(3, conversation=conversation, content="my own words about Bob")
    AttachmentFactory(message=MessageFactory(conversation=conversation), content=b"attached bytes of ada")
    FeedbackFactory(message=MessageFactory(conversation=conversation, role="assistant"))
    SupportMessageFactory(user=user)
    SupportMessageFactory(user=None, email="ADA@example.org", body="written before I had an account")
    AccessLogFactory.create_batch(2, user=user)
    UsageEventFactory.create_batch(2, user=user)
    audit_record(actor=staff, action="test.viewed", subject=user)
    return user


@pytest.fixture
def other():
    user = UserFactory(email="zed@example.org")
    MessageFactory(conversation=ConversationFactory(user=user), content="zed's secret words")
    SupportMessageFactory(user=None, email="zed@example.org", body="zed support text")
    return user


@pytest.fixture
def access_request(subject, staff):
    rights_request = RightsRequestFactory(
        subject=subject,
        right=Right.ACCESS,
        status=Status.FULFILLING,
        verified_at=timezone.now(),
        assignee=staff,
        approved_by=staff,
        job_status=JobStatus.QUEUED,
        details="Please send me everything",
    )
    RequestEventFactory(request=rights_request, actor=staff, message="Called Bob Smith at the office about it")
    return rights_request


def _package(subject, rights_request=None) -> zipfile.ZipFile:
    out = io.BytesIO()
    exports.package_write_plain(subject=subject, out=out, rights_request=rights_request)
    return zipfile.ZipFile(io.BytesIO(out.getvalue()))


def _json(archive, name):
    return json.loads(archive.read(name))


def test_pm_ix_1_every_registered_model_with_the_subjects_rows_is_packaged_with_database_counts(subject, other, access_request):
    archive = _package(subject, access_request)
    names = set(archive.namelist())
    manifest = _json(archive, "manifest.json")
    held = 0
    for declaration in registry.personal():
        condition = declaration.subject_q(subject)
        if condition is None:
            continue
        expected = declaration.model._default_manager.filter(condition).count()
        meta = declaration.model._meta
        base = f"data/{meta.app_label}/{meta.model_name}"
        assert {base + ".json", base + ".csv"} <= names, declaration.label
        rows = _json(archive, base + ".json")
        table = list(csv.reader(io.StringIO(archive.read(base + ".csv").decode())))
        assert len(rows) == expected, declaration.label
        assert len(table) == expected + 1, declaration.label  # the header line
        assert manifest["rows"][declaration.label] == expected
        assert sorted(r["id"] for r in rows) == sorted(
            declaration.model._default_manager.filter(condition).values_list("pk", flat=True)
        )
        held += expected > 0
    # The subject's rows really spread over many models: chat, account, audit, requests.
    assert held >= 10
    messages = _json(archive, "data/chat/message.json")
    assert {m["content"] for m in messages} >= {"my own words about Bob"}
    support = {m["body"] for m in _json(archive, "data/chat/supportmessage.json")}
    assert "written before I had an account" in support  # found by the identifier, no account on the row


def test_pm_ix_1_the_subjects_uploaded_files_are_in_the_package(subject):
    archive = _package(subject)
    [name] = [n for n in archive.namelist() if n.startswith("files/chat/attachment/")]
    assert archive.read(name) == b"attached bytes of ada"


def test_pm_ix_4_manifest_hashes_match_every_member(subject, access_request):
    archive = _package(subject, access_request)
    manifest = _json(archive, "manifest.json")
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == set(archive.namelist()) - {"manifest.json"}
    for name, entry in listed.items():
        data = archive.read(name)
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], name
        assert len(data) == entry["bytes"]
    assert manifest["request"] == access_request.reference
    assert {"index.html", "schema.json", "processing.json"} <= set(listed)


def test_pm_ix_1_other_peoples_data_is_left_out(subject, other, access_request, staff):
    archive = _package(subject, access_request)
    everything = b"".join(archive.read(n) for n in archive.namelist())
    assert b"zed" not in everything  # another subject's rows
    assert staff.email.encode() not in everything  # staff identities: the audit actor, the assignee
    assert b"Bob Smith" not in everything  # a staff note on the timeline (third party, written by staff)
    [request_row] = _json(archive, "data/requests/rightsrequest.json")
    assert request_row["assignee"] == "staff" and request_row["approved_by"] == "staff"
    assert request_row["details"] == "Please send me everything"  # the subject's own words stay
    [audit_row] = [r for r in _json(archive, "data/privacyops/auditevent.json") if r["action"] == "test.viewed"]
    assert audit_row["actor_label"] == "staff" and audit_row["actor_id"] == "staff"
    schema = _json(archive, "schema.json")
    events = next(t for t in schema["tables"] if t["model"] == "requests.RequestEvent")
    assert [w["name"] for w in events["withheld"]] == ["message"]
    assert "message" not in _json(archive, "data/requests/requestevent.json")[0]
    account = next(t for t in schema["tables"] if t["model"] == "accounts.User")
    assert "password" in [w["name"] for w in account["withheld"]]
    assert "password" not in _json(archive, "data/accounts/user.json")[0]


def test_pm_ix_4_schema_gives_each_field_its_category_and_meaning(subject):
    schema = _json(_package(subject), "schema.json")
    messages = next(t for t in schema["tables"] if t["model"] == "chat.Message")
    content = next(f for f in messages["fields"] if f["name"] == "content")
    assert content["category"] == "user-content" and content["meaning"].startswith("What you wrote")
    assert all(f["meaning"] for t in schema["tables"] for f in t["fields"])


def test_pm_ix_1_processing_lists_what_applies_to_the_subject(subject):
    register = small_register()
    subject.country = "CN"
    subject.save()
    from inventory.models import Jurisdiction
    from requests.models import Disclosure

    Jurisdiction.objects.get_or_create(code="DEFAULT", defaults={"name": "Default", "countries": []})
    disclosure = Disclosure.objects.create(
        subject=subject,
        subject_ref=subject.subject_ref,
        authority="District court",
        legal_ground="Court order 12/2026",
        disclosed_at=timezone.now(),
        approved_by=StaffFactory(),
    )
    disclosure.categories.add(register["content"])
    processing = _json(_package(subject), "processing.json")
    codes = [p["code"] for p in processing["purposes"]]
    assert "provide-service" in codes
    service = next(p for p in processing["purposes"] if p["code"] == "provide-service")
    assert [b["code"] for b in service["lawful_bases"]] == ["legal-obligation"]  # CN's own row replaces the general one
    assert {t["code"] for t in processing["transfers"]} == {"sg-to-cn", "sg-to-us"}
    assert "cookies" not in [r["category"] for r in processing["retention"]]  # no cookie rows for this subject
    assert [s["code"] for s in processing["sources"]] == ["provided-by-user"]
    assert processing["disclosures"][0]["authority"] == "District court"
    assert processing["disclosures"][0]["categories"] == ["user-content"]


def test_index_is_a_readable_overview(subject, access_request):
    index = _package(subject, access_request).read("index.html").decode()
    assert access_request.reference in index
    assert 'href="data/chat/message.json"' in index
    assert "Art. 15(4)" in index  # why the staff note was left out


def test_building_many_rows_does_not_hold_them(subject, tmp_path, monkeypatch):
    """Bounded memory: with 1 KB messages, 4000 rows are ~4 MB of content per member; the build's traced
    peak stays well under that (rows stream through fetches / COPY chunks, never a whole result set)."""
    monkeypatch.setattr(exports, "CHUNK_ROWS", 200)
    monkeypatch.setattr(exports, "FLUSH_BYTES", 64 * 1024)
    conversation = ConversationFactory(user=subject)
    from chat.models import Message

    Message.objects.bulk_create(
        [Message(conversation=conversation, role="user", content=f"{i:06d}" + "x" * 1018) for i in range(4000)]
    )
    out = tmp_path / "package.zip"
    tracemalloc.start()
    try:
        exports.package_write_plain(subject=subject, out=str(out))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_500_000, f"peak {peak} bytes"
    with zipfile.ZipFile(out) as archive:
        assert len(_json(archive, "data/chat/message.json")) == 4000 + 5


@pytest.mark.postgres  # COPY is PostgreSQL's; the PostgreSQL leg of CI runs it
def test_postgresql_streams_through_copy(subject, monkeypatch):
    statements = []
    original = exports._copy_into

    def spy(member, statement, params, *, json_array):
        statements.append(statement)
        return original(member, statement, params, json_array=json_array)

    monkeypatch.setattr(exports, "_copy_into", spy)
    _package(subject)
    assert statements and all(s.startswith("COPY (") and "TO STDOUT" in s for s in statements)
    assert sum("row_to_json" in s for s in statements) == len(statements) // 2


# --- The job ----------------------------------------------------------------------------------------


def _decrypt(package) -> bytes:
    with package.file.open("rb") as f:
        return b"".join(crypto.decrypt_chunks(f))


def test_job_builds_an_encrypted_package_tells_the_subject_and_closes_the_request(
    access_request, mailoutbox, django_capture_on_commit_callbacks, settings
):
    with django_capture_on_commit_callbacks(execute=True):
        package = exports.export_package_work(request_id=access_request.pk)
    package.refresh_from_db()
    access_request.refresh_from_db()
    assert package.status == ExportPackage.Status.READY
    assert package.expires_at == package.created_at + datetime.timedelta(days=settings.EXPORT_PACKAGE_DAYS)
    with package.file.open("rb") as f:
        stored = f.read()
    assert not zipfile.is_zipfile(io.BytesIO(stored))  # unreadable without the key
    plain = _decrypt(package)
    assert hashlib.sha256(plain).hexdigest() == package.sha256 and len(plain) == package.size_bytes
    assert zipfile.ZipFile(io.BytesIO(plain)).testzip() is None
    assert package.rows > 0 and package.files == len(zipfile.ZipFile(io.BytesIO(plain)).namelist())
    assert access_request.status == Status.COMPLETED and access_request.job_status == JobStatus.DONE
    assert access_request.job_result["rows"] == package.rows
    subjects = [m.subject for m in mailoutbox]
    assert any("ready to download" in s for s in subjects)
    ready = next(m for m in mailoutbox if "ready to download" in m.subject)
    assert access_request.reference in ready.body and settings.DPO_EMAIL in ready.body
    assert AuditEvent.objects.filter(action="rights_request.package_ready").count() == 1
    assert RequestEvent.objects.filter(request=access_request, kind="job", message="Export package ready.").exists()


def test_pm_ix_9_nothing_leaves_before_verification(access_request):
    access_request.verified_at = None
    access_request.save()
    exports.export_package_work(request_id=access_request.pk)
    access_request.refresh_from_db()
    assert access_request.job_status == JobStatus.FAILED and "not verified" in access_request.job_error
    assert not ExportPackage.objects.filter(request=access_request).exclude(status="failed").exists()
    assert not ExportPackage.objects.exclude(file="").exists()


def test_a_job_not_queued_does_nothing(access_request):
    access_request.job_status = ""
    access_request.save()
    assert exports.export_package_work(request_id=access_request.pk) is None
    assert not ExportPackage.objects.exists()


def test_stored_file_without_the_key_does_not_decrypt(access_request, settings):
    package = exports.export_package_work(request_id=access_request.pk)
    settings.EXPORT_ENCRYPTION_KEY = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
    with pytest.raises(crypto.DecryptionError):
        _decrypt(package)
    assert default_storage.exists(package.file.name)
