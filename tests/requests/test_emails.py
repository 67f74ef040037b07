"""E-mails to requesters (issue 5): sent only after the action commits, recorded on the timeline, the DPO's
contact in every one (PM-XI-1), the supervisory authority in a rejection (PM-IX-7)."""

import datetime
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.db import transaction

from requests import services
from requests.emails import TEMPLATES, request_email_render, request_email_send
from requests.models import RequestEvent, Right, Status
from tests.factories.accounts import UserFactory
from tests.factories.inventory import JurisdictionFactory
from tests.factories.requests import DeadlineRuleFactory, RightsRequestFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def eu():
    jurisdiction = JurisdictionFactory(
        code="EU",
        countries=["DE", "FR"],
        authority_name="The lead supervisory authority",
        complaint_url="https://edpb.example/complain",
    )
    DeadlineRuleFactory(jurisdiction=jurisdiction, gdpr=True)
    return jurisdiction


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """`with committed():` runs the block's after-commit callbacks (the e-mails) when it ends, as a commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def _request(jurisdiction, **kwargs):
    values = {"jurisdiction": jurisdiction, "status": Status.IN_PROGRESS, "verified_at": "2026-01-01T00:00Z"} | kwargs
    return RightsRequestFactory(**values)


def _dpo_contact_in(text: str) -> bool:
    return settings.DPO_EMAIL in text and settings.DPO_NAME in text and settings.DPO_POSTAL_ADDRESS in text


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_pm_xi_1_every_request_email_carries_the_dpo_contact(eu, template):
    rights_request = _request(eu)
    subject, body = request_email_render(
        rights_request=rights_request,
        template=template,
        reason="r",
        reasons="r",
        outcome="o",
        previous_due_at=rights_request.due_at,
        original_reference="DSR-2026-000001",
        original_due_at=rights_request.due_at,
    )
    assert subject and "\n" not in subject and rights_request.reference in subject + body
    assert _dpo_contact_in(body)


def test_pm_xi_1_acknowledgement_on_submission_with_reference_and_due_date(eu, mailoutbox, committed):
    subject = UserFactory(country="DE")
    with committed():
        rights_request = services.rights_request_submit(right=Right.ACCESS, contact_email="reply@example.org", subject=subject)
    [email] = mailoutbox
    assert email.to == ["reply@example.org"]
    assert rights_request.reference in email.subject
    assert f"{rights_request.due_at.day} {rights_request.due_at:%B %Y}" in email.body
    assert _dpo_contact_in(email.body)
    event = rights_request.events.get(kind=RequestEvent.Kind.EMAIL)
    assert event.details == {"template": "acknowledgement"} and "reply@example.org" not in event.message


def test_pm_ix_7_rejection_names_the_supervisory_authority_and_how_to_complain(eu, mailoutbox, committed):
    rights_request = _request(eu)
    with committed():
        services.rights_request_reject(rights_request=rights_request, actor=None, reasons="We hold no data & never did.")
    [email] = mailoutbox
    assert "We hold no data & never did." in email.body  # plain text: nothing escaped
    assert "The lead supervisory authority" in email.body and "https://edpb.example/complain" in email.body
    assert _dpo_contact_in(email.body)
    assert rights_request.outcome == "We hold no data & never did."


def test_pm_ix_9_extension_notice_gives_the_reason_and_the_new_date(eu, mailoutbox, committed):
    rights_request = _request(eu)
    with committed():
        services.rights_request_extend(rights_request=rights_request, actor=None, reason="Complex: several systems.")
    [email] = mailoutbox
    new_due = rights_request.extended_due_at
    assert "Complex: several systems." in email.body and f"{new_due.day} {new_due:%B %Y}" in email.body
    assert rights_request.events.filter(kind=RequestEvent.Kind.EMAIL, details__template="extension").exists()


@pytest.mark.parametrize("partial", [False, True])
def test_completion_email_with_the_outcome(eu, mailoutbox, committed, partial):
    rights_request = _request(eu, status=Status.FULFILLING)
    with committed():
        services.rights_request_close(rights_request=rights_request, actor=None, outcome="Your copy is ready.", partial=partial)
    [email] = mailoutbox
    assert "Your copy is ready." in email.body and _dpo_contact_in(email.body)
    assert rights_request.status == (Status.PARTIALLY_COMPLETED if partial else Status.COMPLETED)
    assert ("The lead supervisory authority" in email.body) == partial


def test_nothing_is_sent_when_the_action_rolls_back(eu, mailoutbox, committed):
    rights_request = _request(eu)
    with committed(), pytest.raises(RuntimeError), transaction.atomic():
        request_email_send(rights_request=rights_request, template="rejection", reasons="x")
        raise RuntimeError("the action failed after the e-mail was queued")
    assert mailoutbox == []
    assert not rights_request.events.filter(kind=RequestEvent.Kind.EMAIL).exists()


def test_an_unknown_template_is_refused(eu):
    with pytest.raises(ValueError, match="Unknown request e-mail template"):
        request_email_send(rights_request=_request(eu), template="marketing")


def test_pm_ix_9_dates_are_printed_where_the_deadline_is_counted(settings, eu):
    """The due day ends at midnight in DEADLINE_TIME_ZONE; printed in UTC it could read as the next day."""
    settings.DEADLINE_TIME_ZONE = "America/Los_Angeles"
    rights_request = _request(eu)
    rights_request.due_at = datetime.datetime(2026, 5, 14, 23, 59, 59, tzinfo=ZoneInfo("America/Los_Angeles"))
    _, body = request_email_render(rights_request=rights_request, template="acknowledgement")
    assert "14 May 2026" in body and "15 May 2026" not in body


def test_pm_ix_9_an_hour_period_prints_the_time_of_day(eu):
    hours = JurisdictionFactory()
    DeadlineRuleFactory(jurisdiction=hours, period_value=72, period_unit="hours")
    rights_request = _request(hours)
    _, body = request_email_render(rights_request=rights_request, template="acknowledgement")
    local = rights_request.due_at.astimezone(ZoneInfo(settings.DEADLINE_TIME_ZONE))
    assert f"({local:%H:%M}, {settings.DEADLINE_TIME_ZONE} time)" in body
