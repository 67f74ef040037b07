"""manage.py import_consents: the COPY path (PostgreSQL) and the portable path, same rules (issue 4 §7).

Every behaviour runs through each path the database offers: the portable one everywhere, the COPY one on
PostgreSQL. The chain check recomputes every hash with ConsentEvent.compute_hash (tests/consents/test_bulk.py),
so a hash computed in SQL is accepted exactly when the ledger's own would be.
"""

import datetime
import io
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from consents.imports import bulk
from consents.imports.file_import import consent_file_import
from consents.ledger import consent_record
from consents.models import ConsentChain, ConsentEvent, ConsentState
from privacyops.models import AuditEvent
from tests.consents.test_bulk import all_chain_problems, chain_problems, states_match_ledger
from tests.factories.accounts import UserFactory
from tests.factories.consents import ConsentNoticeFactory, ConsentPurposeFactory, PolicyVersionFactory
from tests.factories.inventory import JurisdictionFactory, staff_in_role

pytestmark = pytest.mark.django_db

HEADER = "subject_ref,purpose,action,effective_at,language,jurisdiction,notice_version"


def _engines():
    return ["portable", "copy"] if connection.vendor == "postgresql" else ["portable"]


@pytest.fixture(params=["portable", "copy"])
def engine(request):
    if request.param not in _engines():
        # Not a skip: on SQLite the copy engine must refuse, which is what this instance checks.
        with pytest.raises(ValueError, match="needs PostgreSQL"):
            consent_file_import(path=__file__, engine="copy")
        return None
    return request.param


@pytest.fixture
def purposes():
    marketing = ConsentPurposeFactory(code="marketing-communications")
    analytics = ConsentPurposeFactory(code="cookies-analytics", cookie_category="analytics")
    necessary = ConsentPurposeFactory(code="cookies-necessary", cookie_category="necessary", is_necessary=True)
    for purpose in (marketing, analytics, necessary):
        ConsentNoticeFactory(purpose=purpose, version="1")
    return {"marketing": marketing, "analytics": analytics, "necessary": necessary}


def write(tmp_path, lines, name="history.csv", header=HEADER):
    path = tmp_path / name
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def run(path, engine, *extra):
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("import_consents", str(path), "--engine", engine, *extra, stdout=out, stderr=err)
    except CommandError as e:
        return False, out.getvalue(), err.getvalue() + str(e)
    return True, out.getvalue(), err.getvalue()


def test_pm_0_2_command_imports_chains_that_verify_and_state_equal_to_the_ledger(tmp_path, purposes, engine):
    if engine is None:
        return
    m, a = purposes["marketing"], purposes["analytics"]
    subjects = UserFactory.create_batch(5)
    lines = []
    for n in range(40):
        subject = subjects[n % 5]
        purpose = m if n % 2 else a
        action = ("given", "refused", "withdrawn")[n % 3]
        when = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(days=(n * 37) % 900, seconds=n)
        lines.append(f"{subject.subject_ref},{purpose.code},{action},{when.isoformat()},en,,")
    ok, out, err = run(write(tmp_path, lines), engine)

    assert ok, err
    assert "Imported 40 events for 5 subjects" in out
    assert ConsentEvent.objects.filter(method="import").count() == 40
    assert all_chain_problems() == []
    assert states_match_ledger([s.subject_ref for s in subjects])
    for subject in subjects:  # each chain is in effective-time order
        times = list(
            ConsentEvent.objects.filter(subject_ref=subject.subject_ref).order_by("seq").values_list("effective_at", flat=True)
        )
        assert times == sorted(times)
    audit = AuditEvent.objects.get(action=bulk.IMPORT_ACTION)
    assert audit.details["events"] == 40 and audit.details["subjects"] == 5 and audit.details["chains_created"] == 5
    assert sum(audit.details["actions"].values()) == 40


def test_every_bad_line_is_reported_with_its_number_and_nothing_is_written(tmp_path, purposes, engine):
    if engine is None:
        return
    subject = UserFactory()
    ref, m = subject.subject_ref, purposes["marketing"].code
    future = (timezone.now() + datetime.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        f"{ref},{m},given,2023-01-01,en,,",  # 2 fine
        f"{uuid.uuid4()},{m},given,2023-01-01,en,,",  # 3 unknown account
        f"not-a-uuid,{m},given,2023-01-01,en,,",  # 4
        f"{ref},no-such-purpose,given,2023-01-01,en,,",  # 5
        f"{ref},{m},maybe,2023-01-01,en,,",  # 6
        f"{ref},{m},expired,2023-01-01,en,,",  # 7
        f"{ref},{m},given,2023-02-30,en,,",  # 8
        f"{ref},{m},given,{future},en,,",  # 9
        f"{ref},cookies-necessary,withdrawn,2023-01-01,en,,",  # 10
        f"{ref},{m},given,2023-01-01,english please,,",  # 11
        f"{ref},{m},given,2023-01-01,en,ATLANTIS,",  # 12
        f"{ref},{m},given,2023-01-01,en,,9",  # 13
        ",,,,,,",  # 14
        f"{ref},{m},given,1899-12-31T23:00:00Z,en,,",  # 15
        f"{ref},{m},given,2023-01-01T24:00,en,,",  # 16
    ]
    ok, _out, err = run(write(tmp_path, lines), engine)

    assert not ok
    messages = bulk.MESSAGES
    for line, column, key in [
        (3, "subject_ref", "subject_unknown"),
        (4, "subject_ref", "subject_format"),
        (5, "purpose", "purpose_unknown"),
        (6, "action", "action_unknown"),
        (7, "action", "action_expired"),
        (8, "effective_at", "moment_format"),
        (9, "effective_at", "moment_future"),
        (10, "action", "necessary"),
        (11, "language", "language_format"),
        (12, "jurisdiction", "jurisdiction_unknown"),
        (13, "notice_version", "notice_unknown"),
        (14, "subject_ref", "required"),
        (14, "effective_at", "required"),
        (15, "effective_at", "moment_early"),
        (16, "effective_at", "moment_format"),
    ]:
        assert f"line {line}, {column}: {messages[key]}" in err
    assert "line 2," not in err
    assert "Nothing was imported: 17 problem(s) on 14 line(s)" in err
    assert ConsentEvent.objects.count() == 0
    assert ConsentChain.objects.count() == 0
    assert not AuditEvent.objects.filter(action=bulk.IMPORT_ACTION).exists()


@pytest.mark.postgres
def test_copy_and_portable_paths_find_the_same_problems(tmp_path, purposes):
    subject = UserFactory()
    ref, m = subject.subject_ref, purposes["marketing"].code
    moments = [
        "2023-01-01", "2023-01-01T10:00", "2023-01-01 10:00:59.5", "2023-01-01T10:00:00+05:30", "2023-01-01T10:00-0800",
        "2023-01-01T10:00:00.1234567", "2023-13-01", "2023-00-10", "2024-02-29", "2023-02-29", "2023-04-31", "23-01-01",
        "2023-01-01T10:60", "2023-01-01T10:00:60", "2023-01-01T10:00+24:00", "2023-01-01T10:00+05:60", "2023-01-01Z",
        "0001-01-01T00:00+05:00", "9999-12-31T23:00-05:00", "2023-1-1", " 2023-01-01 ", "2023-01-01T10:00:00ZZ",
        "now", "", "1900-01-01T00:30+01:00", "2023-01-01T10:00:00-00",
    ]  # fmt: skip
    lines = [f"{ref},{m},given,{moment},en,," for moment in moments]
    lines += [f"{ref.hex},{m},given,2023-01-01,en,,", f"{str(ref).upper()},{m},given,2023-01-01,pt-BR,,"]
    path = write(tmp_path, lines)
    reports = {engine: consent_file_import(path=path, engine=engine, dry_run=True, max_errors=1000) for engine in _engines()}
    assert reports["copy"].errors == reports["portable"].errors
    assert reports["copy"].error_count > 10


@pytest.mark.postgres
def test_copy_path_times_match_the_python_grammar(tmp_path, purposes):
    subject = UserFactory()
    moments = [
        "2023-01-01",
        "2023-01-01T10:00",
        "2023-01-01 10:00:59.5",
        "2023-01-01T10:00:00.000001+05:30",
        "2023-01-01T10:00-0800",
    ]
    lines = [f"{subject.subject_ref},marketing-communications,given,{moment},en,," for moment in moments]
    ok, _out, err = run(write(tmp_path, lines), "copy")
    assert ok, err
    stored = set(ConsentEvent.objects.values_list("effective_at", flat=True))
    assert stored == {bulk.parse_moment(moment) for moment in moments}
    assert all_chain_problems() == []


def test_imported_chains_continue_existing_chains_and_old_events_do_not_override_newer_state(tmp_path, purposes, engine):
    if engine is None:
        return
    m, a = purposes["marketing"], purposes["analytics"]
    subject, fresh = UserFactory(), UserFactory()
    recent = consent_record(
        purpose=m, action="given", method="portal", subject=subject, effective_at=timezone.now() - datetime.timedelta(hours=1)
    )
    old = consent_record(
        purpose=a,
        action="given",
        method="banner",
        subject=subject,
        effective_at=datetime.datetime(2019, 1, 1, tzinfo=datetime.UTC),
    )
    chain = ConsentChain.objects.get(subject_ref=subject.subject_ref)
    version = chain.version
    lines = [
        f"{subject.subject_ref},{m.code},withdrawn,2022-01-01T00:00:00Z,en,,",  # older than the portal "given"
        f"{subject.subject_ref},{a.code},withdrawn,2021-01-01T00:00:00Z,en,,",  # newer than the banner "given"
        f"{fresh.subject_ref},{m.code},given,2021-01-01,en,,",
    ]
    ok, _out, err = run(write(tmp_path, lines), engine)

    assert ok, err
    events = list(ConsentEvent.objects.filter(chain=chain).order_by("seq"))
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert events[2].prev_hash == old.hash
    assert chain_problems(chain) == []
    assert ConsentState.objects.get(subject_ref=subject.subject_ref, purpose=m).event == recent
    assert ConsentState.objects.get(subject_ref=subject.subject_ref, purpose=a).action == "withdrawn"
    assert states_match_ledger([subject.subject_ref, fresh.subject_ref])
    chain.refresh_from_db()
    assert chain.version > version
    # The ledger goes on writing after the import, and the chain still verifies.
    consent_record(purpose=a, action="given", method="portal", subject=subject)
    assert chain_problems(chain) == []


def test_one_subject_written_three_ways_is_one_chain_and_equal_times_keep_file_order(tmp_path, purposes, engine):
    """The copy path matches subject_refs against the accounts' canonical text first; an upper-case or padded
    ref must still reach the same chain. Equal effective times: file order decides seq, and the state is the
    later line (the ledger's rule: the latest by effective time, then id)."""
    if engine is None:
        return
    m = purposes["marketing"]
    subject = UserFactory()
    ref = str(subject.subject_ref)
    lines = [
        f"{ref},{m.code},given,2022-01-01T10:00:00Z,en,,",
        f"{ref.upper()},{m.code},refused,2022-01-01T10:00:00Z,en,,",
        f"  {ref}  ,{m.code},withdrawn,2021-06-01,en,,",
        f"{ref.upper()},{m.code},given,2022-01-01T10:00:00Z,en,,",
        f"{ref},{m.code},refused,2022-01-01T10:00:00Z,en,,",
    ]
    ok, _out, err = run(write(tmp_path, lines), engine)

    assert ok, err
    chain = ConsentChain.objects.get(subject_ref=subject.subject_ref)
    events = list(ConsentEvent.objects.filter(chain=chain).order_by("seq"))
    assert [(e.seq, e.action) for e in events] == [(1, "withdrawn"), (2, "given"), (3, "refused"), (4, "given"), (5, "refused")]
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert ConsentState.objects.get(subject_ref=subject.subject_ref, purpose=m).event == events[-1]
    assert chain.length == 5 and chain.head_hash == events[-1].hash
    assert chain_problems(chain) == []
    assert states_match_ledger([subject.subject_ref])


def test_dry_run_checks_and_writes_nothing(tmp_path, purposes, engine):
    if engine is None:
        return
    subject = UserFactory()
    path = write(tmp_path, [f"{subject.subject_ref},marketing-communications,given,2022-01-01,en,,"])
    ok, out, err = run(path, engine, "--dry-run")
    assert ok, err
    assert "Dry run: all 1 lines are valid" in out
    assert ConsentEvent.objects.count() == 0
    ok, out, err = run(path, engine)  # a dry run is not an import: the same file can then be imported
    assert ok, err
    assert ConsentEvent.objects.count() == 1


def test_max_errors_caps_the_listing_but_counts_everything(tmp_path, purposes, engine):
    if engine is None:
        return
    lines = [f"{uuid.uuid4()},marketing-communications,given,2022-01-01,en,," for _ in range(12)]
    ok, _out, err = run(write(tmp_path, lines), engine, "--max-errors", "5")
    assert not ok
    assert err.count("no account has this subject_ref") == 5
    assert "… and 7 more" in err
    assert "12 problem(s) on 12 line(s)" in err


def test_a_malformed_line_is_named(tmp_path, purposes, engine):
    if engine is None:
        return
    subject = UserFactory()
    lines = [
        f"{subject.subject_ref},marketing-communications,given,2022-01-01,en,,",
        f"{subject.subject_ref},marketing-communications,given,2022-01-01,en,,,surplus",
    ]
    ok, _out, err = run(write(tmp_path, lines), engine)
    assert not ok
    assert "line 3:" in err
    assert ConsentEvent.objects.count() == 0


def test_header_problems_are_reported_before_any_line(tmp_path, purposes, engine):
    if engine is None:
        return
    ok, _out, err = run(write(tmp_path, ["x,y"], header="subject,purpose"), engine)
    assert not ok
    assert "line 1, subject: unknown column" in err
    assert "line 1, action: required column is missing" in err


def test_optional_columns_may_be_left_out_and_the_same_file_is_not_imported_twice(tmp_path, purposes, engine):
    if engine is None:
        return
    subject = UserFactory()
    path = write(
        tmp_path,
        [f"{subject.subject_ref},marketing-communications,given,2022-01-01"],
        header="subject_ref,purpose,action,effective_at",
    )
    ok, _out, err = run(path, engine)
    assert ok, err
    event = ConsentEvent.objects.get()
    assert (event.language, event.notice_version) == ("en", "1")
    ok, _out, err = run(path, engine)
    assert not ok and "already imported" in err
    assert ConsentEvent.objects.count() == 1


def test_copy_path_hashes_escape_text_exactly_as_the_ledger(tmp_path, purposes, engine):
    """Values that JSON must escape (quotes, backslashes, non-ASCII) in notice versions, policy labels and the actor."""
    if engine is None:
        return
    m = purposes["marketing"]
    ConsentNoticeFactory(purpose=m, version='v"2\\ß', language="en")
    PolicyVersionFactory(
        label='2020 "Ü" \\ edition', effective_at=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC), published_at=timezone.now()
    )
    JurisdictionFactory(code="DEFAULT")
    JurisdictionFactory(code="EU", countries=["FR"])
    actor = staff_in_role("DPO", email="zoë.o'neil@privacyops.test")
    subject = UserFactory(country="FR")
    lines = [
        f'{subject.subject_ref},{m.code},given,2021-06-01T12:00:00Z,en,,"v""2\\ß"',
        f"{subject.subject_ref},{m.code},withdrawn,2021-07-01T12:00:00Z,fr,,",
    ]
    ok, _out, err = run(write(tmp_path, lines), engine, "--actor", actor.email)
    assert ok, err
    assert all_chain_problems() == []
    events = list(ConsentEvent.objects.order_by("seq"))
    assert events[0].notice_version == 'v"2\\ß' and events[0].policy_label == '2020 "Ü" \\ edition'
    assert {e.jurisdiction for e in events} == {"EU"}
    assert {e.actor_label for e in events} == {actor.get_username()}


@pytest.mark.postgres
def test_copy_path_hashes_the_utf8_bytes_whatever_the_client_encoding(tmp_path, purposes):
    """The chain aggregate hands the canonical text's bytes to sha256 as they are only when the server and
    the client both speak UTF-8; with another client encoding it converts them to UTF-8 first, and the
    hashes are still the ledger's own (ConsentEvent.compute_hash hashes UTF-8)."""
    m = purposes["marketing"]
    ConsentNoticeFactory(purpose=m, version="v2-ß", language="de")
    JurisdictionFactory(code="DEFAULT")
    actor = staff_in_role("DPO", email="jürgen@privacyops.test")
    subjects = [UserFactory(), UserFactory()]
    lines = [f"{s.subject_ref},{m.code},given,2021-06-01T12:00:00Z,de,,v2-ß" for s in subjects]
    lines.append(f"{subjects[0].subject_ref},{m.code},withdrawn,2022-01-01,,,")
    with connection.cursor() as cursor:
        cursor.execute("SET client_encoding = 'LATIN1'")
    try:
        report = consent_file_import(path=write(tmp_path, lines), actor=actor, engine="copy")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET client_encoding")
    assert report.ok, report.errors
    assert report.result.events == 3
    assert all_chain_problems() == []
    assert states_match_ledger([s.subject_ref for s in subjects])
    assert set(ConsentEvent.objects.values_list("notice_version", flat=True)) == {"v2-ß", "1"}
