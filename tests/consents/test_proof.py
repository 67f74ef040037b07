"""Proof of consent for a regulator and `manage.py verify_consents` (PM-0-2, GDPR Art. 7(1)).

Tampering is done as an attacker with database access would: raw SQL, with the PostgreSQL append-only
trigger switched off for the statement (pgtrigger.ignore) -- which is what verification exists to catch.
"""

import contextlib
import json
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from consents.ledger import consent_record, visitor_link
from consents.models import ConsentChain, ConsentEvent, ConsentNotice, ConsentState
from consents.proof import chain_verify, chains_verify, consent_proof
from consents.services import restriction_place
from policies.models import PolicyAcceptance
from privacyops.models import AuditEvent
from tests.factories.accounts import UserFactory
from tests.factories.consents import PolicyVersionFactory, purpose_with_notice

pytestmark = pytest.mark.django_db

EVENTS = ConsentEvent._meta.db_table
NOTICES = ConsentNotice._meta.db_table


@contextlib.contextmanager
def _raw(trigger: str):
    if connection.vendor == "postgresql":
        import pgtrigger

        with pgtrigger.ignore(trigger), connection.cursor() as cursor:
            yield cursor
    else:
        with connection.cursor() as cursor:
            yield cursor


def raw_update_event(event_id: int, **columns) -> None:
    assignments = ", ".join(f"{column} = %s" for column in columns)
    with _raw("consents.ConsentEvent:consent_event_append_only") as cursor:
        cursor.execute(f"UPDATE {EVENTS} SET {assignments} WHERE id = %s", [*columns.values(), event_id])


def raw_delete_event(event_id: int) -> None:
    # The state cache points at events; a careful attacker repoints it first so the delete goes through.
    ConsentState.objects.filter(event_id=event_id).delete()
    with _raw("consents.ConsentEvent:consent_event_append_only") as cursor:
        cursor.execute(f"DELETE FROM {EVENTS} WHERE id = %s", [event_id])


def raw_update_notice_text(notice_id: int, text: str) -> None:
    with _raw("consents.ConsentNotice:consent_notice_immutable") as cursor:
        cursor.execute(f"UPDATE {NOTICES} SET text = %s WHERE id = %s", [text, notice_id])


@pytest.fixture
def purposes(db):
    return {
        "marketing": purpose_with_notice("marketing-communications", text="May we e-mail you our news and offers?"),
        "analytics": purpose_with_notice("cookies-analytics", cookie_category="analytics", text="May we count your visits?"),
    }


def _history(purposes, user=None):
    user = user or UserFactory()
    events = [
        consent_record(purpose=purposes["marketing"], action="given", method="signup", subject=user),
        consent_record(purpose=purposes["analytics"], action="refused", method="portal", subject=user),
        consent_record(purpose=purposes["marketing"], action="withdrawn", method="portal", subject=user),
        consent_record(purpose=purposes["analytics"], action="given", method="portal", subject=user),
    ]
    return user, events


def _verify(*args):
    out, err = StringIO(), StringIO()
    call_command("verify_consents", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _verify_fails(*args):
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("verify_consents", *args, stdout=out, stderr=err)
    return str(failure.value), out.getvalue() + err.getvalue()


# --- The proof ---------------------------------------------------------------------------------------------


def test_pm_0_2_the_proof_holds_every_event_with_its_notice_text_and_hash_and_is_json(purposes):
    user, visitor = UserFactory(), uuid.uuid4()
    by_visitor = consent_record(purpose=purposes["analytics"], action="given", method="banner", visitor_id=visitor)
    visitor_link(visitor_id=visitor, subject=user, method="signup")
    _, events = _history(purposes, user)
    version = PolicyVersionFactory(label="2025-04-25")
    PolicyAcceptance.objects.create(subject_ref=user.subject_ref, version=version, method="signup", client="web")
    restriction_place(actor=None, subject=user, kind="objection", reason="No profiling", reference="REQ-1")

    proof = json.loads(json.dumps(consent_proof(subject_ref=user.subject_ref)))

    assert proof["subject_ref"] == str(user.subject_ref)
    assert {c["chain"] for c in proof["chains"]} == {"account", f"visitor:{visitor}"}
    linked = next(c for c in proof["chains"] if c["chain"] != "account")
    assert linked["linked"]["method"] == "signup"
    assert [e["receipt_id"] for e in proof["events"] if e["chain"] == "account"] == [str(e.receipt_id) for e in events]
    assert [e["receipt_id"] for e in proof["events"] if e["chain"] != "account"] == [str(by_visitor.receipt_id)]
    first = proof["events"][0] if proof["events"][0]["chain"] == "account" else proof["events"][1]
    assert first["notice"]["text"] == "May we e-mail you our news and offers?"
    assert first["notice"]["sha256"] == ConsentNotice.digest("May we e-mail you our news and offers?")
    assert first["notice"]["text_matches_hash"] is True
    assert (first["action"], first["method"], first["method_label"]) == ("given", "signup", "Sign-up checkbox")
    assert first["hash"] == events[0].hash and first["prev_hash"] == events[0].prev_hash
    assert {s["purpose"]: s["action"] for s in proof["state"]} == {
        "marketing-communications": "withdrawn",
        "cookies-analytics": "given",
    }
    assert proof["restrictions"][0]["kind"] == "objection" and proof["restrictions"][0]["active"]
    assert proof["policy_acceptances"][0]["version"] == "2025-04-25"
    assert proof["verification"]["ok"] is True
    assert proof["verification"]["events"] == 5


def test_pm_0_2_the_proof_shows_a_broken_chain(purposes):
    user, events = _history(purposes)
    raw_update_event(events[1].pk, action="given")
    proof = consent_proof(subject_ref=user.subject_ref)
    assert proof["verification"]["ok"] is False
    (broken,) = proof["verification"]["broken"]
    assert broken["first_bad_seq"] == 2
    assert "seq 2" in broken["problems"][0] and "edited" in broken["problems"][0]


# --- chain_verify ------------------------------------------------------------------------------------------


def test_pm_0_2_an_intact_chain_verifies(purposes):
    user, events = _history(purposes)
    report = chain_verify(ConsentChain.objects.get(subject_ref=user.subject_ref))
    assert report.ok
    assert (report.checked, report.head_hash) == (4, events[-1].hash)


def test_pm_0_2_an_event_edited_in_the_database_is_found(purposes):
    user, events = _history(purposes)
    raw_update_event(events[2].pk, effective_at=timezone.now())
    report = chain_verify(ConsentChain.objects.get(subject_ref=user.subject_ref))
    assert not report.ok
    assert report.first_bad_seq == 3
    assert report.problems == ["seq 3: its content does not match its hash (the event was edited)"]


def test_pm_0_2_an_event_removed_from_the_middle_is_found(purposes):
    user, events = _history(purposes)
    raw_delete_event(events[1].pk)
    report = chain_verify(ConsentChain.objects.get(subject_ref=user.subject_ref))
    assert report.first_bad_seq == 2
    assert any("seq 2: missing" in p for p in report.problems)
    assert any("seq 3: its previous hash" in p for p in report.problems)


def test_pm_0_2_an_event_removed_from_the_end_is_found(purposes):
    user, events = _history(purposes)
    raw_delete_event(events[-1].pk)
    report = chain_verify(ConsentChain.objects.get(subject_ref=user.subject_ref))
    assert not report.ok
    assert any("says it has 4 events" in p for p in report.problems)
    assert any("head hash" in p for p in report.problems)


def test_pm_0_2_a_notice_text_changed_behind_the_trigger_is_found(purposes):
    user, events = _history(purposes)
    raw_update_notice_text(events[0].notice_id, "May we share your data with anyone?")
    report = chain_verify(ConsentChain.objects.get(subject_ref=user.subject_ref))
    assert report.first_bad_seq == 1
    assert any("notice text" in p for p in report.problems)
    proof = consent_proof(subject_ref=user.subject_ref)
    assert proof["events"][0]["notice"]["text_matches_hash"] is False


def test_pm_0_2_verification_reads_in_small_pages_with_the_same_result(purposes):
    _, events = _history(purposes)
    for _ in range(3):
        _history(purposes)
    raw_update_event(events[3].pk, method="api")
    small, large = chains_verify(chunk_size=1), chains_verify(chunk_size=1000)
    assert (small.chains, small.events, small.broken_chains) == (large.chains, large.events, large.broken_chains) == (4, 16, 1)
    assert small.broken[0].problems == large.broken[0].problems


# --- The state cache ---------------------------------------------------------------------------------------


def test_pm_0_2_a_state_that_differs_from_the_ledger_is_reported(purposes):
    user, events = _history(purposes)
    ConsentState.objects.filter(subject_ref=user.subject_ref, purpose=purposes["marketing"]).update(
        event=events[0], action="given"
    )
    summary = chains_verify()
    assert not summary.ok
    (mismatch,) = summary.state_mismatches
    assert mismatch.differences == {"marketing-communications": {"state_event": events[0].pk, "ledger_event": events[2].pk}}


def test_pm_0_2_a_state_with_no_chain_is_reported(purposes):
    _, events = _history(purposes)
    ConsentState.objects.create(
        subject_ref=uuid.uuid4(),
        purpose=purposes["marketing"],
        event=events[0],
        action="given",
        effective_at=events[0].effective_at,
    )
    assert chains_verify().orphan_states == 1


# --- manage.py verify_consents -----------------------------------------------------------------------------


def test_pm_0_2_verify_consents_passes_an_intact_ledger_and_is_audited(purposes):
    _history(purposes)
    consent_record(purpose=purposes["analytics"], action="given", method="banner", visitor_id=uuid.uuid4())
    out, err = _verify()
    assert "Checked 2 chains (5 events)" in out
    assert "All chains are intact" in out
    assert err == ""
    audit = AuditEvent.objects.get(action="consent.chains_verified")
    assert audit.details == {"chains": 2, "events": 5, "broken_chains": 0, "state_mismatches": 0, "orphan_states": 0, "ok": True}


def test_pm_0_2_verify_consents_names_each_broken_chain_and_state_and_exits_1(purposes):
    user, events = _history(purposes)
    other, other_events = _history(purposes)
    raw_update_event(events[0].pk, action="refused")
    ConsentState.objects.filter(subject_ref=other.subject_ref, purpose=purposes["analytics"]).update(event=other_events[1])

    message, output = _verify_fails()

    assert "1 broken chains" in message and "1 principals whose state differs" in message
    assert f"BROKEN chain of subject {user.subject_ref}: seq 1: its content does not match its hash" in output
    assert f"STATE MISMATCH subject {other.subject_ref} purpose cookies-analytics" in output
    audit = AuditEvent.objects.get(action="consent.chains_verified")
    assert (audit.details["broken_chains"], audit.details["state_mismatches"], audit.details["ok"]) == (1, 1, False)


def test_pm_0_2_verify_consents_subject_checks_that_subject_and_their_visitors_only(purposes):
    user, visitor = UserFactory(), uuid.uuid4()
    consent_record(purpose=purposes["analytics"], action="given", method="banner", visitor_id=visitor)
    visitor_link(visitor_id=visitor, subject=user, method="signin")
    _history(purposes, user)
    _, broken_elsewhere = _history(purposes)
    raw_update_event(broken_elsewhere[0].pk, action="refused")

    out, _ = _verify("--subject", str(user.subject_ref))
    assert f"Checked 2 chains (5 events) of subject {user.subject_ref}" in out
    assert AuditEvent.objects.get(action="consent.chains_verified").subject_ref == user.subject_ref
    with pytest.raises(CommandError, match="not a subject reference"):
        call_command("verify_consents", "--subject", "alice@example.org", stdout=StringIO())
