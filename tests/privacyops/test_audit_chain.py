import pytest
from django.db import connection

from privacyops.audit import audit_chain_verify, audit_record
from privacyops.models import GENESIS_HASH, AppendOnlyError, AuditEvent
from tests.factories.accounts import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_events_chain_onto_each_other():
    staff = StaffFactory()
    subject = UserFactory()
    first = audit_record(actor=staff, action="test.first", target=subject, subject=subject, details={"n": 1})
    second = audit_record(actor=None, action="test.second")
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert first.actor_label == staff.email and second.actor_label == "system"
    assert first.subject_ref == subject.subject_ref
    report = audit_chain_verify()
    assert report.ok and report.checked == 2 and report.head_hash == second.hash


def test_pm_vii_2_audit_events_refuse_update_and_delete_in_python():
    event = audit_record(actor=None, action="test.one")
    event.action = "test.changed"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.update(action="x")


def test_pm_vii_2_verify_names_the_first_edited_event():
    audit_record(actor=None, action="test.a")
    middle = audit_record(actor=None, action="test.b")
    audit_record(actor=None, action="test.c")
    table = AuditEvent._meta.db_table
    if connection.vendor == "postgresql":
        import pgtrigger

        with pgtrigger.ignore("privacyops.AuditEvent:audit_append_only"), connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET action = 'test.forged' WHERE id = %s", [middle.pk])
    else:
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET action = 'test.forged' WHERE id = %s", [middle.pk])
    report = audit_chain_verify()
    assert not report.ok
    assert report.first_bad_id == middle.pk
