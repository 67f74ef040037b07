"""The daily anchor of the audit head outside the database (PM-VII-2)."""

import json
import logging
from pathlib import Path

import pytest
from django.core import mail

from privacyops.audit import audit_record
from privacyops.models import AuditEvent
from privacyops.tasks import audit_anchor_head
from tests.privacyops.tamper import raw_update

pytestmark = pytest.mark.django_db


def test_pm_vii_2_anchor_task_writes_file_log_email_and_event(anchor_log, settings, caplog):
    settings.DPO_EMAIL = "dpo@privacyops.test"
    audit_record(actor=None, action="test.a")
    head = audit_record(actor=None, action="test.b")

    with caplog.at_level(logging.INFO, logger="privacyops.audit.anchor"):
        audit_anchor_head.delay()

    with open(anchor_log) as handle:
        lines = handle.read().splitlines()
    assert len(lines) == 1
    anchor = json.loads(lines[0])
    assert anchor["head_id"] == head.pk and anchor["head_hash"] == head.hash and anchor["count"] == 2
    assert set(anchor) == {"at", "head_id", "head_hash", "count"}

    assert any(r.levelno == logging.INFO and head.hash in r.getMessage() for r in caplog.records)

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["dpo@privacyops.test"]
    assert message.subject == f"Audit trail anchor {anchor['at'][:10]}"
    assert head.hash in message.body

    event = AuditEvent.objects.get(action="audit.head_anchored")
    assert event.actor_label == AuditEvent.SYSTEM_ACTOR
    assert event.details["head_id"] == head.pk and event.details["head_hash"] == head.hash
    assert event.prev_hash == head.hash  # the anchor event itself extends the chain it anchored


def test_pm_vii_2_anchoring_twice_appends_a_second_true_anchor(anchor_log):
    audit_record(actor=None, action="test.a")
    audit_anchor_head.delay()
    audit_anchor_head.delay()
    with open(anchor_log) as handle:
        first, second = (json.loads(line) for line in handle.read().splitlines())
    # The second run anchors the first run's own event, so the two heads differ and both are true.
    assert second["head_id"] == AuditEvent.objects.get(action="audit.head_anchored", details__count=1).pk
    assert second["count"] == first["count"] + 1


def test_pm_vii_2_a_broken_chain_is_not_anchored_and_the_dpo_is_alerted(anchor_log, settings, caplog):
    settings.DPO_EMAIL = "dpo@privacyops.test"
    bad = audit_record(actor=None, action="test.a")
    audit_record(actor=None, action="test.b")
    raw_update(bad.pk, action="test.forged")

    with caplog.at_level(logging.INFO, logger="privacyops.audit.anchor"):
        audit_anchor_head.delay()

    assert not Path(anchor_log).exists()
    assert not AuditEvent.objects.filter(action="audit.head_anchored").exists()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and f"#{bad.pk}" in errors[0].getMessage()
    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject.startswith("Audit trail verification FAILED")
    assert f"#{bad.pk}" in mail.outbox[0].body


def test_pm_vii_2_anchor_survives_a_mail_failure(anchor_log, settings):
    settings.EMAIL_BACKEND = "tests.privacyops.test_audit_anchor.FailingBackend"
    audit_record(actor=None, action="test.a")
    audit_anchor_head.delay()
    with open(anchor_log) as handle:
        assert len(handle.read().splitlines()) == 1
    assert AuditEvent.objects.get(action="audit.head_anchored").details["emailed"] is False


class FailingBackend:
    """An SMTP server that is down."""

    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise ConnectionRefusedError("smtp is down")
