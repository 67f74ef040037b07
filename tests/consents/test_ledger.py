"""The consent ledger (PM-0-2): per-principal hash chains, append-only rows, immutable notices, concurrent
writers, and `consent_set`, the choice every UI records (PM-IX-6, PM-III-6)."""

import itertools
import threading
import time
import uuid
from datetime import timedelta

import psycopg.errors
import pytest
from django.core.exceptions import ValidationError
from django.db import ProgrammingError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from consents.hashing import keyed_hash
from consents.ledger import consent_record, state_from_ledger, state_of, visitor_link
from consents.models import GENESIS_HASH, AppendOnlyError, ConsentChain, ConsentEvent, ConsentNotice
from consents.proof import chain_verify
from consents.services import consent_set
from tests.factories.accounts import UserFactory
from tests.factories.consents import ConsentNoticeFactory, purpose_with_notice

EVENTS = ConsentEvent._meta.db_table
NOTICES = ConsentNotice._meta.db_table


@pytest.fixture
def purposes(db):
    return {
        "marketing": purpose_with_notice("marketing-communications"),
        "analytics": purpose_with_notice("cookies-analytics", cookie_category="analytics", lifetime="P13M"),
        "necessary": purpose_with_notice("cookies-necessary", cookie_category="necessary", is_necessary=True),
    }


def _chain_events(chain):
    return list(ConsentEvent.objects.filter(chain=chain).order_by("seq"))


# --- Chains ------------------------------------------------------------------------------------------


def test_pm_0_2_each_principal_has_its_own_chain_with_its_own_seq(purposes):
    alice, bob = UserFactory(), UserFactory()
    visitor = uuid.uuid4()
    writes = [
        {"subject": alice},
        {"subject": bob},
        {"visitor_id": visitor},
        {"subject": alice},
        {"visitor_id": visitor},
        {"subject": alice},
    ]
    for n, principal in enumerate(writes):
        consent_record(purpose=purposes["marketing"], action="given" if n % 2 else "refused", method="portal", **principal)

    for lookup, expected in (
        ({"subject_ref": alice.subject_ref}, 3),
        ({"subject_ref": bob.subject_ref}, 1),
        ({"visitor_id": visitor}, 2),
    ):
        chain = ConsentChain.objects.get(**lookup)
        events = _chain_events(chain)
        assert [e.seq for e in events] == list(range(1, expected + 1))
        assert events[0].prev_hash == GENESIS_HASH
        assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(events))
        assert all(e.compute_hash(purpose_code=e.purpose.code) == e.hash for e in events)
        assert (chain.length, chain.head_hash) == (expected, events[-1].hash)
        assert chain_verify(chain).ok


def test_pm_0_2_event_records_the_notice_policy_and_only_keyed_hashes_of_ip_and_agent(purposes):
    user = UserFactory()
    event = consent_record(
        purpose=purposes["marketing"], action="given", method="banner", subject=user, ip="198.51.100.7", user_agent="Firefox"
    )
    notice = purposes["marketing"].notices.get()
    assert (event.notice_id, event.notice_version, event.notice_sha256) == (notice.pk, "1", ConsentNotice.digest(notice.text))
    assert event.ip_hash == keyed_hash("198.51.100.7", scope="ip") != "198.51.100.7"
    assert event.ua_hash == keyed_hash("Firefox", scope="ua")
    stored = ConsentEvent.objects.filter(pk=event.pk).values()[0]
    assert "198.51.100.7" not in {str(v) for v in stored.values()}


def test_pm_0_2_every_change_bumps_the_chain_version(purposes):
    user = UserFactory()
    consent_record(purpose=purposes["marketing"], action="given", method="portal", subject=user)
    before = ConsentChain.objects.get(subject_ref=user.subject_ref).version
    consent_record(purpose=purposes["marketing"], action="withdrawn", method="portal", subject=user)
    assert ConsentChain.objects.get(subject_ref=user.subject_ref).version > before


# --- Append-only -------------------------------------------------------------------------------------


def test_pm_0_2_model_and_queryset_refuse_to_change_or_remove_an_event(purposes):
    event = consent_record(purpose=purposes["marketing"], action="given", method="portal", subject=UserFactory())
    event.action = "refused"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        ConsentEvent.objects.filter(pk=event.pk).update(action="refused")
    with pytest.raises(AppendOnlyError):
        ConsentEvent.objects.filter(pk=event.pk).delete()
    assert ConsentEvent.objects.get(pk=event.pk).action == "given"


@pytest.mark.postgres
@pytest.mark.parametrize(
    "statement",
    [f"UPDATE {EVENTS} SET action = 'refused' WHERE id = %s", f"DELETE FROM {EVENTS} WHERE id = %s"],
    ids=["update", "delete"],
)
def test_pm_0_2_postgresql_trigger_refuses_raw_update_and_delete_of_an_event(purposes, statement):
    event = consent_record(purpose=purposes["marketing"], action="given", method="portal", subject=UserFactory())
    with pytest.raises(ProgrammingError) as refused, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, [event.pk])
    assert isinstance(refused.value.__cause__, psycopg.errors.RaiseException)
    stored = ConsentEvent.objects.get(pk=event.pk)
    assert (stored.action, stored.hash) == ("given", event.hash)


@pytest.mark.postgres
def test_pm_0_2_postgresql_trigger_refuses_orm_paths_that_skip_the_model(purposes):
    event = consent_record(purpose=purposes["marketing"], action="given", method="portal", subject=UserFactory())
    with pytest.raises(ProgrammingError), transaction.atomic():
        ConsentEvent.objects.filter(pk=event.pk)._raw_delete(connection.alias)
    with pytest.raises(ProgrammingError), transaction.atomic():
        QuerySet(model=ConsentEvent).filter(pk=event.pk).update(action="refused")
    assert ConsentEvent.objects.get(pk=event.pk).action == "given"


def test_pm_0_2_a_notice_text_cannot_change_once_created(db):
    notice = ConsentNoticeFactory(text="May we send you news?")
    notice.text = "May we send you news and share your data?"
    with pytest.raises(AppendOnlyError):
        notice.save()
    notice.refresh_from_db()
    assert notice.text == "May we send you news?"
    assert notice.sha256 == ConsentNotice.digest("May we send you news?")


@pytest.mark.postgres
def test_pm_0_2_postgresql_trigger_refuses_a_raw_update_of_a_notice_text(db):
    notice = ConsentNoticeFactory(text="May we send you news?")
    with pytest.raises(ProgrammingError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {NOTICES} SET text = 'Something else' WHERE id = %s", [notice.pk])
    notice.refresh_from_db()
    assert notice.text == "May we send you news?"


# --- consent_set -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "agree", "expected"),
    [
        ([], True, "given"),
        ([], False, "refused"),
        (["given"], True, None),
        (["given"], False, "withdrawn"),
        (["refused"], True, "given"),
        (["refused"], False, None),
        (["given", "withdrawn"], False, None),
        (["given", "withdrawn"], True, "given"),
        (["given", "expired"], True, "given"),
        (["given", "expired"], False, "refused"),
    ],
)
def test_pm_ix_6_consent_set_writes_only_what_changes_the_state(purposes, history, agree, expected):
    user = UserFactory()
    purpose = purposes["analytics"]
    start = timezone.now() - timedelta(days=30)
    for n, action in enumerate(history):
        method = "expiry" if action == "expired" else "portal"
        consent_record(purpose=purpose, action=action, method=method, subject=user, effective_at=start + timedelta(days=n))
    written = consent_set(subject=user, choices={purpose.code: agree}, method="banner")
    assert [e.action for e in written] == ([expected] if expected else [])
    assert state_of(subject_ref=user.subject_ref) == state_from_ledger(subject_ref=user.subject_ref)


def test_pm_iii_6_a_yes_to_a_consent_past_its_lifetime_gives_it_again(purposes):
    user = UserFactory()
    purpose = purposes["analytics"]  # lifetime P13M
    long_ago = timezone.now() - timedelta(days=400)
    consent_record(purpose=purpose, action="given", method="banner", subject=user, effective_at=long_ago)
    assert [e.action for e in consent_set(subject=user, choices={purpose.code: True}, method="banner")] == ["given"]


def test_pm_iii_6_a_no_to_a_consent_past_its_lifetime_is_a_refusal_not_a_withdrawal(purposes):
    user = UserFactory()
    purpose = purposes["analytics"]
    long_ago = timezone.now() - timedelta(days=400)
    consent_record(purpose=purpose, action="given", method="banner", subject=user, effective_at=long_ago)
    assert [e.action for e in consent_set(subject=user, choices={purpose.code: False}, method="banner")] == ["refused"]


def test_pm_iii_6_consent_set_skips_necessary_purposes_and_writes_the_rest_in_one_call(purposes):
    visitor = uuid.uuid4()
    written = consent_set(
        visitor_id=visitor,
        choices={"cookies-necessary": False, "cookies-analytics": False, "marketing-communications": True},
        method="banner",
        ip="203.0.113.9",
        user_agent="Safari",
        gpc=True,
        language="en",
    )
    assert sorted((e.purpose.code, e.action) for e in written) == [
        ("cookies-analytics", "refused"),
        ("marketing-communications", "given"),
    ]
    assert all(e.visitor_id == visitor and e.gpc and e.ip_hash == keyed_hash("203.0.113.9", scope="ip") for e in written)
    assert not ConsentEvent.objects.filter(purpose=purposes["necessary"]).exists()


def test_pm_ix_6_consent_set_uses_the_notice_given_for_each_purpose(purposes):
    later = ConsentNoticeFactory(purpose=purposes["marketing"], version="2", text="May we e-mail you our news? (v2)")
    older = purposes["marketing"].notices.get(version="1")
    user = UserFactory()
    (event,) = consent_set(subject=user, choices={"marketing-communications": True}, method="portal", notice=older)
    assert event.notice_id == older.pk
    (event,) = consent_set(subject=user, choices={"marketing-communications": False}, method="portal", notices={})
    assert event.notice_id == later.pk  # the current text by default


def test_pm_ix_6_consent_set_refuses_unknown_purposes_and_writes_nothing(purposes):
    user = UserFactory()
    with pytest.raises(ValidationError, match="no-such-purpose"):
        consent_set(subject=user, choices={"marketing-communications": True, "no-such-purpose": True}, method="portal")
    assert not ConsentEvent.objects.exists()


def test_pm_ix_6_consent_set_is_one_transaction(purposes):
    user = UserFactory()
    purposes["analytics"].is_active = False  # giving an inactive purpose is refused by the ledger ...
    purposes["analytics"].save()
    with pytest.raises(ValidationError):
        consent_set(subject=user, choices={"marketing-communications": True, "cookies-analytics": True}, method="portal")
    assert not ConsentEvent.objects.exists()  # ... and the marketing event written before it is rolled back


# --- Concurrency (PostgreSQL, real threads with their own connections) ------------------------------------


def _run_threads(targets) -> list[BaseException]:
    errors: list[BaseException] = []

    def wrap(target):
        try:
            target()
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a writer hung"
    return errors


WRITERS = 6
EVENTS_PER_WRITER = 8


@pytest.mark.postgres
def test_pm_0_2_concurrent_writers_on_one_subject_give_one_chain_without_gaps(transactional_db):
    purpose = purpose_with_notice("marketing-communications")
    user = UserFactory()
    start = threading.Barrier(WRITERS)

    def writer(number):
        def run():
            start.wait()
            for n in range(EVENTS_PER_WRITER):
                consent_record(purpose=purpose, action="given" if (number + n) % 2 else "withdrawn", method="api", subject=user)

        return run

    assert _run_threads([writer(number) for number in range(WRITERS)]) == []
    chain = ConsentChain.objects.get(subject_ref=user.subject_ref)
    report = chain_verify(chain)
    assert report.ok, report.problems
    assert report.checked == chain.length == WRITERS * EVENTS_PER_WRITER
    assert list(ConsentEvent.objects.filter(chain=chain).order_by("seq").values_list("seq", flat=True)) == list(
        range(1, WRITERS * EVENTS_PER_WRITER + 1)
    )
    assert state_of(subject_ref=user.subject_ref) == state_from_ledger(subject_ref=user.subject_ref)


@pytest.mark.postgres
def test_pm_ix_6_the_same_choice_sent_at_once_from_several_tabs_writes_one_event(transactional_db):
    purpose_with_notice("marketing-communications")
    user = UserFactory()
    start = threading.Barrier(WRITERS)

    def tab():
        start.wait()
        consent_set(subject=user, choices={"marketing-communications": True}, method="portal")

    assert _run_threads([tab] * WRITERS) == []
    assert ConsentEvent.objects.filter(subject_ref=user.subject_ref).count() == 1


def _wait_until_a_backend_waits_for_a_lock(cursor, *, attempts=2000):
    """Poll until another connection is blocked on a lock (a synchronisation point, not a timing assumption:
    the caller proceeds either way, and the test's assertion does not depend on how long it took)."""
    for _ in range(attempts):
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
        if cursor.fetchone()[0]:
            return True
        time.sleep(0.005)
    return False


@pytest.mark.postgres
def test_pm_0_2_a_visitor_event_racing_the_visitors_sign_in_reaches_the_account_state(transactional_db):
    """A visitor clicks while the same browser signs in: the click waits for the link's transaction and then
    counts for the account too (the ledger reads the link only once it holds the visitor's chain)."""
    purpose = purpose_with_notice("cookies-analytics", cookie_category="analytics")
    user = UserFactory()
    visitor = uuid.uuid4()
    consent_record(purpose=purpose, action="refused", method="banner", visitor_id=visitor)
    linked = threading.Event()

    def sign_in():
        with transaction.atomic():
            visitor_link(visitor_id=visitor, subject=user, method="signin")
            linked.set()
            with connection.cursor() as cursor:
                _wait_until_a_backend_waits_for_a_lock(cursor)

    def click():
        linked.wait(timeout=60)
        consent_record(purpose=purpose, action="given", method="banner", visitor_id=visitor)

    assert _run_threads([sign_in, click]) == []
    latest = ConsentEvent.objects.filter(visitor_id=visitor).order_by("-seq").first()
    assert latest.action == "given"
    assert state_of(subject_ref=user.subject_ref) == state_from_ledger(subject_ref=user.subject_ref) == {purpose.pk: latest.pk}
