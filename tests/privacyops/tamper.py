"""Raw-SQL tampering with the audit table, as an attacker with database access would do it.

On PostgreSQL the append-only trigger has to be switched off for the statement (pgtrigger.ignore),
which is exactly what the anchors exist to catch.
"""

import contextlib

from django.db import connection

from privacyops.models import AuditEvent

TABLE = AuditEvent._meta.db_table


@contextlib.contextmanager
def _cursor():
    if connection.vendor == "postgresql":
        import pgtrigger

        with pgtrigger.ignore("privacyops.AuditEvent:audit_append_only"), connection.cursor() as cursor:
            yield cursor
    else:
        with connection.cursor() as cursor:
            yield cursor


def raw_update(event_id: int, **columns) -> None:
    assignments = ", ".join(f"{column} = %s" for column in columns)
    with _cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET {assignments} WHERE id = %s", [*columns.values(), event_id])


def raw_delete(event_id: int) -> None:
    with _cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE id = %s", [event_id])


def rewrite_whole_chain(*, edit_id: int, action: str) -> None:
    """Edit one event and recompute every hash after it, so the chain is consistent again."""
    from privacyops.models import GENESIS_HASH

    prev = GENESIS_HASH
    for event in AuditEvent.objects.order_by("id"):
        if event.pk == edit_id:
            event.action = action
        event.prev_hash = prev
        event.hash = event.compute_hash()
        raw_update(event.pk, action=event.action, prev_hash=event.prev_hash, hash=event.hash)
        prev = event.hash
