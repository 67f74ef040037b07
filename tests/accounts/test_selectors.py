"""accounts.selectors: the one way to find an account by its address, and the staff holding a permission."""

import pytest
from django.contrib.auth.models import Permission

from accounts.selectors import account_by_email, staff_with_permission
from tests.factories.accounts import StaffFactory, UserFactory
from tests.factories.inventory import staff_in_role, staff_with_permissions

pytestmark = pytest.mark.django_db


def test_an_account_is_found_by_its_whole_address_whatever_the_case():
    ada = UserFactory(email="ada.lovelace@example.org")
    assert account_by_email("  Ada.Lovelace@EXAMPLE.org ") == ada
    assert account_by_email("ada.lovelace@example.or") is None  # never by part of it
    assert account_by_email("lovelace@example.org") is None
    assert account_by_email("") is None


def test_a_closed_account_is_found_only_when_asked_for():
    closed = UserFactory(email="gone@example.org", is_active=False)
    assert account_by_email("gone@example.org") is None
    assert account_by_email("gone@example.org", active_only=False) == closed


def test_staff_with_a_permission_through_a_role_directly_or_as_superuser():
    dpo = staff_in_role("DPO")
    direct = staff_with_permissions("requests.add_disclosure")
    superuser = StaffFactory(is_superuser=True)
    staff_in_role("Support agent")  # no such permission
    StaffFactory(is_superuser=True, is_active=False)  # closed
    UserFactory(is_superuser=True)  # not staff
    holders = list(staff_with_permission("requests.add_disclosure"))
    assert set(holders) == {dpo, direct, superuser}
    assert holders == sorted(holders, key=lambda user: user.email)


def test_staff_with_a_permission_lists_each_holder_once():
    user = staff_in_role("DPO")
    user.user_permissions.add(Permission.objects.get(codename="change_rightsrequest"))
    assert list(staff_with_permission("requests.change_rightsrequest")).count(user) == 1
