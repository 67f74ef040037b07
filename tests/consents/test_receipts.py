"""Kantara Consent Receipts v1.1.0 (issue 4 §6, issue 11 §4, PM-0-2): one per ledger event, each valid
against the Kantara Initiative's own published v1.1 JSON Schema (vendored) and against the stricter one we
wrote from the specification, and both refuse receipts that break them."""

import copy
import json
import uuid

import pytest
from django.test import override_settings
from jsonschema import Draft4Validator, Draft202012Validator, FormatChecker

from consents.ledger import consent_record, visitor_link
from consents.models import CookieInventory
from consents.receipts import OFFICIAL_SCHEMA_PATH, RECEIPT_SCHEMA_PATH, receipt_for, receipts_for
from tests.factories.accounts import StaffFactory, UserFactory
from tests.factories.consents import CookieFactory, purpose_with_notice
from tests.factories.inventory import DataCategoryFactory, ProcessingActivityFactory, PurposeFactory, RecipientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(RECEIPT_SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


@pytest.fixture(scope="module")
def official():
    """The Kantara Initiative's published v1.1 schema (JSON Schema draft-04), as vendored."""
    schema = json.loads(OFFICIAL_SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema, format_checker=FormatChecker())


def _errors(validator, receipt) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(receipt)]


@pytest.fixture
def register(db):
    """Two register purposes with the data categories they use; marketing goes to a named recipient."""
    account = DataCategoryFactory(code="account-information", name="Account information")
    usage = DataCategoryFactory(code="usage-data", name="Usage data")
    marketing = PurposeFactory(code="marketing", name="Marketing communications", dpv="dpv:DirectMarketing")
    improvement = PurposeFactory(code="support-and-improvement", name="Support and improvement", dpv="dpv:ServiceOptimisation")
    ProcessingActivityFactory(purpose=marketing, category=account)
    ProcessingActivityFactory(purpose=improvement, category=usage)
    ProcessingActivityFactory(purpose=improvement, category=account)
    RecipientFactory(code="mailer", name="Mail Delivery Ltd", purposes=[marketing])
    return {"marketing": marketing, "improvement": improvement}


@pytest.fixture
def purposes(register):
    analytics = purpose_with_notice(
        "cookies-analytics",
        cookie_category="analytics",
        purpose=register["improvement"],
        lifetime="P13M",
        is_sale_or_sharing=True,
    )
    CookieFactory(category=analytics, party=CookieInventory.Party.THIRD, provider="Web Analytics Inc")
    return {
        "marketing": purpose_with_notice("marketing-communications", purpose=register["marketing"]),
        "analytics": analytics,
        "necessary": purpose_with_notice("cookies-necessary", cookie_category="necessary", is_necessary=True),
    }


def _every_kind_of_event(purposes):
    """One event of every action and every method, for an account and for a visitor."""
    user, visitor, staff = UserFactory(), uuid.uuid4(), StaffFactory()
    marketing, analytics = purposes["marketing"], purposes["analytics"]
    return (
        user,
        visitor,
        [
            consent_record(purpose=marketing, action="given", method="signup", subject=user, language="en"),
            consent_record(purpose=marketing, action="withdrawn", method="portal", subject=user),
            consent_record(purpose=marketing, action="given", method="api", subject=user, actor_label="chat-service"),
            consent_record(
                purpose=marketing, action="refused", method="staff", subject=user, actor=staff, instruction="Letter 12"
            ),
            consent_record(purpose=analytics, action="refused", method="gpc", subject=user, gpc=True),
            consent_record(purpose=analytics, action="given", method="import", subject=user),
            consent_record(purpose=analytics, action="expired", method="expiry", subject=user),
            consent_record(purpose=purposes["necessary"], action="given", method="banner", visitor_id=visitor),
            consent_record(purpose=analytics, action="given", method="banner", visitor_id=visitor),
        ],
    )


def test_pm_0_2_every_kind_of_event_gives_a_receipt_valid_against_the_schema(purposes, validator):
    _, _, events = _every_kind_of_event(purposes)
    for event in events:
        receipt = receipt_for(event)
        assert _errors(validator, receipt) == [], (event.action, event.method)
        json.dumps(receipt)  # JSON-ready as it is


def test_pm_0_2_every_receipt_is_valid_against_the_official_kantara_schema(purposes, official):
    user, visitor, events = _every_kind_of_event(purposes)
    receipts = [receipt_for(event) for event in events]
    receipts += receipts_for(subject_ref=user.subject_ref) + receipts_for(visitor_id=visitor)
    for receipt in receipts:
        # The extension member stays: the official schema leaves every object open.
        assert "x-privacyops" in receipt
        assert _errors(official, receipt) == [], receipt["x-privacyops"]["action"]


def test_pm_0_2_the_official_schema_refuses_a_text_address(purposes, official, validator):
    event = consent_record(purpose=purposes["marketing"], action="given", method="portal", subject=UserFactory())
    receipt = receipt_for(event)
    receipt["piiControllers"][0]["address"] = "1 Some Street, Singapore"  # what every receipt used to carry
    assert any("is not of type 'object'" in e for e in _errors(official, receipt))
    assert not validator.is_valid(receipt)


@override_settings(
    CONTROLLER_NAME="Example Controller Pte Ltd",
    CONTROLLER_ADDRESS="1 Example Road, Singapore 000001",
    CONTROLLER_ADDRESS_COUNTRY="SG",
    CONTROLLER_EMAIL="privacy@controller.example",
    CONTROLLER_PHONE="+65 6000 0000",
    DPO_NAME="Example DPO",
    DPO_EMAIL="dpo@controller.example",
)
def test_pm_0_2_the_receipt_gives_the_controllers_own_contact_and_the_dpos(purposes, official, validator):
    event = consent_record(purpose=purposes["marketing"], action="given", method="portal", subject=UserFactory())
    receipt = receipt_for(event)
    assert receipt["piiControllers"] == [
        {
            "piiController": "Example Controller Pte Ltd",
            "onBehalf": False,
            "contact": "Example DPO",
            "address": {"streetAddress": "1 Example Road, Singapore 000001", "addressCountry": "SG"},
            "email": "privacy@controller.example",
            "phone": "+65 6000 0000",
            "piiControllerUrl": receipt["piiControllers"][0]["piiControllerUrl"],
        }
    ]
    assert receipt["x-privacyops"]["dpo"]["email"] == "dpo@controller.example"
    assert _errors(official, receipt) == [] and _errors(validator, receipt) == []


def test_pm_0_2_a_receipt_carries_the_event_and_the_register(purposes, settings):
    user = UserFactory(country="SG")
    event = consent_record(purpose=purposes["marketing"], action="given", method="signup", subject=user, jurisdiction="SG")
    receipt = receipt_for(event)

    assert receipt["version"] == "KI-CR-v1.1.0"
    assert receipt["consentReceiptID"] == str(event.receipt_id)
    assert receipt["consentTimestamp"] == int(event.effective_at.timestamp())
    assert receipt["jurisdiction"] == "SG"
    assert receipt["piiPrincipalId"] == str(user.subject_ref)
    assert receipt["policyUrl"] == settings.POLICY_URL
    controller = receipt["piiControllers"][0]
    assert (controller["piiController"], controller["email"]) == (settings.CONTROLLER_NAME, settings.CONTROLLER_EMAIL)
    assert controller["address"] == {"streetAddress": settings.CONTROLLER_ADDRESS, "addressCountry": "HK"}
    assert controller["phone"] == settings.CONTROLLER_PHONE
    assert receipt["x-privacyops"]["dpo"] == {
        "name": settings.DPO_NAME,
        "email": settings.DPO_EMAIL,
        "postalAddress": settings.DPO_POSTAL_ADDRESS,
    }
    (purpose,) = receipt["services"][0]["purposes"]
    assert purpose["consentType"] == "EXPLICIT"
    assert purpose["purposeCategory"] == ["dpv:DirectMarketing"]
    assert purpose["piiCategory"] == ["Account information"]
    assert (purpose["thirdPartyDisclosure"], purpose["thirdPartyName"]) == (True, "Mail Delivery Ltd")
    assert purpose["primaryPurpose"] is False
    assert purpose["termination"] == "When you withdraw it."
    assert event.notice_sha256 in purpose["purpose"]
    assert receipt["x-privacyops"]["action"] == "given"
    assert receipt["x-privacyops"]["noticeSha256"] == event.notice_sha256
    assert receipt["x-privacyops"]["eventHash"] == event.hash


def test_pm_iv_3_analytics_receipts_name_the_third_party_and_the_lifetime(purposes):
    event = consent_record(purpose=purposes["analytics"], action="given", method="banner", visitor_id=uuid.uuid4())
    (purpose,) = receipt_for(event)["services"][0]["purposes"]
    assert (purpose["thirdPartyDisclosure"], purpose["thirdPartyName"]) == (True, "Web Analytics Inc")
    assert purpose["piiCategory"] == ["Account information", "Usage data"]
    assert "13 months (P13M)" in purpose["termination"]


def test_pm_0_2_signals_and_the_lifetime_give_implicit_receipts(purposes):
    user = UserFactory()
    for method, action in (("gpc", "refused"), ("expiry", "expired"), ("import", "given")):
        event = consent_record(purpose=purposes["analytics"], action=action, method=method, subject=user)
        assert receipt_for(event)["services"][0]["purposes"][0]["consentType"] == "IMPLICIT", method


def test_pm_0_2_a_visitor_receipt_names_the_visitor_and_an_account_lists_its_linked_visitors_receipts(purposes):
    user, visitor = UserFactory(), uuid.uuid4()
    by_visitor = consent_record(purpose=purposes["analytics"], action="given", method="banner", visitor_id=visitor)
    visitor_link(visitor_id=visitor, subject=user, method="signup")
    by_account = consent_record(purpose=purposes["marketing"], action="given", method="signup", subject=user)

    receipts = receipts_for(subject_ref=user.subject_ref)
    assert [r["consentReceiptID"] for r in receipts] == [str(by_visitor.receipt_id), str(by_account.receipt_id)]
    assert receipts[0]["piiPrincipalId"] == f"visitor:{visitor}"
    assert [r["consentReceiptID"] for r in receipts_for(visitor_id=visitor)] == [str(by_visitor.receipt_id)]
    with pytest.raises(ValueError):
        receipts_for()


def test_pm_0_2_receipts_for_many_events_read_each_purpose_once(purposes, django_assert_max_num_queries):
    user = UserFactory()
    for n in range(20):
        consent_record(purpose=purposes["marketing"], action="given" if n % 2 else "withdrawn", method="portal", subject=user)
    with django_assert_max_num_queries(8):
        assert len(receipts_for(subject_ref=user.subject_ref)) == 20


@override_settings(POLICY_URL="https://privacy.example.org/policy")
def test_pm_0_2_the_controller_url_comes_from_the_policy_url(purposes):
    event = consent_record(purpose=purposes["marketing"], action="given", method="portal", subject=UserFactory())
    assert receipt_for(event)["piiControllers"][0]["piiControllerUrl"] == "https://privacy.example.org/"


def _broken(receipt, change):
    broken = copy.deepcopy(receipt)
    change(broken)
    return broken


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.pop("piiControllers"),
        lambda r: r.update(version="KI-CR-v1.0.0"),
        lambda r: r.update(consentTimestamp="2025-04-25T10:00:00Z"),
        lambda r: r.update(consentReceiptID="receipt-1"),
        lambda r: r.update(policyUrl="the policy"),
        lambda r: r.update(sensitive=True),  # sensitive without naming the categories
        lambda r: r.update(tracking="yes"),  # a field the specification does not have
        lambda r: r["piiControllers"][0].pop("phone"),
        lambda r: r["piiControllers"][0].update(address="1 Some Street"),
        lambda r: r["services"][0]["purposes"][0].pop("thirdPartyName"),  # disclosure without naming who
        lambda r: r["services"][0]["purposes"][0].update(consentType="OPT_OUT"),
        lambda r: r["services"][0]["purposes"][0].update(piiCategory=[]),
        lambda r: r["services"][0].update(purposes=[]),
        lambda r: r["x-privacyops"].update(action="maybe"),
    ],
    ids=[
        "no-controllers",
        "wrong-version",
        "timestamp-not-epoch",
        "receipt-id-not-uuid",
        "policy-url-not-url",
        "sensitive-without-categories",
        "unknown-field",
        "controller-without-phone",
        "text-address",
        "disclosure-without-name",
        "unknown-consent-type",
        "no-pii-category",
        "no-purposes",
        "unknown-action",
    ],
)
def test_pm_0_2_the_schema_refuses_a_broken_receipt(purposes, validator, change):
    event = consent_record(purpose=purposes["marketing"], action="given", method="portal", subject=UserFactory())
    receipt = receipt_for(event)
    assert validator.is_valid(receipt)
    assert not validator.is_valid(_broken(receipt, change))


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.pop("piiControllers"),
        lambda r: r.update(consentTimestamp="2025-04-25T10:00:00Z"),
        lambda r: r["piiControllers"][0].pop("phone"),
        lambda r: r["piiControllers"][0].update(address="1 Some Street"),
        lambda r: r["services"][0]["purposes"][0].pop("thirdPartyName"),
        lambda r: r["services"][0]["purposes"][0].pop("piiCategory"),
    ],
    ids=[
        "no-controllers",
        "timestamp-not-epoch",
        "controller-without-phone",
        "text-address",
        "disclosure-without-name",
        "no-pii-category",
    ],
)
def test_pm_0_2_the_official_schema_refuses_a_broken_receipt(purposes, official, change):
    event = consent_record(purpose=purposes["marketing"], action="given", method="portal", subject=UserFactory())
    receipt = receipt_for(event)
    assert official.is_valid(receipt)
    assert not official.is_valid(_broken(receipt, change))
