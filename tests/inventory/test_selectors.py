"""A subject's jurisdiction, and the lawful bases a purpose rests on there (per-jurisdiction override)."""

import pytest

from inventory.models import Jurisdiction, Purpose
from inventory.selectors import jurisdiction_for, jurisdiction_for_subject, purpose_bases_for
from tests.factories.accounts import UserFactory
from tests.factories.inventory import JurisdictionFactory, LawfulBasisFactory, PurposeBasisFactory, PurposeFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("country", "region", "expected"),
    [
        ("FR", "", "EU"),
        ("DE", "DE-BY", "EU"),
        ("NO", "", "EU"),
        ("IS", "", "EU"),
        ("GB", "", "UK"),
        ("US", "US-CA", "US-CA"),
        ("US", "US-NY", "DEFAULT"),
        ("US", "", "DEFAULT"),
        ("SG", "", "SG"),
        ("ID", "", "ID"),
        ("CN", "", "CN"),
        ("ZZ", "", "DEFAULT"),
        ("", "", "DEFAULT"),
        ("fr", "", "EU"),
        ("us", "us-ca", "US-CA"),
    ],
)
def test_jurisdiction_for_country_and_region(seeded, country, region, expected):
    assert jurisdiction_for(country=country, region=region).code == expected


def test_jurisdiction_for_subject_follows_the_accounts_country_and_region(seeded):
    assert jurisdiction_for_subject(subject=UserFactory(country="US", region="US-CA")).code == "US-CA"
    assert jurisdiction_for_subject(subject=UserFactory(country="IT", region="")).code == "EU"
    assert jurisdiction_for_subject(subject=UserFactory(country="", region="")).code == "DEFAULT"


def test_a_region_entry_wins_over_a_country_entry():
    JurisdictionFactory(code="XA", countries=["US"])
    JurisdictionFactory(code="XB", countries=["US-CA"])
    JurisdictionFactory(code=Jurisdiction.DEFAULT)
    assert jurisdiction_for(country="US", region="US-CA").code == "XB"
    assert jurisdiction_for(country="US", region="US-TX").code == "XA"


def test_without_a_default_jurisdiction_the_lookup_says_to_load_the_policy():
    with pytest.raises(Jurisdiction.DoesNotExist, match="loadpolicy"):
        jurisdiction_for(country="ZZ")


def test_china_rows_replace_the_general_bases_for_chinese_subjects(seeded):
    fraud = Purpose.objects.get(code="fraud-prevention-security")
    china = Jurisdiction.objects.get(code="CN")

    assert {b.basis.code for b in purpose_bases_for(purpose=fraud, jurisdiction=None)} == {
        "legitimate-interests",
        "legal-obligation",
    }
    china_rows = purpose_bases_for(purpose=fraud, jurisdiction=china)
    assert {b.basis.code for b in china_rows} == {"contract", "legal-obligation"}
    assert all(b.jurisdiction == china for b in china_rows)


def test_a_jurisdiction_without_rows_gets_the_general_bases(seeded):
    fraud = Purpose.objects.get(code="fraud-prevention-security")
    eu = Jurisdiction.objects.get(code="EU")
    rows = purpose_bases_for(purpose=fraud, jurisdiction=eu)
    assert {b.basis.code for b in rows} == {"legitimate-interests", "legal-obligation"}
    assert all(b.jurisdiction is None for b in rows)


def test_override_rows_are_the_complete_list_not_additions():
    purpose = PurposeFactory()
    general, other = LawfulBasisFactory(), LawfulBasisFactory()
    somewhere = JurisdictionFactory()
    PurposeBasisFactory(purpose=purpose, basis=general)
    PurposeBasisFactory(purpose=purpose, basis=other, jurisdiction=somewhere)

    assert [b.basis for b in purpose_bases_for(purpose=purpose, jurisdiction=somewhere)] == [other]
    assert [b.basis for b in purpose_bases_for(purpose=purpose, jurisdiction=JurisdictionFactory())] == [general]
