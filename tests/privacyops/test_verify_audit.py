"""`manage.py verify_audit` and the external anchors (PM-VII-2: a tamper-evident audit log)."""

import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from privacyops.audit import audit_head_anchor, audit_record
from privacyops.models import AuditEvent
from tests.factories.accounts import StaffFactory, UserFactory
from tests.integration.processes import subprocess_database_url
from tests.privacyops.tamper import raw_delete, raw_update, rewrite_whole_chain

pytestmark = pytest.mark.django_db


def _events(n: int) -> list[AuditEvent]:
    staff, subject = StaffFactory(), UserFactory()
    return [
        audit_record(actor=staff, action=f"test.step{i}", target=subject, subject=subject, details={"i": i}) for i in range(n)
    ]


def _verify(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("verify_audit", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _verify_fails(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("verify_audit", *args, stdout=out, stderr=err)
    return str(failure.value), out.getvalue() + err.getvalue()


def test_pm_vii_2_verify_audit_passes_and_prints_the_head_hash():
    events = _events(3)
    out, _ = _verify()
    assert "Checked 3 events" in out
    assert f"#{events[-1].pk} {events[-1].hash}" in out


def test_pm_vii_2_verify_audit_passes_on_an_empty_trail():
    out, _ = _verify()
    assert "Checked 0 events" in out


def test_pm_vii_2_verify_audit_names_an_event_edited_in_the_database():
    events = _events(4)
    raw_update(events[1].pk, details=json.dumps({"i": 99}))
    message, output = _verify_fails()
    assert f"event #{events[1].pk} does not verify" in message
    assert "edited" in message
    assert f"#{events[1].pk}" in output


def test_pm_vii_2_verify_audit_detects_a_deleted_event():
    events = _events(4)
    raw_delete(events[1].pk)
    message, _ = _verify_fails()
    # The gap shows at the event after the removed one: its link points at a hash no longer there.
    assert f"event #{events[2].pk} does not verify" in message
    assert "removed" in message


def test_pm_vii_2_anchor_detects_a_consistently_rewritten_chain(anchor_log):
    events = _events(4)
    anchor = audit_head_anchor()
    assert anchor.head_id == events[-1].pk
    rewrite_whole_chain(edit_id=events[0].pk, action="test.forged")
    # The chain itself now verifies: only the anchor can tell.
    out, _ = _verify("--no-anchors")
    assert "the chain is intact" in out
    message, _ = _verify_fails("--anchors", anchor_log)
    assert f"event #{events[-1].pk} no longer has the hash anchored" in message


def test_pm_vii_2_anchor_detects_removal_of_the_anchored_head(anchor_log):
    events = _events(2)
    audit_head_anchor()
    anchored_event = AuditEvent.objects.get(action="audit.head_anchored")
    raw_delete(anchored_event.pk)
    raw_delete(events[-1].pk)
    # Removing the newest events leaves a valid shorter chain; the anchor names what went missing.
    message, _ = _verify_fails()
    assert f"event #{events[-1].pk}, anchored at" in message and "missing" in message


def test_pm_vii_2_verify_audit_uses_the_configured_anchor_file_by_default(anchor_log):
    _events(2)
    audit_head_anchor()
    out, _ = _verify()
    assert f"Anchors: 1 checked against {anchor_log}; all match." in out


def test_verify_audit_refuses_a_missing_anchor_file(tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        call_command("verify_audit", "--anchors", str(tmp_path / "nope.log"), stdout=StringIO())


def test_pm_vii_2_a_corrupted_anchor_file_fails_verification(anchor_log):
    _events(1)
    audit_head_anchor()
    with open(anchor_log, "a") as handle:
        handle.write("not json\n")
    message, _ = _verify_fails()
    assert "line 2 of the anchor file" in message


@pytest.mark.django_db(transaction=True)
def test_pm_vii_2_verify_audit_exits_non_zero_from_the_shell():
    """What an operator or a cron job sees: exit status 1 and the event named on stderr."""
    events = [audit_record(actor=None, action=f"test.{n}") for n in range(3)]
    raw_update(events[1].pk, action="test.forged")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CELERY_", "PYTEST_"))}
    env.update(DJANGO_SETTINGS_MODULE="privacyops.settings", DATABASE_URL=subprocess_database_url())
    result = subprocess.run(
        [sys.executable, "manage.py", "verify_audit", "--no-anchors"],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert f"event #{events[1].pk} does not verify" in result.stderr
