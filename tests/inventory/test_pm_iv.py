"""Section IV of the policy map: who receives personal data. The register lists recipients by category with
the purposes and categories each receives (the record of processing, Art. 30(1)(d)); the subject is told
who receives their data (the access package); a recipient is told of a correction or erasure of what it
received (Art. 19); and sharing that rests on consent happens only while the subject consents.

The policy names recipients by category only, so the seed names the group affiliates (the one category
whose countries it gives, PM-V-2) and no one else: the other categories get named recipients when the DPO
adds them in the workbench, which the tests below do through the admin's own add page. Until then the
record lists those categories on their own: a purpose's recipient categories come from its named
recipients only."""

import pytest
from django.urls import reverse
from django.utils import timezone

from consents.decisions import is_processing_allowed
from consents.services import consent_set
from inventory.models import DataCategory, LawfulBasis, Purpose, Recipient, RecipientCategory
from inventory.ropa import record_of_processing
from privacyops.models import AuditEvent
from requests.models import RecipientNotice, Right, Status
from requests.recipients import recipient_notices_create
from tests.factories.accounts import UserFactory
from tests.factories.chat import AccessLogFactory, ConversationFactory, MessageFactory
from tests.factories.consents import purpose_with_notice
from tests.factories.inventory import ProcessingActivityFactory, PurposeBasisFactory, PurposeFactory
from tests.factories.requests import RightsRequestFactory
from tests.inventory.pm import package_of

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("seeded")]

AFFILIATES = {"alibaba-group-affiliates-sg": "SG", "alibaba-group-affiliates-id": "ID", "alibaba-group-affiliates-cn": "CN"}


def _subject(country="DE"):
    user = UserFactory(country=country)
    MessageFactory(conversation=ConversationFactory(user=user))
    AccessLogFactory(user=user)
    return user


def _recipient_category(code: str) -> dict:
    return next(rc for rc in record_of_processing()["recipient_categories"] if rc["code"] == code)


def _record_purpose(code: str) -> dict:
    return next(p for p in record_of_processing()["purposes"] if p["code"] == code)


def _add_in_the_workbench(client, *, code, category, purposes, data_categories, role="processor", country=""):
    """The DPO names a recipient on the admin's add page (the path every staff edit of the register takes)."""
    response = client.post(
        reverse("admin:inventory_recipient_add"),
        {
            "code": code,
            "name": code.replace("-", " ").capitalize(),
            "description": "Named by the DPO.",
            "category": RecipientCategory.objects.get(code=category).pk,
            "country": country,
            "role": role,
            "purposes": [Purpose.objects.get(code=p).pk for p in purposes],
            "data_categories": [DataCategory.objects.get(code=c).pk for c in data_categories],
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    return Recipient.objects.get(code=code)


def _corrected(subject, categories) -> dict[str, list[str]]:
    """Art. 19: who a correction of `categories` is passed on to, and which of them each is told about."""
    rights_request = RightsRequestFactory(
        subject=subject, right=Right.RECTIFICATION, status=Status.FULFILLING, verified_at=timezone.now()
    )
    recipient_notices_create(rights_request=rights_request, category_codes=categories)
    return {n.recipient.code: n.categories for n in RecipientNotice.objects.filter(request=rights_request)}


# --- PM-IV-1: the group's affiliates ------------------------------------------------------------------------------


def test_pm_iv_1_the_subject_is_told_that_the_group_affiliates_in_three_countries_receive_their_data():
    package = package_of(_subject())
    told = {r["code"]: r for r in package.processing["recipients"]}
    assert {code: told[code]["country"] for code in AFFILIATES} == AFFILIATES
    assert all(told[code]["category"] == "group-affiliates" for code in AFFILIATES)
    assert set(AFFILIATES) <= {r["code"] for r in package.purpose("provide-service")["recipients"]}
    for name in (
        "Alibaba Group affiliates in Singapore",
        "Alibaba Group affiliates in Indonesia",
        "Alibaba Group affiliates in China",
    ):
        assert name in package.index


def test_pm_iv_1_every_affiliate_is_told_of_a_correction_of_what_it_received():
    told = _corrected(_subject(), ["account-information", "log-data"])
    assert told == {code: ["account-information", "log-data"] for code in AFFILIATES}


def test_pm_iv_1_affiliates_process_on_our_behalf_for_the_service():
    category = _recipient_category("group-affiliates")
    assert category["policy_ref"] == "PM-IV-1" and category["dpv"] == "dpv:DataProcessor"
    assert set(category["recipients"]) == set(AFFILIATES)
    service = _record_purpose("provide-service")
    assert {r["code"]: r["role"] for r in service["recipients"]} == dict.fromkeys(AFFILIATES, "processor")


# --- PM-IV-2: service providers and partners (processors) --------------------------------------------------------


def test_pm_iv_2_the_record_lists_service_providers_as_a_category_of_processors():
    category = _recipient_category("service-providers")
    assert category["policy_ref"] == "PM-IV-2" and category["dpv"] == "dpv:DataProcessor"
    assert category["description"]


def test_pm_iv_2_a_processor_the_dpo_names_is_in_the_record_in_the_subjects_package_and_audited(client, dpo):
    hosting = _add_in_the_workbench(
        client,
        code="cloud-hosting",
        category="service-providers",
        purposes=["provide-service", "fraud-prevention-security"],
        data_categories=["user-content", "log-data"],
        country="SG",
    )
    for purpose in ("provide-service", "fraud-prevention-security"):
        listed = {r["code"]: r for r in _record_purpose(purpose)["recipients"]}
        assert listed["cloud-hosting"]["category"] == "service-providers" and listed["cloud-hosting"]["role"] == "processor"
    assert "cloud-hosting" in _recipient_category("service-providers")["recipients"]
    assert "cloud-hosting" not in {r["code"] for r in _record_purpose("marketing")["recipients"]}

    package = package_of(_subject())
    assert "cloud-hosting" in {r["code"] for r in package.purpose("provide-service")["recipients"]}
    assert hosting.name in package.index
    (event,) = AuditEvent.objects.filter(action="register.recipient.created")
    assert event.details["code"] == "cloud-hosting" and event.actor_id == dpo.pk


def test_pm_iv_2_a_processor_is_told_of_a_correction_only_of_the_categories_it_receives(client, dpo):
    _add_in_the_workbench(
        client,
        code="cloud-hosting",
        category="service-providers",
        purposes=["provide-service"],
        data_categories=["user-content", "log-data"],
    )
    assert _corrected(_subject(), ["log-data", "account-information"])["cloud-hosting"] == ["log-data"]
    assert "cloud-hosting" not in _corrected(_subject(), ["communication-information"])


# --- PM-IV-4: business partners, investors, assignees and transferees --------------------------------------------


def test_pm_iv_4_transferees_are_a_third_party_category_and_the_asset_transaction_purpose_covers_what_they_get():
    category = _recipient_category("business-transferees")
    assert category["policy_ref"] == "PM-IV-4" and category["dpv"] == "dpv:ThirdParty"
    # PM-II-7 (d): the purpose the policy gives for disclosing to them, over every category it names.
    transactions = _record_purpose("business-asset-transactions")
    assert {c["code"] for c in transactions["categories"]} >= {"account-information", "user-content", "log-data"}
    assert {b["code"] for b in transactions["bases"] if b["jurisdiction"] is None} == {"legitimate-interests", "legal-obligation"}


def test_pm_iv_4_a_prospective_buyer_the_dpo_names_receives_only_for_the_asset_transaction(client, dpo):
    _add_in_the_workbench(
        client,
        code="prospective-acquirer",
        category="business-transferees",
        purposes=["business-asset-transactions"],
        data_categories=["account-information", "user-content"],
        role="controller",
    )
    listed = {r["code"]: r for r in _record_purpose("business-asset-transactions")["recipients"]}
    assert listed["prospective-acquirer"]["role"] == "controller"
    assert "business-transferees" in _record_purpose("business-asset-transactions")["recipient_categories"]
    assert "prospective-acquirer" not in {r["code"] for r in _record_purpose("provide-service")["recipients"]}

    package = package_of(_subject())
    assert "prospective-acquirer" in {r["code"] for r in package.purpose("business-asset-transactions")["recipients"]}
    assert "prospective-acquirer" not in {r["code"] for r in package.purpose("provide-service")["recipients"]}
    assert _corrected(UserFactory(country="DE"), ["user-content"])["prospective-acquirer"] == ["user-content"]


# --- PM-IV-6: anyone else, with the subject's consent ------------------------------------------------------------


@pytest.fixture
def sharing(client, dpo):
    """Sharing with a named partner, recorded as the policy allows it: a purpose that rests on consent alone,
    a consent purpose that asks for it, and the partner named in the workbench under "others, with consent"."""
    purpose = PurposeFactory(code="share-with-partner", name="Share with a partner you choose", kind=Purpose.Kind.MAIN)
    PurposeBasisFactory(purpose=purpose, basis=LawfulBasis.objects.get(code="consent"))
    ProcessingActivityFactory(purpose=purpose, category=DataCategory.objects.get(code="account-information"))
    purpose_with_notice("partner-sharing", purpose=purpose, text="Share my name and e-mail address with the partner.")
    _add_in_the_workbench(
        client,
        code="travel-partner",
        category="with-consent",
        purposes=["share-with-partner"],
        data_categories=["account-information"],
        role="controller",
    )
    return purpose


def test_pm_iv_6_sharing_with_others_is_refused_until_the_subject_consents_and_again_once_they_withdraw(sharing):
    subject = UserFactory(country="DE")
    assert not is_processing_allowed(subject, "share-with-partner").allowed
    consent_set(subject=subject, choices={"partner-sharing": True}, method="portal")
    assert is_processing_allowed(subject, "share-with-partner").allowed
    consent_set(subject=subject, choices={"partner-sharing": False}, method="portal")
    assert not is_processing_allowed(subject, "share-with-partner").allowed


@pytest.mark.parametrize("country", ["DE", "SG", "US"])
def test_pm_iv_6_no_jurisdiction_lets_consent_based_sharing_go_ahead_without_a_yes(sharing, country):
    assert not is_processing_allowed(UserFactory(country=country), "share-with-partner").allowed


def test_pm_iv_6_the_subject_is_told_the_partner_receives_their_data_on_their_consent(sharing):
    package = package_of(UserFactory(country="DE"))
    shared = package.purpose("share-with-partner")
    assert {b["code"] for b in shared["lawful_bases"]} == {"consent"}
    assert [r["code"] for r in shared["recipients"]] == ["travel-partner"]
    assert _recipient_category("with-consent")["policy_ref"] == "PM-IV-6"
