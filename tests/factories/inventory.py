"""Factories for the register (inventory) models.

They build small, valid rows with unique codes; tests that need the policy's own register call
`loadpolicy` instead.
"""

import factory
from django.contrib.auth.models import Group, Permission

from inventory import models
from tests.factories.accounts import StaffFactory


class RegisterEntryFactory(factory.django.DjangoModelFactory):
    class Meta:
        abstract = True
        django_get_or_create = ("code",)
        # The post-generation hooks only set many-to-many links; no second save is needed.
        skip_postgeneration_save = True

    name = factory.LazyAttribute(lambda o: o.code.replace("-", " ").capitalize())
    description = factory.LazyAttribute(lambda o: f"Test entry {o.code}.")


class CollectionSourceFactory(RegisterEntryFactory):
    class Meta:
        model = models.CollectionSource

    code = factory.Sequence(lambda n: f"source-{n}")


class DataCategoryFactory(RegisterEntryFactory):
    class Meta:
        model = models.DataCategory

    code = factory.Sequence(lambda n: f"category-{n}")
    example_fields = "name, email"

    @factory.post_generation
    def sources(self, create, extracted, **kwargs):
        if create and extracted:
            self.sources.set(extracted)


class DataSubjectCategoryFactory(RegisterEntryFactory):
    class Meta:
        model = models.DataSubjectCategory

    code = factory.Sequence(lambda n: f"subjects-{n}")


class LawfulBasisFactory(RegisterEntryFactory):
    class Meta:
        model = models.LawfulBasis

    code = factory.Sequence(lambda n: f"basis-{n}")
    legal_reference = "GDPR Art. 6(1)(b)"


class JurisdictionFactory(RegisterEntryFactory):
    class Meta:
        model = models.Jurisdiction

    # Codes must look like a country or region (EU, US-CA): two letters from the sequence.
    code = factory.Sequence(lambda n: "X" + "ABCDEFGHIJKLMNOPQRSTUVWYZ"[n % 25] + (f"-{n // 25}" if n >= 25 else ""))
    countries = factory.LazyFunction(list)
    authority_name = "Test authority"


class PurposeFactory(RegisterEntryFactory):
    class Meta:
        model = models.Purpose

    code = factory.Sequence(lambda n: f"purpose-{n}")
    kind = models.Purpose.Kind.MAIN
    position = factory.Sequence(lambda n: n)

    @factory.post_generation
    def subject_categories(self, create, extracted, **kwargs):
        if create and extracted:
            self.subject_categories.set(extracted)


class PurposeBasisFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.PurposeBasis

    purpose = factory.SubFactory(PurposeFactory)
    basis = factory.SubFactory(LawfulBasisFactory)
    jurisdiction = None


class ProcessingActivityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.ProcessingActivity

    purpose = factory.SubFactory(PurposeFactory)
    category = factory.SubFactory(DataCategoryFactory)
    form = models.ProcessingActivity.Form.IDENTIFIED


class RecipientCategoryFactory(RegisterEntryFactory):
    class Meta:
        model = models.RecipientCategory

    code = factory.Sequence(lambda n: f"recipients-{n}")


class RecipientFactory(RegisterEntryFactory):
    class Meta:
        model = models.Recipient

    code = factory.Sequence(lambda n: f"recipient-{n}")
    category = factory.SubFactory(RecipientCategoryFactory)
    country = "SG"
    role = models.Recipient.Role.PROCESSOR

    @factory.post_generation
    def purposes(self, create, extracted, **kwargs):
        if create and extracted:
            self.purposes.set(extracted)

    @factory.post_generation
    def data_categories(self, create, extracted, **kwargs):
        if create and extracted:
            self.data_categories.set(extracted)


class TransferFactory(RegisterEntryFactory):
    class Meta:
        model = models.Transfer

    code = factory.Sequence(lambda n: f"transfer-{n}")
    from_country = "SG"
    to_country = "ID"
    mechanism = models.Transfer.Mechanism.SCC

    @factory.post_generation
    def data_categories(self, create, extracted, **kwargs):
        if create and extracted:
            self.data_categories.set(extracted)


class DataStoreFactory(RegisterEntryFactory):
    class Meta:
        model = models.DataStore

    code = factory.Sequence(lambda n: f"store-{n}")
    owner = "Platform team"
    location_country = "SG"
    kind = models.DataStore.Kind.SQL


def small_register() -> dict:
    """A register with one row of every model and the flags the workbench shows.

    Mirrors the shape of the policy's register on a small scale: two purposes (one resting on a basis
    everywhere plus a per-jurisdiction override, one with no basis at all), a category no purpose uses,
    a transfer with an unspecified mechanism (amber) and one with none (red).
    """
    source = CollectionSourceFactory(code="provided-by-user")
    account = DataCategoryFactory(code="account-information", sources=[source])
    content = DataCategoryFactory(code="user-content", sources=[source])
    unused = DataCategoryFactory(code="cookies", sources=[source])
    holders = DataSubjectCategoryFactory(code="account-holders")
    contract = LawfulBasisFactory(code="contract")
    legal = LawfulBasisFactory(code="legal-obligation", legal_reference="GDPR Art. 6(1)(c)")
    china = JurisdictionFactory(code="CN", countries=["CN"], authority_name="CAC")
    service = PurposeFactory(code="provide-service", position=1, subject_categories=[holders])
    improve = PurposeFactory(code="model-improvement", position=5, needs_review=True, review_note="Check the form.")
    PurposeBasisFactory(purpose=service, basis=contract)
    PurposeBasisFactory(purpose=service, basis=legal, jurisdiction=china, condition="where Chinese law requires it")
    ProcessingActivityFactory(purpose=service, category=account)
    ProcessingActivityFactory(purpose=service, category=content)
    ProcessingActivityFactory(purpose=improve, category=content, form=models.ProcessingActivity.Form.DE_IDENTIFIED)
    group = RecipientCategoryFactory(code="affiliates")
    recipient = RecipientFactory(code="group-cloud", category=group, purposes=[service], data_categories=[account, content])
    amber = TransferFactory(
        code="sg-to-cn",
        to_country="CN",
        recipient_category=group,
        mechanism=models.Transfer.Mechanism.UNSPECIFIED,
        needs_review=True,
        data_categories=[account, content],
    )
    red = TransferFactory(
        code="sg-to-us", to_country="US", recipient=recipient, mechanism=models.Transfer.Mechanism.NONE, data_categories=[account]
    )
    store = DataStoreFactory(code="chat-db")
    return {
        "source": source,
        "account": account,
        "content": content,
        "unused": unused,
        "holders": holders,
        "contract": contract,
        "legal": legal,
        "china": china,
        "service": service,
        "improve": improve,
        "group": group,
        "recipient": recipient,
        "amber": amber,
        "red": red,
        "store": store,
    }


def staff_in_role(role: str, **kwargs):
    """A staff user in one of the roles synced by accounts.roles after migrate ("DPO", "Auditor", ...)."""
    user = StaffFactory(**kwargs)
    user.groups.add(Group.objects.get(name=role))
    return user


def staff_with_permissions(*labels: str, **kwargs):
    """A staff user holding exactly these permissions ("inventory.view_transfer", ...), and no role."""
    user = StaffFactory(**kwargs)
    for label in labels:
        app_label, codename = label.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user
