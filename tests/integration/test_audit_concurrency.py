"""The audit chain under concurrent writers, and the PostgreSQL trigger that keeps it append-only (PM-VII-2).

Writers run in threads, each with its own database connection and its own transactions, so they really
race for the head of the chain; the transaction-scoped lock in audit_record must serialise them.
"""

import threading

import psycopg.errors
import pytest
from django.db import ProgrammingError, connection

from privacyops.audit import audit_chain_verify, audit_record
from privacyops.models import AuditEvent

WRITERS = 8
EVENTS_PER_WRITER = 25
TABLE = AuditEvent._meta.db_table


def _write_concurrently() -> list[BaseException]:
    start = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def writer(number: int):
        try:
            start.wait()
            for n in range(EVENTS_PER_WRITER):
                audit_record(actor=None, action="test.concurrent", details={"writer": number, "n": n})
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a writer hung"
    return errors


def test_pm_vii_2_concurrent_writers_never_fork_the_chain(transactional_db):
    """Runs on both legs: PostgreSQL orders writers with an advisory lock, SQLite (the embedded mode,
    where web, worker and beat share one file) with IMMEDIATE transactions."""
    assert _write_concurrently() == []
    report = audit_chain_verify()
    assert report.ok, report
    assert report.checked == WRITERS * EVENTS_PER_WRITER
    previous = list(AuditEvent.objects.values_list("prev_hash", flat=True))
    assert len(set(previous)) == len(previous)  # no two events chained onto the same predecessor
    # Every writer's events are all there, in its own order.
    for number in range(WRITERS):
        ns = list(AuditEvent.objects.filter(details__writer=number).order_by("id").values_list("details__n", flat=True))
        assert ns == list(range(EVENTS_PER_WRITER))


@pytest.fixture
def event(transactional_db):
    return audit_record(actor=None, action="test.protected", details={"n": 1})


@pytest.mark.postgres
@pytest.mark.parametrize(
    "statement",
    [f"UPDATE {TABLE} SET action = 'test.forged' WHERE id = %s", f"DELETE FROM {TABLE} WHERE id = %s"],
    ids=["update", "delete"],
)
def test_pm_vii_2_postgresql_trigger_refuses_raw_update_and_delete(event, statement):
    with pytest.raises(ProgrammingError) as refused, connection.cursor() as cursor:
        cursor.execute(statement, [event.pk])
    # The trigger's RAISE EXCEPTION is SQLSTATE P0001, which psycopg 3 classes as a ProgrammingError.
    assert isinstance(refused.value.__cause__, psycopg.errors.RaiseException)
    assert refused.value.__cause__.sqlstate == "P0001"
    assert "Cannot update or delete rows" in str(refused.value)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.action, stored.hash) == (event.action, event.hash)


@pytest.mark.postgres
def test_pm_vii_2_postgresql_trigger_refuses_orm_paths_that_skip_the_model(event):
    # _raw_delete and a bulk update through the base QuerySet bypass the model's Python guard.
    with pytest.raises(ProgrammingError):
        AuditEvent.objects.filter(pk=event.pk)._raw_delete(connection.alias)
    with pytest.raises(ProgrammingError):
        from django.db.models import QuerySet

        QuerySet(model=AuditEvent).filter(pk=event.pk).update(action="test.forged")
    assert AuditEvent.objects.get(pk=event.pk).action == "test.protected"
