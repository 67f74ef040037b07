"""Factories for the consents app (the `seeded` fixture loads the real purposes, notices and cookies)."""

import datetime

import factory

from consents.models import ConsentNotice, ConsentPurpose, CookieInventory, ProcessingRestriction
from policies.models import PolicyVersion
from tests.factories.inventory import PurposeFactory


class ConsentPurposeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ConsentPurpose
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"consent-purpose-{n}")
    name = factory.LazyAttribute(lambda o: o.code.replace("-", " ").capitalize())
    description = "What we do with your data if you agree."
    purpose = factory.SubFactory(PurposeFactory)
    consequences = "Nothing else stops working."


class ConsentNoticeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ConsentNotice

    purpose = factory.SubFactory(ConsentPurposeFactory)
    version = factory.Sequence(lambda n: f"{n + 1}")
    language = "en"
    text = factory.LazyAttribute(lambda o: f"May we use your data for {o.purpose.name.lower()}? (v{o.version})")


class CookieFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CookieInventory

    name = factory.Sequence(lambda n: f"cookie_{n}")
    category = factory.SubFactory(ConsentPurposeFactory, cookie_category="analytics")
    duration = "1 year"
    description = "Counts visits."


class PolicyVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PolicyVersion

    label = factory.Sequence(lambda n: f"2025-04-{n % 28 + 1:02d}-{n}")
    last_updated = factory.Faker("date_object")
    effective_at = factory.Faker("past_datetime", tzinfo=datetime.UTC)
    summary = "What changed."
    text = "# Privacy policy"


def purpose_with_notice(code: str, *, text: str | None = None, **kwargs) -> ConsentPurpose:
    """A consent purpose with its English notice v1 (what banner, portal and sign-up events point at)."""
    purpose = ConsentPurposeFactory(code=code, **kwargs)
    ConsentNoticeFactory(purpose=purpose, version="1", text=text or f"May we use your data for {purpose.name.lower()}?")
    return purpose


class ProcessingRestrictionFactory(factory.django.DjangoModelFactory):
    """A restriction or objection written directly, with any `starts_at`, `ends_at` or `lifted_at` (tests of the
    decision; the service is consents.services.restriction_place). Bumps the subject's chain version as the
    service does, so no cached decision survives it."""

    class Meta:
        model = ProcessingRestriction
        skip_postgeneration_save = True

    subject = factory.SubFactory("tests.factories.accounts.UserFactory", password=None)
    purpose = None
    kind = ProcessingRestriction.Kind.RESTRICTION
    reason = "The subject asked us to."

    @factory.post_generation
    def _invalidate(obj, create, extracted, **kwargs):
        if create:
            from consents.ledger import chain_version_bump

            chain_version_bump(subject_ref=obj.subject.subject_ref)
