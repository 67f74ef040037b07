"""consents.imports.bulk: historical events appended under the ledger's rules (issue 4 §7).

The chain check here recomputes every hash with `ConsentEvent.compute_hash` and walks seq/prev_hash from
the genesis hash, as the ledger defines a chain, and runs the project's own `consents.proof.chains_verify`
(what `verify_consents` runs: chains, notice texts, states against the ledger). Events written by
`consents.ledger.consent_record` and by the import go through the same checks, so an imported chain is
accepted exactly when a ledger-written one would be.
"""

import datetime
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from consents.imports import bulk
from consents.ledger import consent_record, state_from_ledger, state_of, visitor_link
from consents.models import GENESIS_HASH, ConsentChain, ConsentEvent, ConsentState
from consents.proof import chains_verify
from privacyops.models import AuditEvent
from tests.factories.accounts import UserFactory
from tests.factories.consents import ConsentNoticeFactory, ConsentPurposeFactory, PolicyVersionFactory
from tests.factories.inventory import JurisdictionFactory

pytestmark = pytest.mark.django_db

UTC = datetime.UTC


def chain_problems(chain: ConsentChain) -> list[str]:
    """Everything wrong with one principal's chain: seq gaps, broken links, hashes that do not recompute."""
    chain.refresh_from_db()
    problems = []
    previous = GENESIS_HASH
    events = list(ConsentEvent.objects.filter(chain=chain).select_related("purpose").order_by("seq"))
    for position, event in enumerate(events, start=1):
        if event.seq != position:
            problems.append(f"event {event.pk}: seq {event.seq}, expected {position}")
        if event.prev_hash != previous:
            problems.append(f"event {event.pk}: prev_hash does not link to the event before")
        if event.compute_hash(purpose_code=event.purpose.code) != event.hash:
            problems.append(f"event {event.pk}: hash does not recompute")
        previous = event.hash
    if chain.head_hash != previous or chain.length != len(events):
        problems.append(f"chain {chain.pk}: head or length does not match its events")
    return problems


def all_chain_problems() -> list[str]:
    """This module's recomputation, and the project's own verification (`verify_consents`) of every chain and
    of every principal's state."""
    problems = [problem for chain in ConsentChain.objects.all() for problem in chain_problems(chain)]
    summary = chains_verify()
    if not summary.ok:
        problems.append(f"consents.proof.chains_verify: {summary.as_dict()}")
    return problems


def states_match_ledger(subject_refs) -> bool:
    return all(state_of(subject_ref=ref) == state_from_ledger(subject_ref=ref) for ref in subject_refs)


def source(name="history.csv", content=b"x"):
    return bulk.ImportSource.for_bytes(content + name.encode(), name=name, file_format="csv", channel="command")


def row(subject, purpose, action, when, **extra):
    return {
        "subject_ref": str(subject.subject_ref),
        "purpose": purpose.code,
        "action": action,
        "effective_at": when,
        **extra,
    }


@pytest.fixture
def purposes():
    marketing = ConsentPurposeFactory(code="marketing-communications")
    analytics = ConsentPurposeFactory(code="cookies-analytics", cookie_category="analytics")
    necessary = ConsentPurposeFactory(code="cookies-necessary", cookie_category="necessary", is_necessary=True)
    for purpose in (marketing, analytics, necessary):
        ConsentNoticeFactory(purpose=purpose, version="1")
    return {"marketing": marketing, "analytics": analytics, "necessary": necessary}


def test_pm_0_2_import_writes_chains_that_verify_and_state_equal_to_the_ledger(purposes):
    alice, bob = UserFactory(), UserFactory()
    m, a = purposes["marketing"], purposes["analytics"]
    rows = [
        row(alice, m, "given", "2023-01-05T10:00:00Z"),
        row(alice, m, "withdrawn", "2024-02-01T08:30:00+02:00"),
        row(bob, a, "refused", "2022-11-30"),
        row(alice, a, "given", "2021-06-01 12:00"),  # earlier than alice's other rows: first in her chain
        row(bob, m, "given", "2024-05-01T00:00:00.5Z"),
    ]
    result = bulk.consent_events_append(rows, actor=None, source=source())

    assert result.events == 5 and result.subjects == 2 and result.chains_created == 2
    assert all_chain_problems() == []
    assert states_match_ledger([alice.subject_ref, bob.subject_ref])
    alice_events = list(ConsentEvent.objects.filter(subject_ref=alice.subject_ref).order_by("seq"))
    assert [e.effective_at for e in alice_events] == sorted(e.effective_at for e in alice_events)
    assert {e.method for e in alice_events} == {ConsentEvent.Method.IMPORT}
    state = ConsentState.objects.get(subject_ref=alice.subject_ref, purpose=m)
    assert state.action == "withdrawn"
    assert state.effective_at == datetime.datetime(2024, 2, 1, 6, 30, tzinfo=UTC)


def test_pm_0_2_imported_chain_continues_an_existing_ledger_chain(purposes):
    subject = UserFactory()
    m, a = purposes["marketing"], purposes["analytics"]
    first = consent_record(purpose=m, action="given", method="portal", subject=subject)
    second = consent_record(purpose=a, action="refused", method="banner", subject=subject)
    chain = ConsentChain.objects.get(subject_ref=subject.subject_ref)
    version_before = chain.version

    bulk.consent_events_append(
        [row(subject, m, "withdrawn", "2020-01-01"), row(subject, a, "given", "2019-01-01")], actor=None, source=source()
    )

    events = list(ConsentEvent.objects.filter(chain=chain).order_by("seq"))
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert events[:2] == [first, second]
    assert events[2].prev_hash == second.hash
    assert chain_problems(chain) == []
    # The ledger keeps writing on top of the imported head, and the chain still verifies.
    consent_record(purpose=m, action="given", method="portal", subject=subject)
    assert chain_problems(chain) == []
    chain.refresh_from_db()
    assert chain.version > version_before


def test_pm_0_2_an_older_imported_event_does_not_override_a_newer_state(purposes):
    subject = UserFactory()
    m, a = purposes["marketing"], purposes["analytics"]
    recent = consent_record(
        purpose=m, action="given", method="portal", subject=subject, effective_at=timezone.now() - datetime.timedelta(days=1)
    )
    consent_record(
        purpose=a, action="given", method="banner", subject=subject, effective_at=datetime.datetime(2020, 1, 1, tzinfo=UTC)
    )

    bulk.consent_events_append(
        [
            row(subject, m, "withdrawn", "2022-03-01T00:00:00Z"),  # older than the portal "given": state stays
            row(subject, a, "withdrawn", "2021-03-01T00:00:00Z"),  # newer than the banner "given": state moves
        ],
        actor=None,
        source=source(),
    )

    assert ConsentState.objects.get(subject_ref=subject.subject_ref, purpose=m).event == recent
    assert ConsentState.objects.get(subject_ref=subject.subject_ref, purpose=a).action == "withdrawn"
    assert states_match_ledger([subject.subject_ref])


def test_pm_0_2_state_of_an_account_keeps_a_newer_event_of_its_linked_visitor(purposes):
    subject = UserFactory()
    m = purposes["marketing"]
    visitor = uuid.uuid4()
    visitor_event = consent_record(purpose=m, action="refused", method="banner", visitor_id=visitor)
    visitor_link(visitor_id=visitor, subject=subject, method="signin")

    bulk.consent_events_append([row(subject, m, "given", "2021-01-01")], actor=None, source=source())

    assert ConsentState.objects.get(subject_ref=subject.subject_ref, purpose=m).event == visitor_event
    assert states_match_ledger([subject.subject_ref])


def test_pm_0_2_ties_on_effective_time_are_broken_by_file_order_as_by_id(purposes):
    subject = UserFactory()
    m = purposes["marketing"]
    bulk.consent_events_append(
        [row(subject, m, "given", "2023-01-01T00:00:00Z"), row(subject, m, "withdrawn", "2023-01-01T00:00:00Z")],
        actor=None,
        source=source(),
    )
    assert ConsentState.objects.get(subject_ref=subject.subject_ref, purpose=m).action == "withdrawn"
    assert states_match_ledger([subject.subject_ref])


def test_import_writes_one_audit_event_with_counts_and_the_files_sha256(purposes):
    subjects = UserFactory.create_batch(3)
    m = purposes["marketing"]
    src = source()
    before = AuditEvent.objects.count()
    bulk.consent_events_append([row(s, m, "given", "2023-01-01") for s in subjects], actor=None, source=src)

    assert AuditEvent.objects.count() == before + 1
    event = AuditEvent.objects.get(action=bulk.IMPORT_ACTION)
    assert event.details["sha256"] == src.sha256
    assert event.details["events"] == 3 and event.details["subjects"] == 3
    assert event.details["actions"] == {"given": 3}
    assert set(ConsentEvent.objects.values_list("instruction", flat=True)) == {f"import sha256:{src.sha256}"}


def test_the_same_file_cannot_be_imported_twice(purposes):
    subject = UserFactory()
    rows = [row(subject, purposes["marketing"], "given", "2023-01-01")]
    src = source()
    bulk.consent_events_append(rows, actor=None, source=src)
    with pytest.raises(bulk.ImportInvalid) as caught:
        bulk.consent_events_append(rows, actor=None, source=src)
    assert "already imported" in str(caught.value.errors[0])
    assert ConsentEvent.objects.count() == 1


def test_every_bad_row_is_reported_with_its_line_and_nothing_is_written(purposes):
    subject = UserFactory()
    m, necessary = purposes["marketing"], purposes["necessary"]
    future = (timezone.now() + datetime.timedelta(days=2)).isoformat()
    rows = [
        row(subject, m, "given", "2023-01-01"),  # line 2: fine
        {**row(subject, m, "given", "2023-01-01"), "subject_ref": str(uuid.uuid4())},  # 3
        {**row(subject, m, "given", "2023-01-01"), "subject_ref": "alice@example.org"},  # 4
        {**row(subject, m, "given", "2023-01-01"), "purpose": "no-such-purpose"},  # 5
        row(subject, m, "maybe", "2023-01-01"),  # 6
        row(subject, m, "expired", "2023-01-01"),  # 7
        row(subject, m, "given", "2023-02-30"),  # 8
        row(subject, m, "given", future),  # 9
        row(subject, necessary, "refused", "2023-01-01"),  # 10
        row(subject, m, "given", "2023-01-01", language="english please"),  # 11
        row(subject, m, "given", "2023-01-01", jurisdiction="ATLANTIS"),  # 12
        row(subject, m, "given", "2023-01-01", notice_version="9"),  # 13
        {"subject_ref": "", "purpose": "", "action": "", "effective_at": ""},  # 14
        row(subject, m, "given", "1899-12-31"),  # 15
    ]
    with pytest.raises(bulk.ImportInvalid) as caught:
        bulk.consent_events_append(rows, actor=None, source=source())

    found = {(e.line, e.column, e.message) for e in caught.value.errors}
    messages = bulk.MESSAGES
    assert found == {
        (3, "subject_ref", messages["subject_unknown"]),
        (4, "subject_ref", messages["subject_format"]),
        (5, "purpose", messages["purpose_unknown"]),
        (6, "action", messages["action_unknown"]),
        (7, "action", messages["action_expired"]),
        (8, "effective_at", messages["moment_format"]),
        (9, "effective_at", messages["moment_future"]),
        (10, "action", messages["necessary"]),
        (11, "language", messages["language_format"]),
        (12, "jurisdiction", messages["jurisdiction_unknown"]),
        (13, "notice_version", messages["notice_unknown"]),
        (14, "subject_ref", messages["required"]),
        (14, "purpose", messages["required"]),
        (14, "action", messages["required"]),
        (14, "effective_at", messages["required"]),
        (15, "effective_at", messages["moment_early"]),
    }
    assert str(caught.value.errors[0]).startswith("line 3, subject_ref:")
    assert ConsentEvent.objects.count() == 0
    assert ConsentChain.objects.count() == 0
    assert not AuditEvent.objects.filter(action=bulk.IMPORT_ACTION).exists()


def test_an_inactive_purpose_cannot_be_given_but_can_be_withdrawn(purposes):
    subject = UserFactory()
    retired = ConsentPurposeFactory(code="retired-newsletter", is_active=False)
    with pytest.raises(bulk.ImportInvalid) as caught:
        bulk.consent_events_append([row(subject, retired, "given", "2023-01-01")], actor=None, source=source())
    assert caught.value.errors[0].message == bulk.MESSAGES["inactive"]
    bulk.consent_events_append([row(subject, retired, "withdrawn", "2023-01-01")], actor=None, source=source("b.csv"))
    assert ConsentEvent.objects.filter(purpose=retired).count() == 1


def test_notice_is_the_named_version_else_the_current_one(purposes):
    subject = UserFactory()
    m = purposes["marketing"]
    v1 = m.notices.get(version="1")
    v2 = ConsentNoticeFactory(purpose=m, version="2")
    french = ConsentNoticeFactory(purpose=m, version="2", language="fr")
    bulk.consent_events_append(
        [
            row(subject, m, "given", "2020-01-01", notice_version="1"),
            row(subject, m, "given", "2020-01-02"),
            row(subject, m, "given", "2020-01-03", language="fr"),
            row(subject, m, "given", "2020-01-04", language="de", notice_version="1"),  # no German text: English
        ],
        actor=None,
        source=source(),
    )
    notices = list(ConsentEvent.objects.filter(subject_ref=subject.subject_ref).order_by("seq").values_list("notice", flat=True))
    assert notices == [v1.pk, v2.pk, french.pk, v1.pk]
    event = ConsentEvent.objects.get(notice=v2)
    assert (event.notice_version, event.notice_sha256) == ("2", v2.sha256)


def test_policy_version_in_force_and_the_accounts_jurisdiction_as_the_ledger_sets_them(purposes):
    JurisdictionFactory(code="DEFAULT")
    eu = JurisdictionFactory(code="EU", countries=["FR", "DE"])
    old = PolicyVersionFactory(label="2019", effective_at=datetime.datetime(2019, 1, 1, tzinfo=UTC), published_at=timezone.now())
    new = PolicyVersionFactory(label="2022", effective_at=datetime.datetime(2022, 1, 1, tzinfo=UTC), published_at=timezone.now())
    PolicyVersionFactory(label="draft", effective_at=datetime.datetime(2023, 1, 1, tzinfo=UTC), published_at=None)
    french, singaporean = UserFactory(country="FR"), UserFactory(country="SG")
    m = purposes["marketing"]
    bulk.consent_events_append(
        [
            row(french, m, "given", "2018-06-01"),
            row(french, m, "withdrawn", "2020-06-01"),
            row(singaporean, m, "given", "2024-06-01"),
            row(singaporean, m, "withdrawn", "2024-07-01", jurisdiction="EU"),
        ],
        actor=None,
        source=source(),
    )
    got = list(ConsentEvent.objects.order_by("subject_ref", "seq").values_list("subject_ref", "policy_version", "jurisdiction"))
    assert set(got) == {
        (french.subject_ref, None, eu.code),
        (french.subject_ref, old.pk, eu.code),
        (singaporean.subject_ref, new.pk, "DEFAULT"),
        (singaporean.subject_ref, new.pk, "EU"),
    }
    # The same defaults as consent_record would have chosen for the same moment and account.
    ledger_event = consent_record(
        purpose=m, action="given", method="api", subject=french, effective_at=datetime.datetime(2020, 6, 1, tzinfo=UTC)
    )
    imported = ConsentEvent.objects.get(subject_ref=french.subject_ref, seq=2)
    assert (ledger_event.policy_version_id, ledger_event.jurisdiction) == (imported.policy_version_id, imported.jurisdiction)


def test_actor_is_named_on_every_event(purposes):
    from tests.factories.inventory import staff_in_role

    dpo = staff_in_role("DPO")
    subject = UserFactory()
    bulk.consent_events_append([row(subject, purposes["marketing"], "given", "2023-01-01")], actor=dpo, source=source())
    assert ConsentEvent.objects.get().actor_label == dpo.get_username()
    assert AuditEvent.objects.get(action=bulk.IMPORT_ACTION).actor_id == dpo.pk


def test_queries_grow_with_batches_not_rows(purposes):
    m, a = purposes["marketing"], purposes["analytics"]
    subjects = UserFactory.create_batch(60)

    def rows_for(count, offset):
        day = datetime.datetime(2021, 1, 1, tzinfo=UTC)
        return [
            row(subjects[i % 60], m if i % 2 else a, "given", (day + datetime.timedelta(hours=i + offset)).isoformat())
            for i in range(count)
        ]

    with CaptureQueriesContext(connection) as small:
        bulk.consent_events_append(rows_for(100, 0), actor=None, source=source("a.csv"), batch_size=50)
    with CaptureQueriesContext(connection) as large:
        bulk.consent_events_append(rows_for(400, 10_000), actor=None, source=source("b.csv"), batch_size=50)
    # 300 more rows are 6 more batches of 50; a few statements per batch at most, never one per row.
    assert len(large.captured_queries) - len(small.captured_queries) <= 6 * 4
    assert len(large.captured_queries) < 400 / 5
    assert all_chain_problems() == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01", datetime.datetime(2024, 3, 1, tzinfo=UTC)),
        ("2024-03-01T09:30", datetime.datetime(2024, 3, 1, 9, 30, tzinfo=UTC)),
        ("2024-03-01 09:30:15", datetime.datetime(2024, 3, 1, 9, 30, 15, tzinfo=UTC)),
        ("2024-03-01T09:30:15.25Z", datetime.datetime(2024, 3, 1, 9, 30, 15, 250000, tzinfo=UTC)),
        ("2024-03-01T09:30:15.123456+02:00", datetime.datetime(2024, 3, 1, 7, 30, 15, 123456, tzinfo=UTC)),
        ("2024-03-01T09:30:15-0530", datetime.datetime(2024, 3, 1, 15, 0, 15, tzinfo=UTC)),
        ("2024-03-01T09:30:15+01", datetime.datetime(2024, 3, 1, 8, 30, 15, tzinfo=UTC)),
        (" 2024-03-01 ", datetime.datetime(2024, 3, 1, tzinfo=UTC)),
    ],
)
def test_effective_time_grammar_accepts(text, expected):
    assert bulk.parse_moment(text) == expected


@pytest.mark.parametrize(
    "text",
    ["01/03/2024", "2024-3-1", "2024-02-30", "2024-03-01T24:00", "2024-03-01T09:60", "2024-03-01T09:30:61",
     "2024-03-01T09:30:15.1234567", "2024-03-01Z", "yesterday", "now", "2024-03-01T09:30+25:00", "infinity"],
)  # fmt: skip
def test_effective_time_grammar_refuses(text):
    with pytest.raises(ValueError, match="moment_format"):
        bulk.parse_moment(text)


def test_spreadsheet_cells_are_read_as_text_and_naive_dates_as_utc(purposes):
    subject = UserFactory()
    m = purposes["marketing"]
    bulk.consent_events_append(
        [{**row(subject, m, "given", datetime.datetime(2022, 5, 4, 3, 2, 1)), "notice_version": 1.0}], actor=None, source=source()
    )
    event = ConsentEvent.objects.get()
    assert event.effective_at == datetime.datetime(2022, 5, 4, 3, 2, 1, tzinfo=UTC)
    assert event.notice_version == "1"
