"""Section II of the policy map, clause by clause: each main purpose, the data it uses and the basis it rests
on, as the register holds it, as the subject is told it in their access package, and as the one consent
decision applies it. The expected values come from the policy's own purpose table (see
test_register_matches_policy.py for the whole table at once)."""

import pytest

from consents.decisions import is_processing_allowed
from consents.services import consent_set, restriction_place
from inventory.models import Purpose
from tests.factories.accounts import UserFactory
from tests.factories.chat import (
    AccessLogFactory,
    ConversationFactory,
    FeedbackFactory,
    MessageFactory,
    SupportMessageFactory,
    UsageEventFactory,
)
from tests.factories.inventory import staff_in_role
from tests.inventory.pm import package_of

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("seeded")]


def subject_with_every_chat_category(**account):
    """A subject with rows in each category the chat service holds (account, content, feedback, support
    messages, logs, usage)."""
    user = UserFactory(**account)
    conversation = ConversationFactory(user=user)
    FeedbackFactory(user=user, message=MessageFactory(conversation=conversation, role="assistant"))
    SupportMessageFactory(user=user)
    AccessLogFactory(user=user)
    UsageEventFactory(user=user)
    return user


CHAT_CATEGORIES = {
    "account-information",
    "user-content",
    "feedback",
    "communication-information",
    "log-data",
    "usage-data",
}


# --- PM-II-1: provide the service, on the contract ------------------------------------------------------------


def test_pm_ii_1_the_service_uses_every_category_held_on_the_subject_under_the_contract():
    package = package_of(subject_with_every_chat_category(country="DE"))
    service = package.purpose("provide-service")
    assert set(service["categories"]) >= CHAT_CATEGORIES
    assert package.bases("provide-service") == {"contract"}
    [contract] = service["lawful_bases"]
    assert contract["legal_reference"].startswith("GDPR Art. 6(1)(b)")
    assert "Provide, maintain and facilitate the service" in package.index
    assert "Performance of a contract (GDPR Art. 6(1)(b)" in package.index


def test_pm_ii_1_singapore_adds_deemed_consent_for_the_contract_to_the_contract_itself():
    package = package_of(subject_with_every_chat_category(country="SG"))
    assert package.processing["jurisdiction"] == "SG"
    assert package.bases("provide-service") == {"contract", "deemed-consent-contract"}


def test_pm_ii_1_providing_the_service_needs_no_consent_and_a_refused_marketing_consent_does_not_stop_it():
    subject = UserFactory(country="DE")
    assert is_processing_allowed(subject, "provide-service").allowed
    consent_set(subject=subject, choices={"marketing-communications": False}, method="portal")
    assert not is_processing_allowed(subject, "marketing").allowed
    assert is_processing_allowed(subject, "provide-service").allowed


# --- PM-II-3: fraud, misuse and security, on legitimate interests and legal duty ------------------------------


def test_pm_ii_3_security_uses_account_content_logs_and_usage_but_not_feedback_or_support_messages():
    package = package_of(subject_with_every_chat_category(country="DE"))
    security = package.purpose("fraud-prevention-security")
    # Of what this subject has, the policy's row names account, user content, log and usage data (and cookies).
    assert set(security["categories"]) == {"account-information", "user-content", "log-data", "usage-data"}
    assert "Prevent fraud and misuse; keep the service secure" in package.index


def test_pm_ii_3_security_rests_on_a_security_interest_and_on_legal_obligation():
    package = package_of(subject_with_every_chat_category(country="DE"))
    bases = {b["code"]: b for b in package.purpose("fraud-prevention-security")["lawful_bases"]}
    assert set(bases) == {"legitimate-interests", "legal-obligation"}
    assert "security" in bases["legitimate-interests"]["condition"]
    assert bases["legal-obligation"]["legal_reference"].startswith("GDPR Art. 6(1)(c)")


def test_pm_ii_3_in_china_security_rests_on_the_contract_and_legal_duty_not_on_legitimate_interests():
    package = package_of(subject_with_every_chat_category(country="CN"))
    assert package.processing["jurisdiction"] == "CN"
    assert package.bases("fraud-prevention-security") == {"contract", "legal-obligation"}


def test_pm_ii_3_security_processing_goes_on_without_consent_but_stops_under_an_objection():
    subject = UserFactory(country="DE")
    assert is_processing_allowed(subject, "fraud-prevention-security").allowed
    restriction_place(
        actor=staff_in_role("DPO"),
        subject=subject,
        purpose=Purpose.objects.get(code="fraud-prevention-security"),
        kind="objection",
        reason="Art. 21(1) objection the DPO upheld",
    )
    assert not is_processing_allowed(subject, "fraud-prevention-security").allowed


# --- PM-II-4: technical support and improvement, on legitimate interests -----------------------------------------


def test_pm_ii_4_support_and_improvement_use_account_feedback_logs_and_usage_but_not_content_or_messages():
    package = package_of(subject_with_every_chat_category(country="DE"))
    support = package.purpose("support-and-improvement")
    assert set(support["categories"]) == {"account-information", "feedback", "log-data", "usage-data"}
    assert "Technical support; maintain and improve the service" in package.index


def test_pm_ii_4_support_and_improvement_rest_on_legitimate_interests_alone():
    package = package_of(subject_with_every_chat_category(country="DE"))
    [basis] = package.purpose("support-and-improvement")["lawful_bases"]
    assert basis["code"] == "legitimate-interests"
    assert basis["legal_reference"].startswith("GDPR Art. 6(1)(f)")
    assert basis["condition"]  # the interest is stated, not left implicit


def test_pm_ii_4_in_china_support_rests_on_the_contract():
    package = package_of(subject_with_every_chat_category(country="CN"))
    assert package.bases("support-and-improvement") == {"contract"}


def test_pm_ii_4_a_subject_with_only_an_account_is_told_only_of_what_uses_account_data():
    package = package_of(UserFactory(country="DE"))
    support = package.purpose("support-and-improvement")
    assert "account-information" in support["categories"]
    assert "feedback" not in support["categories"] and "log-data" not in support["categories"]
    assert "model-improvement" not in {p["code"] for p in package.processing["purposes"]}  # it uses no account data
