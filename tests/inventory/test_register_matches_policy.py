"""The seeded register equals the privacy policy's own tables (sections I, II, IV, V).

The expected values below were written from the policy document itself (the seed document is the truth;
POLICY-MAP paraphrases it), not from the seed file, so a wrong seed fails here.
"""

import pytest

from inventory.models import (
    DataCategory,
    DataSubjectCategory,
    Jurisdiction,
    LawfulBasis,
    ProcessingActivity,
    Purpose,
    PurposeBasis,
    Recipient,
    RecipientCategory,
    Transfer,
)
from inventory.selectors import purpose_bases_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("seeded")]

# Section I: each category of the "Data Description" column and the "Source" column it sits in. The
# social sign-in row repeats "Account Information" under "collect from third parties": a second source.
POLICY_CATEGORIES = {
    "account-information": {"provided-by-user", "from-third-parties"},
    "user-content": {"provided-by-user"},
    "feedback": {"provided-by-user"},
    "communication-information": {"provided-by-user"},
    "log-data": {"collected-automatically"},
    "usage-data": {"collected-automatically"},
    "cookies": {"collected-automatically"},
}
# A few of the examples the policy gives for each category.
POLICY_EXAMPLES = {
    "account-information": ["name", "email"],
    "user-content": ["prompts", "files", "images", "audio"],
    "feedback": ["thumbs", "conversation"],
    "communication-information": ["name", "contact", "message"],
    "log-data": ["IP address", "browser", "device"],
    "usage-data": ["time zone", "country", "user agent"],
    "cookies": ["cookie"],
}
SYSTEM_CATEGORIES = {"rights-request-records", "consent-records", "audit-records", "retention-records"}
ALL_SEVEN = set(POLICY_CATEGORIES)

# Section II's table, row by row: categories column and lawful basis column.
POLICY_PURPOSES = {
    "provide-service": (1, ALL_SEVEN, {"contract"}),
    "marketing": (2, {"account-information", "communication-information"}, {"consent"}),
    "fraud-prevention-security": (
        3,
        {"account-information", "user-content", "log-data", "usage-data", "cookies"},
        {"legitimate-interests", "legal-obligation"},
    ),
    "support-and-improvement": (
        4,
        {"account-information", "feedback", "log-data", "usage-data", "cookies"},
        {"legitimate-interests"},
    ),
    "model-improvement": (5, {"user-content", "feedback"}, {"legitimate-interests"}),
    "legal-compliance": (6, ALL_SEVEN, {"legitimate-interests", "legal-obligation"}),
}
# Section II, "in addition ... where permitted under applicable law", (a) to (h), in order.
FURTHER_PURPOSES = [
    "support-queries",
    "identity-verification",
    "internal-administration",
    "business-asset-transactions",
    "media-responses",
    "legal-claims",
    "incident-reports",
    "reasonably-necessary",
]
# Section IV, recipients 1 to 6.
RECIPIENT_CATEGORIES = {
    "group-affiliates": "PM-IV-1",
    "service-providers": "PM-IV-2",
    "analytics-and-search": "PM-IV-3",
    "business-transferees": "PM-IV-4",
    "authorities-and-advisers": "PM-IV-5",
    "with-consent": "PM-IV-6",
}
# The 27 member states of the EU.
EU_MEMBER_STATES = {
    "AT",
    "BE",
    "BG",
    "HR",
    "CY",
    "CZ",
    "DK",
    "EE",
    "FI",
    "FR",
    "DE",
    "GR",
    "HU",
    "IE",
    "IT",
    "LV",
    "LT",
    "LU",
    "MT",
    "NL",
    "PL",
    "PT",
    "RO",
    "SK",
    "SI",
    "ES",
    "SE",
}


def _sources(code):
    return set(DataCategory.objects.get(code=code).sources.values_list("code", flat=True))


def _categories(purpose, *, system=False):
    rows = ProcessingActivity.objects.filter(purpose__code=purpose, is_system_record=system)
    return set(rows.values_list("category__code", flat=True))


def _general_bases(purpose):
    rows = PurposeBasis.objects.filter(purpose__code=purpose, jurisdiction__isnull=True)
    return set(rows.values_list("basis__code", flat=True))


# --- I: what is collected -------------------------------------------------------------------------


def test_pm_i_1_to_7_the_seven_policy_categories_with_their_sources():
    policy = DataCategory.objects.filter(is_system_record=False)
    assert set(policy.values_list("code", flat=True)) == ALL_SEVEN
    for code, sources in POLICY_CATEGORIES.items():
        assert _sources(code) == sources, code


def test_pm_i_1_to_7_each_category_refers_to_its_clause():
    refs = dict(DataCategory.objects.filter(is_system_record=False).values_list("code", "policy_ref"))
    assert refs == {
        "account-information": "PM-I-1",
        "user-content": "PM-I-2",
        "feedback": "PM-I-3",
        "communication-information": "PM-I-4",
        "log-data": "PM-I-5",
        "usage-data": "PM-I-6",
        "cookies": "PM-I-7",
    }


def test_pm_i_1_to_7_example_fields_come_from_the_policy():
    for code, words in POLICY_EXAMPLES.items():
        fields = DataCategory.objects.get(code=code).example_fields.lower()
        for word in words:
            assert word.lower() in fields, (code, word)


def test_pm_i_8_social_sign_in_is_a_second_source_of_account_information_not_a_category():
    assert "from-third-parties" in _sources("account-information")
    third_party = DataCategory.objects.filter(sources__code="from-third-parties")
    assert list(third_party.values_list("code", flat=True)) == ["account-information"]
    assert not DataCategory.objects.filter(code__icontains="social").exists()


def test_system_categories_are_extra_rows_generated_by_this_system():
    system = DataCategory.objects.filter(is_system_record=True)
    assert set(system.values_list("code", flat=True)) == SYSTEM_CATEGORIES
    for category in system:
        assert set(category.sources.values_list("code", flat=True)) == {"generated-by-system"}


def test_data_subject_categories():
    assert set(DataSubjectCategory.objects.values_list("code", flat=True)) == {
        "account-holders",
        "website-visitors",
        "correspondents",
        "staff",
    }


# --- II: purposes and lawful bases ----------------------------------------------------------------


def test_pm_ii_1_to_6_six_main_purposes_in_the_policys_order():
    main = Purpose.objects.filter(kind=Purpose.Kind.MAIN).order_by("position")
    assert [(p.code, p.position) for p in main] == [(code, pos) for code, (pos, _, _) in POLICY_PURPOSES.items()]
    assert [p.policy_ref for p in main] == [f"PM-II-{n}" for n in range(1, 7)]


@pytest.mark.parametrize("purpose", list(POLICY_PURPOSES))
def test_pm_ii_1_to_6_each_purpose_uses_exactly_the_policys_categories(purpose):
    _, categories, _ = POLICY_PURPOSES[purpose]
    assert _categories(purpose) == categories


@pytest.mark.parametrize("purpose", list(POLICY_PURPOSES))
def test_pm_ii_1_to_6_each_purpose_rests_on_exactly_the_policys_bases(purpose):
    _, _, bases = POLICY_PURPOSES[purpose]
    assert _general_bases(purpose) == bases


def test_pm_ii_2_marketing_consent_is_conditional_on_the_law():
    row = PurposeBasis.objects.get(purpose__code="marketing", basis__code="consent", jurisdiction__isnull=True)
    assert row.condition == "where required under applicable law"


def test_pm_ii_2_marketing_rests_on_consent_everywhere_except_california():
    marketing = Purpose.objects.get(code="marketing")
    for code in ["EU", "UK", "SG", "ID", "CN", "DEFAULT"]:
        bases = purpose_bases_for(purpose=marketing, jurisdiction=Jurisdiction.objects.get(code=code))
        assert [b.basis.code for b in bases] == ["consent"], code
    california = purpose_bases_for(purpose=marketing, jurisdiction=Jurisdiction.objects.get(code="US-CA"))
    assert [b.basis.code for b in california] == ["notice-opt-out"]


def test_pm_ii_5_user_content_only_in_de_identified_form():
    rows = {a.category.code: a.form for a in ProcessingActivity.objects.filter(purpose__code="model-improvement")}
    assert rows == {"user-content": "de-identified", "feedback": "identified"}
    others = ProcessingActivity.objects.exclude(purpose__code="model-improvement")
    assert not others.filter(form=ProcessingActivity.Form.DE_IDENTIFIED).exists()


def test_pm_ii_6_system_categories_are_extra_rows_marked_as_such():
    assert _categories("legal-compliance", system=True) == SYSTEM_CATEGORIES
    marked = ProcessingActivity.objects.filter(is_system_record=True)
    assert set(marked.values_list("purpose__code", flat=True)) == {"legal-compliance"}
    assert set(marked.values_list("category__code", flat=True)) == SYSTEM_CATEGORIES
    # and no policy purpose has quietly gained a system category as an ordinary cell
    unmarked = ProcessingActivity.objects.filter(is_system_record=False, category__is_system_record=True)
    assert not unmarked.exists()


def test_pm_ii_7_the_eight_further_purposes_a_to_h():
    further = Purpose.objects.filter(kind=Purpose.Kind.FURTHER).order_by("position")
    assert [p.code for p in further] == FURTHER_PURPOSES
    assert [p.position for p in further] == list(range(1, 9))
    for purpose in further:
        assert purpose.policy_ref == "PM-II-7"
        assert purpose.needs_review, purpose.code
        assert _categories(purpose.code), f"{purpose.code} uses no category"
        assert not _categories(purpose.code, system=True)


@pytest.mark.parametrize("purpose", FURTHER_PURPOSES)
def test_pm_ii_7_further_purposes_rest_on_legitimate_interests_and_legal_obligation_where_permitted(purpose):
    rows = PurposeBasis.objects.filter(purpose__code=purpose, jurisdiction__isnull=True)
    assert {r.basis.code for r in rows} == {"legitimate-interests", "legal-obligation"}
    for row in rows:
        assert row.condition == "where permitted by applicable law"
        assert row.needs_review


def test_pm_ii_8_deemed_consent_is_a_basis_for_its_two_cases():
    conduct = LawfulBasis.objects.get(code="deemed-consent-conduct")
    contract = LawfulBasis.objects.get(code="deemed-consent-contract")
    for basis in (conduct, contract):
        assert basis.policy_ref == "PM-II-8"
        assert "PDPA" in basis.legal_reference
    singapore = Jurisdiction.objects.get(code="SG")
    service = purpose_bases_for(purpose=Purpose.objects.get(code="provide-service"), jurisdiction=singapore)
    assert {b.basis.code for b in service} == {"contract", "deemed-consent-contract"}
    support = purpose_bases_for(purpose=Purpose.objects.get(code="support-queries"), jurisdiction=singapore)
    assert "deemed-consent-conduct" in {b.basis.code for b in support}


def test_lawful_bases_with_their_legal_references():
    bases = dict(LawfulBasis.objects.values_list("code", "legal_reference"))
    assert set(bases) == {
        "contract",
        "consent",
        "legitimate-interests",
        "legal-obligation",
        "vital-interests",
        "public-task",
        "deemed-consent-conduct",
        "deemed-consent-contract",
        "notice-opt-out",
    }
    assert bases["contract"].startswith("GDPR Art. 6(1)(b)")
    assert bases["consent"].startswith("GDPR Art. 6(1)(a)")
    assert bases["legitimate-interests"].startswith("GDPR Art. 6(1)(f)")
    assert all(bases.values())


def test_china_has_no_legitimate_interests_and_every_purpose_resting_on_it_has_china_rows():
    china = Jurisdiction.objects.get(code="CN")
    assert not PurposeBasis.objects.filter(jurisdiction=china, basis__code="legitimate-interests").exists()
    on_li = set(
        PurposeBasis.objects.filter(jurisdiction__isnull=True, basis__code="legitimate-interests").values_list(
            "purpose__code", flat=True
        )
    )
    assert on_li >= {"fraud-prevention-security", "support-and-improvement", "model-improvement", "legal-compliance"}
    for code in on_li:
        rows = PurposeBasis.objects.filter(purpose__code=code, jurisdiction=china)
        assert rows.exists(), code
        assert {r.basis.code for r in rows} <= {"contract", "legal-obligation"}, code
        assert all(r.needs_review for r in rows), code
        # what a Chinese subject's purposes rest on, after the override
        bases = purpose_bases_for(purpose=Purpose.objects.get(code=code), jurisdiction=china)
        assert "legitimate-interests" not in {b.basis.code for b in bases}


# --- IV: recipients -------------------------------------------------------------------------------


def test_pm_iv_1_to_6_six_recipient_categories():
    assert dict(RecipientCategory.objects.values_list("code", "policy_ref")) == RECIPIENT_CATEGORIES


def test_pm_iv_1_group_affiliates_in_singapore_indonesia_and_china():
    affiliates = Recipient.objects.filter(category__code="group-affiliates")
    assert {r.country for r in affiliates} == {"SG", "ID", "CN"}
    for recipient in affiliates:
        assert recipient.needs_review
        assert "provide-service" in set(recipient.purposes.values_list("code", flat=True))


# --- V: international transfers -------------------------------------------------------------------


def test_pm_v_2_transfers_from_singapore_to_indonesia_and_china_with_mechanism_unspecified():
    transfers = {(t.from_country, t.to_country): t for t in Transfer.objects.all()}
    assert set(transfers) == {("SG", "ID"), ("SG", "CN")}
    for (_, to), transfer in transfers.items():
        assert transfer.policy_ref == "PM-V-2"
        assert transfer.mechanism == Transfer.Mechanism.UNSPECIFIED
        assert transfer.flag == "amber"
        assert transfer.needs_review
        assert transfer.recipient.country == to
        assert transfer.recipient_category.code == "group-affiliates"
        assert set(transfer.data_categories.values_list("code", flat=True)) == ALL_SEVEN


# --- Jurisdictions --------------------------------------------------------------------------------


def test_jurisdictions_with_their_countries_and_authorities():
    jurisdictions = {j.code: j for j in Jurisdiction.objects.all()}
    assert set(jurisdictions) == {"EU", "UK", "SG", "ID", "CN", "US-CA", "DEFAULT"}
    assert set(jurisdictions["EU"].countries) == EU_MEMBER_STATES | {"IS", "LI", "NO"}
    assert jurisdictions["UK"].countries == ["GB"]
    assert jurisdictions["US-CA"].countries == ["US-CA"]
    assert jurisdictions["DEFAULT"].countries == []
    assert jurisdictions["UK"].complaint_url == "https://ico.org.uk/make-a-complaint/"
    assert jurisdictions["EU"].complaint_url == "https://www.edpb.europa.eu/about-edpb/about-edpb/members_en"
    assert jurisdictions["ID"].needs_review
    for jurisdiction in jurisdictions.values():
        assert jurisdiction.authority_name, jurisdiction.code


def test_every_seeded_entry_has_a_description():
    for model in (DataCategory, DataSubjectCategory, LawfulBasis, Jurisdiction, Purpose, RecipientCategory, Recipient, Transfer):
        assert not model.objects.filter(description="").exists(), model.__name__
