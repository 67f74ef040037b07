"""Rectification (PM-IX-3): the registry's rectifiable fields, proposals validated by the models' own rules,
the DPO applying or rejecting each item after approval, Art. 19 tasks, and closing with the summary."""

import datetime

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from accounts.roles import ROLE_DPO, ROLE_PRIVACY_ANALYST
from chat.models import Conversation
from privacyops.models import AuditEvent
from requests.models import RecipientNotice, RectificationItem, RequestEvent, Right, Status
from requests.rectification import (
    rectifiable_fields,
    rectification_complete,
    rectification_decide,
    rectification_decide_many,
    rectification_propose,
)
from requests.services import RequestActionError
from tests.factories.accounts import UserFactory
from tests.factories.chat import ConversationFactory, SupportMessageFactory
from tests.factories.inventory import DataCategoryFactory, JurisdictionFactory, RecipientFactory, staff_in_role
from tests.factories.requests import RightsRequestFactory

pytestmark = pytest.mark.django_db
USER = "accounts.User"
Decision = RectificationItem.Decision


@pytest.fixture
def register():
    sg = JurisdictionFactory(code="SG", countries=["SG"], authority_name="PDPC")
    JurisdictionFactory(code="EU", countries=["DE", "FR"], authority_name="Lead authority")
    JurisdictionFactory(code="US-CA", countries=["US-CA"], authority_name="CPPA")
    JurisdictionFactory(code="DEFAULT", authority_name="None")
    account = DataCategoryFactory(code="account-information")
    content = DataCategoryFactory(code="user-content")
    RecipientFactory(code="crm", data_categories=[account])
    RecipientFactory(code="hosting", data_categories=[account, content])
    return sg


@pytest.fixture
def subject():
    return UserFactory(email="ana@example.org", name="Ana Smith", country="SG", date_of_birth=datetime.date(1990, 5, 17))


def _request(subject, jurisdiction, status=Status.FULFILLING, **kwargs):
    return RightsRequestFactory(
        subject=subject, jurisdiction=jurisdiction, right=Right.RECTIFICATION, status=status, verified_at=timezone.now(), **kwargs
    )


def _change(record, field, new_value):
    return {"model_label": record._meta.label, "object_pk": str(record.pk), "field": field, "new_value": new_value}


def test_pm_ix_3_rectifiable_fields_come_from_the_registry_for_the_subjects_own_records(register, subject):
    conversation = ConversationFactory(user=subject, title="Trip to Bali")
    ConversationFactory(title="Someone else's")
    SupportMessageFactory(user=subject)
    fields = rectifiable_fields(subject=subject)
    account = {e["field"]: e["value"] for e in fields if e["model_label"] == USER}
    assert account == {
        "email": "ana@example.org",
        "name": "Ana Smith",
        "country": "SG",
        "region": "",
        "date_of_birth": "1990-05-17",
    }
    titles = [e for e in fields if e["model_label"] == "chat.Conversation"]
    assert [(e["object_pk"], e["value"]) for e in titles] == [(str(conversation.pk), "Trip to Bali")]
    assert titles[0]["meaning"] == "The title of the conversation" and titles[0]["category"] == "user-content"
    assert {e["model_label"] for e in fields} >= {USER, "chat.Conversation", "chat.SupportMessage"}
    assert not any(e["field"] in ("password", "subject_ref") for e in fields)


def test_pm_ix_3_a_proposal_stores_old_and_new_values_but_the_trail_names_fields_only(register, subject):
    rights_request = _request(subject, register, status=Status.IN_PROGRESS)
    items = rectification_propose(
        rights_request=rights_request,
        changes=[_change(subject, "name", "Ana Smith-Jones"), _change(subject, "email", "Ana.New@Example.org")],
    )
    assert [(i.field, i.old_value, i.new_value, i.decision) for i in sorted(items, key=lambda i: i.field)] == [
        ("email", "ana@example.org", "ana.new@example.org", Decision.PENDING),  # the model's clean() lowercases
        ("name", "Ana Smith", "Ana Smith-Jones", Decision.PENDING),
    ]
    event = rights_request.events.get(details__action="rectification_proposed")
    audit = AuditEvent.objects.get(action="rights_request.rectification_proposed")
    for text in (event.message, str(event.details), str(audit.details)):
        assert "accounts.User.name" in text and "Smith" not in text and "example.org" not in text
    subject.refresh_from_db()
    assert subject.name == "Ana Smith"  # nothing changes at proposal


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", "not an address", "valid email"),
        ("country", "Germany", "ISO 3166-1"),
        ("region", "US-CA", "subdivision of the country"),  # the model's constraint: SG has no US-CA
        ("date_of_birth", "1990-02-31", "invalid date"),
        ("name", "x" * 201, "at most 200"),
    ],
)
def test_pm_ix_3_new_values_are_checked_by_the_models_own_rules(register, subject, field, value, message):
    rights_request = _request(subject, register, status=Status.IN_PROGRESS)
    with pytest.raises(ValidationError) as error:
        rectification_propose(
            rights_request=rights_request,
            changes=[
                _change(subject, "name" if field != "name" else "email", "fine@example.org"),
                _change(subject, field, value),
            ],
        )
    key = f"{USER}:{subject.pk}:{field}"
    assert message in " ".join(error.value.message_dict[key])
    assert not RectificationItem.objects.exists()  # one bad change stores none


def test_pm_ix_3_country_and_region_are_validated_together(register, subject):
    rights_request = _request(subject, register, status=Status.IN_PROGRESS)
    items = rectification_propose(
        rights_request=rights_request, changes=[_change(subject, "country", "US"), _change(subject, "region", "US-CA")]
    )
    assert len(items) == 2


def test_pm_ix_3_an_address_in_use_is_refused_without_saying_whose(register, subject):
    UserFactory(email="taken@example.org")
    with pytest.raises(ValidationError) as error:
        rectification_propose(
            rights_request=_request(subject, register, status=Status.IN_PROGRESS),
            changes=[_change(subject, "email", "TAKEN@example.org")],
        )
    text = " ".join(error.value.messages)
    assert "cannot be used" in text and "already exists" not in text


def test_pm_ix_3_only_rectifiable_fields_of_the_subjects_own_records(register, subject):
    rights_request = _request(subject, register, status=Status.IN_PROGRESS)
    other = ConversationFactory(title="Not yours")
    bad = [
        _change(subject, "password", "x"),
        _change(other, "title", "Mine now"),
        {"model_label": "nope.Model", "object_pk": "1", "field": "x", "new_value": "y"},
        _change(subject, "name", "Ana Smith"),  # no change at all
    ]
    with pytest.raises(ValidationError) as error:
        rectification_propose(rights_request=rights_request, changes=bad)
    messages = error.value.message_dict
    assert "cannot be corrected" in messages[f"{USER}:{subject.pk}:password"][0]
    assert "not one of the subject's records" in messages[f"chat.Conversation:{other.pk}:title"][0]
    assert "no such record type" in messages["nope.Model:1:x"][0]
    assert "already holds" in messages[f"{USER}:{subject.pk}:name"][0]


def test_pm_ix_3_a_field_is_proposed_once_while_pending(register, subject):
    rights_request = _request(subject, register, status=Status.IN_PROGRESS)
    rectification_propose(rights_request=rights_request, changes=[_change(subject, "name", "A")])
    with pytest.raises(ValidationError, match="already proposed"):
        rectification_propose(rights_request=rights_request, changes=[_change(subject, "name", "B")])


def test_pm_ix_3_proposals_need_an_open_rectification_request_with_an_account(register, subject):
    with pytest.raises(RequestActionError, match="not a rectification"):
        rectification_propose(
            rights_request=RightsRequestFactory(subject=subject, right=Right.ACCESS), changes=[_change(subject, "name", "A")]
        )
    with pytest.raises(RequestActionError, match="closed"):
        rectification_propose(
            rights_request=_request(subject, register, status=Status.COMPLETED), changes=[_change(subject, "name", "A")]
        )


def test_pm_ix_3_the_dpo_applies_after_approval_with_audit_and_recipients_told(register, subject):
    rights_request = _request(subject, register)
    conversation = ConversationFactory(user=subject, title="Trip to Bail")
    items = rectification_propose(
        rights_request=rights_request,
        changes=[_change(subject, "name", "Ana Smith-Jones"), _change(conversation, "title", "Trip to Bali")],
    )
    dpo = staff_in_role(ROLE_DPO)
    for item in items:
        decided = rectification_decide(item=item, actor=dpo, apply=True)
        assert decided.decision == Decision.APPLIED and decided.decided_by == dpo
    subject.refresh_from_db()
    conversation.refresh_from_db()
    assert (subject.name, conversation.title) == ("Ana Smith-Jones", "Trip to Bali")
    applied = AuditEvent.objects.filter(action="rectification.applied").order_by("pk")
    assert [(a.details["model"], a.details["field"]) for a in applied] == [(USER, "name"), ("chat.Conversation", "title")]
    assert all("Smith" not in str(a.details) and "Bali" not in str(a.details) for a in applied)
    assert applied[0].subject_ref == subject.subject_ref
    notices = RecipientNotice.objects.filter(request=rights_request).order_by("recipient__code")
    assert [(n.recipient.code, n.categories) for n in notices] == [
        ("crm", ["account-information"]),
        ("hosting", ["account-information", "user-content"]),
    ]
    last = rights_request.events.filter(details__action="rectification_applied").last()
    assert "can be closed" in last.message and "Smith" not in last.message


def test_pm_ix_3_nothing_is_applied_before_approval_or_by_an_analyst(register, subject):
    rights_request = _request(subject, register, status=Status.AWAITING_APPROVAL)
    (item,) = rectification_propose(rights_request=rights_request, changes=[_change(subject, "name", "B")])
    with pytest.raises(RequestActionError, match="approved"):
        rectification_decide(item=item, actor=staff_in_role(ROLE_DPO), apply=True)
    rights_request.status = Status.FULFILLING
    rights_request.save()
    with pytest.raises(PermissionDenied, match=r"accounts\.change_user"):
        rectification_decide(item=item, actor=staff_in_role(ROLE_PRIVACY_ANALYST), apply=True)
    with pytest.raises(PermissionDenied):
        rectification_decide(item=item, actor=UserFactory(), apply=True)
    item.refresh_from_db()
    subject.refresh_from_db()
    assert item.decision == Decision.PENDING and subject.name != "B"


def test_pm_ix_3_a_rejection_needs_its_reason_and_an_analyst_may_reject_while_working(register, subject):
    rights_request = _request(subject, register, status=Status.IN_PROGRESS)
    (item,) = rectification_propose(rights_request=rights_request, changes=[_change(subject, "date_of_birth", "1991-05-17")])
    analyst = staff_in_role(ROLE_PRIVACY_ANALYST)
    with pytest.raises(ValidationError, match="why"):
        rectification_decide(item=item, actor=analyst, apply=False)
    rectification_decide(item=item, actor=analyst, apply=False, note="The passport you sent shows 1990.")
    item.refresh_from_db()
    assert (item.decision, item.note) == (Decision.REJECTED, "The passport you sent shows 1990.")
    assert AuditEvent.objects.filter(action="rights_request.rectification_rejected").count() == 1
    with pytest.raises(ValidationError, match="Already decided"):
        rectification_decide(item=item, actor=analyst, apply=False, note="again")
    assert not RecipientNotice.objects.exists()


def test_pm_ix_3_a_record_changed_since_the_proposal_is_not_overwritten(register, subject):
    rights_request = _request(subject, register)
    (item,) = rectification_propose(rights_request=rights_request, changes=[_change(subject, "name", "Proposed")])
    subject.name = "Changed by the subject meanwhile"
    subject.save()
    with pytest.raises(ValidationError, match="changed since"):
        rectification_decide(item=item, actor=staff_in_role(ROLE_DPO), apply=True)
    subject.refresh_from_db()
    assert subject.name == "Changed by the subject meanwhile"


def test_pm_ix_3_a_move_abroad_is_applied_as_a_pair_and_its_consequence_noted(register, subject):
    subject.country, subject.region = "US", "US-CA"
    subject.save()
    rights_request = _request(subject, register)
    items = rectification_propose(
        rights_request=rights_request, changes=[_change(subject, "country", "DE"), _change(subject, "region", "")]
    )
    country = next(i for i in items if i.field == "country")
    dpo = staff_in_role(ROLE_DPO)
    with pytest.raises(ValidationError, match="decide them together"):
        rectification_decide(item=country, actor=dpo, apply=True)
    rectification_decide_many(items=items, actor=dpo, apply=True)
    subject.refresh_from_db()
    assert (subject.country, subject.region) == ("DE", "")
    event = rights_request.events.get(details__action="rectification_applied")
    assert "jurisdiction is now EU (was US-CA)" in event.message and "keeps SG's clock" in event.message


def test_pm_ix_3_an_email_change_notes_what_follows(register, subject):
    rights_request = _request(subject, register)
    (item,) = rectification_propose(rights_request=rights_request, changes=[_change(subject, "email", "ana@new.example")])
    rectification_decide(item=item, actor=staff_in_role(ROLE_DPO), apply=True)
    subject.refresh_from_db()
    assert subject.email == "ana@new.example"
    event = rights_request.events.get(details__action="rectification_applied")
    assert "signs in with the corrected address" in event.message and "ana@new" not in event.message


def test_pm_ix_3_closing_waits_for_every_decision_then_completes_partially(register, subject):
    rights_request = _request(subject, register)
    items = rectification_propose(
        rights_request=rights_request, changes=[_change(subject, "name", "Ana J"), _change(subject, "date_of_birth", "")]
    )
    dpo = staff_in_role(ROLE_DPO)
    name = next(i for i in items if i.field == "name")
    birth = next(i for i in items if i.field == "date_of_birth")
    rectification_decide(item=name, actor=dpo, apply=True)
    with pytest.raises(RequestActionError, match="Decide every"):
        rectification_complete(rights_request=rights_request, actor=dpo)
    rectification_decide(item=birth, actor=dpo, apply=False, note="We need it to check your age")
    closed = rectification_complete(rights_request=rights_request, actor=dpo)
    assert closed.status == Status.PARTIALLY_COMPLETED
    assert (
        closed.outcome
        == "We corrected: Your name. We did not correct: Your date of birth (not corrected: We need it to check your age)."
    )
    assert rights_request.events.filter(kind=RequestEvent.Kind.EMAIL, details__template="completion").exists()


def test_pm_ix_3_nothing_applied_closes_as_a_rejection_with_the_reasons(register, subject):
    rights_request = _request(subject, register, status=Status.IN_PROGRESS)
    (item,) = rectification_propose(rights_request=rights_request, changes=[_change(subject, "name", "Someone Else")])
    rectification_decide(item=item, actor=staff_in_role(ROLE_PRIVACY_ANALYST), apply=False, note="Not your legal name")
    closed = rectification_complete(rights_request=rights_request, actor=staff_in_role(ROLE_DPO))
    assert closed.status == Status.REJECTED and "Not your legal name" in closed.outcome
    with pytest.raises(RequestActionError, match="closed"):
        rectification_complete(rights_request=closed, actor=staff_in_role(ROLE_DPO))


def test_pm_ix_3_the_conversation_title_is_the_owners_alone(register, subject):
    conversation = ConversationFactory(title="Mine")
    with pytest.raises(ValidationError):
        rectification_propose(rights_request=_request(subject, register), changes=[_change(conversation, "title", "Hijacked")])
    assert Conversation.objects.get(pk=conversation.pk).title == "Mine"
