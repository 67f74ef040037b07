"""The audit trail's vocabulary (issue 11 §3): every action is named once, in its app's audit_actions.py,
with the label staff read; an unnamed action is refused before anything is written."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from consents.models import ConsentEvent
from privacyops.audit import audit_personal_data_viewed, audit_record
from privacyops.audit_actions import (
    PERSONAL_DATA_VIEWED,
    UnknownAuditAction,
    action,
    audit_action_label,
    audit_actions,
)
from privacyops.models import AuditEvent
from tests.factories.accounts import UserFactory

ROOT = Path(__file__).resolve().parents[2]
APPS = [p.parent.name for p in ROOT.glob("*/apps.py")]


def _is_action(node) -> bool:
    """`action="..."` arguments and the module constants named *ACTION that some modules pass on."""
    if isinstance(node, ast.keyword):
        return node.arg == "action" and isinstance(node.value, ast.Constant)
    return (
        isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and any(isinstance(t, ast.Name) and t.id.endswith("ACTION") for t in node.targets)
    )


def _literal_actions() -> set[tuple[str, str]]:
    """Every audit action written as a string in the apps' code, with the file it is in."""
    found = set()
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts or path.name == "audit_actions.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if _is_action(node) and isinstance(node.value.value, str) and "." in node.value.value:
                    found.add((str(path.relative_to(ROOT)), node.value.value))
    return found


def test_every_action_the_code_names_is_in_the_vocabulary():
    known = audit_actions()
    missing = sorted((path, code) for path, code in _literal_actions() if code not in known)
    assert _literal_actions(), "the scan found no action at all: it is looking in the wrong place"
    assert not missing, missing


def test_the_ledger_actions_cover_every_consent_event_action():
    for value in ConsentEvent.Action.values:
        assert f"consent.{value}" in audit_actions()


def test_every_label_is_words_not_the_code():
    for code, label in audit_actions().items():
        assert label and label != code and "_" not in label, (code, label)


def test_an_unknown_action_is_refused_and_nothing_is_written(db):
    before = AuditEvent.objects.count()
    with pytest.raises(UnknownAuditAction, match=r"retention\.hold_plcaed"):
        audit_record(actor=None, action="retention.hold_plcaed")
    assert AuditEvent.objects.count() == before


def test_in_production_an_unknown_action_is_logged_and_still_recorded(db, settings, caplog):
    settings.AUDIT_ACTIONS_STRICT = False
    with caplog.at_level(logging.ERROR, logger="privacyops.audit_actions"):
        event = audit_record(actor=None, action="retention.hold_plcaed")
    assert AuditEvent.objects.filter(pk=event.pk, action="retention.hold_plcaed").exists()
    assert "retention.hold_plcaed" in caplog.text


def test_a_code_is_dotted_snake_case_and_registered_once():
    with pytest.raises(ValueError, match="lower_snake_case"):
        action("Retention Hold", "x")
    with pytest.raises(ValueError, match="twice"):
        action("retention.hold_placed", "Something else")
    assert action("retention.hold_placed", "Legal hold placed") == "retention.hold_placed"


def test_labels_read_as_words_and_unknown_codes_as_themselves():
    assert audit_action_label("retention.hold_placed") == "Legal hold placed"
    assert audit_action_label("register.purpose.created") == "Register: purpose created"
    assert audit_action_label("gone.long_ago") == "gone.long_ago"


def test_staff_viewing_personal_data_is_one_action_naming_the_screen(db):
    staff, subject = UserFactory(is_staff=True), UserFactory()
    event = audit_personal_data_viewed(actor=staff, subject=subject, what="account", target=subject, details={"n": 3})
    event.refresh_from_db()
    assert event.action == PERSONAL_DATA_VIEWED
    assert event.subject_ref == subject.subject_ref and event.actor_id == staff.pk
    assert event.details == {"what": "account", "n": 3}
