"""Factories for the rights-request models (POLICY-MAP section IX).

`RightsRequestFactory` builds a row directly, without the workflow: its status, clock and reference are
whatever the test gives (due in 30 days by default). Tests of the workflow itself go through
`requests.services.rights_request_submit` instead.
"""

from datetime import timedelta

import factory
from django.utils import timezone

from requests import models
from tests.factories.accounts import UserFactory
from tests.factories.inventory import JurisdictionFactory


class DeadlineRuleFactory(factory.django.DjangoModelFactory):
    """One month, no extension, no pause, unless told otherwise (GDPR's shape without its extension)."""

    class Meta:
        model = models.DeadlineRule
        django_get_or_create = ("jurisdiction", "right")

    jurisdiction = factory.SubFactory(JurisdictionFactory)
    right = ""
    period_value = 1
    period_unit = models.PeriodUnit.CALENDAR_MONTHS
    extension_value = 0
    extension_unit = ""
    extensions_allowed = 0
    pauses_for_verification = False
    citation = "Test rule"

    class Params:
        # DeadlineRuleFactory(gdpr=True): one month, extendable once by two months, pausing for verification.
        gdpr = factory.Trait(
            extension_value=2,
            extension_unit=models.PeriodUnit.CALENDAR_MONTHS,
            extensions_allowed=1,
            pauses_for_verification=True,
            citation="GDPR Art. 12(3)",
        )


class RightsRequestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.RightsRequest

    reference = factory.Sequence(lambda n: f"DSR-T-{n:06d}")
    subject = factory.SubFactory(UserFactory)
    subject_ref = factory.LazyAttribute(lambda o: o.subject.subject_ref if o.subject else None)
    contact_email = factory.LazyAttribute(lambda o: o.subject.email if o.subject else "requester@example.org")
    jurisdiction = factory.SubFactory(JurisdictionFactory)
    right = models.Right.ACCESS
    channel = models.Channel.WEB
    status = models.Status.RECEIVED
    received_at = factory.LazyFunction(timezone.now)
    due_at = factory.LazyAttribute(lambda o: o.received_at + timedelta(days=30))
    closed_at = factory.LazyAttribute(lambda o: timezone.now() if o.status in models.CLOSED_STATUSES else None)


class RequestEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.RequestEvent

    request = factory.SubFactory(RightsRequestFactory)
    kind = models.RequestEvent.Kind.NOTE
    message = "A note."
