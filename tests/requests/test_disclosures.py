"""The disclosure log (PM-IV-5): who asked, on what ground, which categories, when, approved by a DPO;
found by subject_ref; audited with references only."""

import datetime

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from accounts.roles import ROLE_DPO, ROLE_PRIVACY_ANALYST
from privacyops.models import AuditEvent
from requests.disclosures import disclosure_record, disclosures_for
from tests.factories.accounts import StaffFactory, UserFactory
from tests.factories.inventory import DataCategoryFactory, staff_in_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def categories():
    return [DataCategoryFactory(code="account-information"), DataCategoryFactory(code="log-data")]


def _record(**overrides):
    dpo = overrides.pop("dpo", None) or staff_in_role(ROLE_DPO)
    values = {
        "subject": UserFactory(),
        "authority": "Singapore Police Force",
        "legal_ground": "Criminal Procedure Code s 20 production order",
        "reference": "SPF/2026/0042",
        "category_codes": ["account-information", "log-data"],
        "disclosed_at": timezone.now() - datetime.timedelta(days=1),
        "approved_by": dpo,
        "actor": dpo,
    }
    return disclosure_record(**(values | overrides))


def test_pm_iv_5_a_disclosure_is_logged_with_its_categories_and_audited(categories):
    subject = UserFactory(email="private.person@example.org", name="Private Person")
    disclosure = _record(subject=subject, notes="Asked for the login history of March")
    assert disclosure.subject == subject and disclosure.subject_ref == subject.subject_ref
    assert sorted(disclosure.categories.values_list("code", flat=True)) == ["account-information", "log-data"]
    audit = AuditEvent.objects.get(action="disclosure.recorded")
    assert audit.subject_ref == subject.subject_ref and audit.target_id == str(disclosure.pk)
    assert audit.details["categories"] == ["account-information", "log-data"]
    text = str(audit.details)
    for private in ("private.person", "Private Person", "SPF/2026", "login history", "Police"):
        assert private not in text


def test_pm_iv_5_disclosures_for_lists_the_subjects_latest_first_and_survives_the_account(categories):
    subject = UserFactory()
    older = _record(subject=subject, disclosed_at=timezone.now() - datetime.timedelta(days=30))
    newer = _record(subject=subject)
    _record()  # someone else's
    assert list(disclosures_for(subject_ref=subject.subject_ref)) == [newer, older]
    ref = subject.subject_ref
    subject.delete()
    assert list(disclosures_for(subject_ref=ref)) == [newer, older]
    # and one can still be logged for the erased account by its subject_ref
    assert _record(subject=ref).subject is None


def test_pm_iv_5_only_the_dpo_role_records_and_approves(categories):
    analyst = staff_in_role(ROLE_PRIVACY_ANALYST)
    with pytest.raises(PermissionDenied):
        _record(actor=analyst)
    with pytest.raises(ValidationError) as error:
        _record(approved_by=analyst)
    assert "approved_by" in error.value.message_dict
    with pytest.raises(ValidationError):
        _record(approved_by=staff_in_role(ROLE_DPO, is_active=False))
    with pytest.raises(ValidationError):
        _record(approved_by=StaffFactory())


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"authority": "  "}, "authority"),
        ({"legal_ground": ""}, "legal_ground"),
        ({"category_codes": []}, "category_codes"),
        ({"category_codes": ["account-information", "nope"]}, "category_codes"),
        ({"disclosed_at": timezone.now() + datetime.timedelta(days=2)}, "disclosed_at"),
        ({"disclosed_at": datetime.datetime(2026, 1, 1, 12, 0)}, "disclosed_at"),
    ],
)
def test_pm_iv_5_incomplete_disclosures_are_refused(categories, overrides, field):
    with pytest.raises(ValidationError) as error:
        _record(**overrides)
    assert field in error.value.message_dict
