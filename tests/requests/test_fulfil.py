"""Restriction, objection and withdrawal for rights requests (PM-IX-5, PM-IX-6): carried out by the consents
app's services only, checked with `is_processing_allowed` (the one answer), recorded on the timeline and in
the audit trail; a restriction's recipients are told (Art. 19)."""

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from accounts.roles import ROLE_DPO, ROLE_PRIVACY_ANALYST, ROLE_SUPPORT_AGENT
from consents.decisions import decision_cache_clear, is_processing_allowed
from consents.ledger import consent_record
from consents.models import ConsentEvent, ConsentPurpose, ProcessingRestriction
from inventory.models import Jurisdiction, Purpose, Recipient
from privacyops.models import AuditEvent
from requests.fulfil import fulfil_objection, fulfil_restriction, fulfil_withdraw_consent
from requests.models import RecipientNotice, RequestEvent, Right, Status
from requests.services import RequestActionError
from tests.factories.accounts import UserFactory
from tests.factories.chat import ConversationFactory
from tests.factories.consents import ConsentPurposeFactory
from tests.factories.inventory import staff_in_role
from tests.factories.requests import RightsRequestFactory

Action = ConsentEvent.Action


@pytest.fixture(scope="module")
def register(django_db_setup, django_db_blocker):
    """The seeded register (purposes, bases, categories, recipients), loaded once for the module inside a
    transaction rolled back at its end; the two consent purposes the tests use are made if the seed lacks them."""
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            call_command("loadpolicy", verbosity=0)
            ConsentPurposeFactory(
                code="marketing-communications", purpose=Purpose.objects.get(code="marketing"), dpv="dpv:DirectMarketing"
            )
            ConsentPurposeFactory(
                code="cookies-necessary",
                purpose=Purpose.objects.get(code="provide-service"),
                is_necessary=True,
                cookie_category="necessary",
            )
            yield
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def isolated(register, db):
    # Savepoints roll chain versions back, so a version can recur: no cached answer may outlive its test.
    decision_cache_clear()
    yield
    decision_cache_clear()


@pytest.fixture
def subject():
    return UserFactory(country="SG")


def _request(subject, right, status=Status.FULFILLING, **kwargs):
    values = {"verified_at": timezone.now(), "jurisdiction": Jurisdiction.objects.get(code="SG")} | kwargs
    return RightsRequestFactory(subject=subject, right=right, status=status, **values)


def _recipients_of(codes) -> list[str]:
    return sorted(Recipient.objects.filter(data_categories__code__in=codes).distinct().values_list("code", flat=True))


def test_pm_ix_5_a_restriction_goes_through_consents_and_stops_processing(subject):
    assert is_processing_allowed(subject, "model-improvement").allowed
    rights_request = _request(subject, Right.RESTRICTION)
    dpo = staff_in_role(ROLE_DPO)
    restriction = fulfil_restriction(
        rights_request=rights_request, actor=dpo, purpose="model-improvement", reason="Accuracy contested (Art. 18(1)(a))"
    )
    assert (restriction.kind, restriction.purpose.code, restriction.reference) == (
        "restriction",
        "model-improvement",
        rights_request.reference,
    )
    decision = is_processing_allowed(subject, "model-improvement")
    assert not decision.allowed and decision.restricted
    event = rights_request.events.get(details__action="restriction_placed")
    assert event.actor == dpo and event.details["restriction"] == restriction.pk and event.details["allowed_now"] is False
    assert "not allowed" in event.message
    assert AuditEvent.objects.filter(action="consent.restriction_placed", subject_ref=subject.subject_ref).count() == 1
    audit = AuditEvent.objects.get(action="rights_request.restriction_placed")
    assert audit.details["purpose"] == "model-improvement" and "Accuracy" not in str(audit.details)
    # Art. 19: recipients of the categories the purpose processes
    categories = Purpose.objects.get(code="model-improvement").categories.values_list("code", flat=True)
    expected = _recipients_of(categories)
    assert expected, "the seeded register names recipients of the purpose's categories"
    assert sorted(RecipientNotice.objects.filter(request=rights_request).values_list("recipient__code", flat=True)) == expected


def test_pm_ix_5_restricting_everything_tells_the_recipients_of_every_category_the_subject_has(subject):
    ConversationFactory(user=subject)
    rights_request = _request(subject, Right.RESTRICTION)
    restriction = fulfil_restriction(rights_request=rights_request, actor=staff_in_role(ROLE_DPO), reason="Everything, please")
    assert restriction.purpose is None
    assert not is_processing_allowed(subject, "model-improvement").allowed
    notices = RecipientNotice.objects.filter(request=rights_request)
    covered = {code for notice in notices for code in notice.categories}
    assert {"account-information", "user-content"} <= covered
    assert sorted(n.recipient.code for n in notices) == _recipients_of(["account-information", "user-content"])


def test_pm_ix_5_a_restriction_for_legal_claims_also_holds_the_data(subject):
    restriction = fulfil_restriction(
        rights_request=_request(subject, Right.RESTRICTION),
        actor=staff_in_role(ROLE_DPO),
        reason="Needed for my claim against a third party",
        for_legal_claims=True,
    )
    assert restriction.for_legal_claims and restriction.legal_hold is not None


def test_pm_ix_5_an_objection_to_direct_marketing_wins_and_tells_no_recipient(subject):
    rights_request = _request(subject, Right.OBJECTION)
    objection = fulfil_objection(
        rights_request=rights_request, actor=staff_in_role(ROLE_PRIVACY_ANALYST), purpose="marketing", reason="Art. 21(2)"
    )
    assert objection.kind == ProcessingRestriction.Kind.OBJECTION
    decision = is_processing_allowed(subject, "marketing")
    assert not decision.allowed and decision.restricted
    assert rights_request.events.filter(details__action="objection_recorded").count() == 1
    assert AuditEvent.objects.filter(action="consent.objection_recorded").count() == 1
    assert not RecipientNotice.objects.exists()  # Art. 19 covers Arts. 16, 17(1) and 18, not 21


def test_pm_ix_6_withdrawal_records_a_staff_event_with_the_reference_as_instruction(subject):
    purpose = ConsentPurpose.objects.get(code="marketing-communications")
    consent_record(purpose=purpose, action=Action.GIVEN, method=ConsentEvent.Method.API, subject=subject)
    decision_cache_clear()
    assert is_processing_allowed(subject, "marketing-communications").allowed
    rights_request = _request(subject, Right.WITHDRAW_CONSENT)
    analyst = staff_in_role(ROLE_PRIVACY_ANALYST)
    (event,) = fulfil_withdraw_consent(rights_request=rights_request, actor=analyst, purposes=None)
    assert (event.action, event.method, event.instruction) == (Action.WITHDRAWN, "staff", rights_request.reference)
    assert not is_processing_allowed(subject, "marketing-communications").allowed
    timeline = rights_request.events.get(details__action="consent_withdrawn")
    assert timeline.details["actions"] == {"marketing-communications": "withdrawn"}
    assert timeline.details["allowed_now"] == {"marketing-communications": False}
    assert AuditEvent.objects.filter(action="rights_request.consent_withdrawn").count() == 1
    # asked again: nothing left to withdraw, no event written
    rights_request.refresh_from_db()
    assert fulfil_withdraw_consent(rights_request=rights_request, actor=analyst, purposes=["marketing-communications"]) == []


def test_pm_ix_6_strictly_necessary_purposes_are_named_not_withdrawn(subject):
    rights_request = _request(subject, Right.WITHDRAW_CONSENT)
    events = fulfil_withdraw_consent(
        rights_request=rights_request, actor=staff_in_role(ROLE_DPO), purposes=["cookies-necessary", "marketing-communications"]
    )
    assert [e.purpose.code for e in events] == ["marketing-communications"]
    assert events[0].action == Action.REFUSED  # never given: the answer is recorded as a no
    timeline = rights_request.events.get(details__action="consent_withdrawn")
    assert timeline.details["necessary_kept"] == ["cookies-necessary"] and "cannot be withdrawn" in timeline.message


@pytest.mark.parametrize(
    ("right", "status", "verified", "message"),
    [
        (Right.RESTRICTION, Status.IN_PROGRESS, True, "verified and approved"),
        (Right.RESTRICTION, Status.FULFILLING, False, "verified and approved"),
        (Right.ACCESS, Status.FULFILLING, True, "not restriction"),
    ],
)
def test_pm_ix_5_only_an_approved_verified_request_for_the_right_is_carried_out(subject, right, status, verified, message):
    rights_request = _request(subject, right, status=status, verified_at=timezone.now() if verified else None)
    with pytest.raises(RequestActionError, match=message):
        fulfil_restriction(rights_request=rights_request, actor=staff_in_role(ROLE_DPO), reason="x")
    assert not ProcessingRestriction.objects.exists()


def test_pm_ix_5_a_request_without_an_account_cannot_be_carried_out():
    rights_request = _request(None, Right.OBJECTION, subject_ref=None, contact_email="someone@example.org")
    with pytest.raises(RequestActionError, match="no account"):
        fulfil_objection(rights_request=rights_request, actor=staff_in_role(ROLE_DPO), reason="x")


def test_pm_ix_5_refused_by_the_consents_service_leaves_nothing_behind(subject):
    rights_request = _request(subject, Right.RESTRICTION)
    support = staff_in_role(ROLE_SUPPORT_AGENT)
    with pytest.raises(PermissionDenied):
        fulfil_restriction(rights_request=rights_request, actor=support, purpose="model-improvement", reason="x")
    with pytest.raises(PermissionDenied):
        fulfil_withdraw_consent(
            rights_request=_request(subject, Right.WITHDRAW_CONSENT), actor=support, purposes=["marketing-communications"]
        )
    assert not ProcessingRestriction.objects.exists() and not RecipientNotice.objects.exists()
    assert not RequestEvent.objects.filter(details__has_key="action").exists()
