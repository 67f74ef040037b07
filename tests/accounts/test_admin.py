"""The accounts workbench: email-login users, their social links, and audited staff access (PM-VII-2)."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from accounts.models import SocialIdentity, User
from privacyops.models import AuditEvent
from tests.factories.accounts import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "a long and unusual passphrase 7"


@pytest.fixture
def admin_user(client):
    user = StaffFactory(is_superuser=True)
    client.force_login(user)
    return user


def _change_data(user: User, **overrides) -> dict:
    data = {
        "email": user.email,
        "name": user.name,
        "country": user.country,
        "region": user.region,
        "date_of_birth": "",
        "closed_at_0": "",
        "closed_at_1": "",
        "is_active": "on" if user.is_active else "",
        "is_staff": "on" if user.is_staff else "",
        "is_superuser": "on" if user.is_superuser else "",
        "groups": [g.pk for g in user.groups.all()],
        "user_permissions": [p.pk for p in user.user_permissions.all()],
        "social_identities-TOTAL_FORMS": "0",
        "social_identities-INITIAL_FORMS": "0",
        "social_identities-MIN_NUM_FORMS": "0",
        "social_identities-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value != ""}


def test_add_page_asks_for_email_and_the_password_twice(client, admin_user):
    response = client.get(reverse("admin:accounts_user_add"))
    assert response.status_code == 200
    assert list(response.context["adminform"].form.fields) == ["email", "password1", "password2"]


def test_a_user_created_in_the_admin_signs_in_with_their_email(client, admin_user):
    response = client.post(
        reverse("admin:accounts_user_add"),
        {"email": "New.Person@Example.org", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    user = User.objects.get(email="new.person@example.org")
    assert user.subject_ref and not user.is_staff
    client.logout()
    assert client.login(email="new.person@example.org", password=PASSWORD)


def test_add_form_refuses_mismatched_passwords_and_a_taken_email(client, admin_user):
    UserFactory(email="taken@example.org")
    response = client.post(
        reverse("admin:accounts_user_add"), {"email": "TAKEN@example.org", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert "email" in response.context["adminform"].form.errors
    response = client.post(
        reverse("admin:accounts_user_add"), {"email": "x@example.org", "password1": PASSWORD, "password2": "other"}
    )
    assert "password2" in response.context["adminform"].form.errors
    assert not User.objects.filter(email="x@example.org").exists()


def test_change_page_shows_the_subject_ref_read_only_and_the_social_links(client, admin_user):
    subject = UserFactory()
    SocialIdentity.objects.create(user=subject, provider="github", provider_uid="12345")
    response = client.get(reverse("admin:accounts_user_change", args=[subject.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert str(subject.subject_ref) in body
    assert "subject_ref" not in response.context["adminform"].form.fields
    assert "12345" in body


def test_staff_opening_a_subjects_account_is_audited_by_subject_ref(client, admin_user):
    subject = UserFactory()
    client.get(reverse("admin:accounts_user_change", args=[subject.pk]))
    event = AuditEvent.objects.get(action="personal_data.viewed", details__what="account")
    assert event.actor_id == admin_user.pk and event.subject_ref == subject.subject_ref
    assert subject.email not in str(event.details)


def test_change_form_saves_person_fields_and_enforces_region_in_country(client, admin_user):
    subject = UserFactory(country="US")
    url = reverse("admin:accounts_user_change", args=[subject.pk])
    response = client.post(url, _change_data(subject, region="SG-01"))
    assert response.status_code == 200 and response.context["adminform"].form.errors
    response = client.post(url, _change_data(subject, region="US-CA", name="Renamed"))
    assert response.status_code == 302
    subject.refresh_from_db()
    assert (subject.region, subject.name) == ("US-CA", "Renamed")
    assert not AuditEvent.objects.filter(action="account.staff_changed").exists()


def test_list_shows_groups_without_a_query_per_row(client, admin_user, django_assert_max_num_queries):
    group = Group.objects.get_or_create(name="Auditor")[0]
    for _ in range(5):
        StaffFactory().groups.add(group)
    with django_assert_max_num_queries(9):  # one query per row would make it 13
        response = client.get(reverse("admin:accounts_user_changelist"))
    assert response.status_code == 200
    assert response.content.decode().count(">Auditor<") >= 5


def test_list_searches_by_email_and_filters_closed_accounts(client, admin_user):
    UserFactory(email="findme@example.org")
    response = client.get(reverse("admin:accounts_user_changelist"), {"q": "findme"})
    assert [u.email for u in response.context["cl"].result_list] == ["findme@example.org"]
    response = client.get(reverse("admin:accounts_user_changelist"), {"closed_at__isempty": "0"})
    assert list(response.context["cl"].result_list) == []


def test_pm_vii_2_granting_a_group_to_staff_writes_an_audit_event(client, admin_user):
    staff = StaffFactory()
    auditors = Group.objects.get_or_create(name="Auditor")[0]
    response = client.post(reverse("admin:accounts_user_change", args=[staff.pk]), _change_data(staff, groups=[auditors.pk]))
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="account.staff_changed")
    assert event.actor_id == admin_user.pk and event.subject_ref is None
    assert (event.target_type, event.target_id) == ("accounts.user", str(staff.pk))
    assert event.details["user_id"] == staff.pk and event.details["changed"] == ["groups"]
    assert event.details["groups"] == ["Auditor"]


def test_pm_vii_2_making_an_account_staff_writes_an_audit_event(client, admin_user):
    subject = UserFactory()
    permission = Permission.objects.get(codename="view_auditevent")
    client.post(
        reverse("admin:accounts_user_change", args=[subject.pk]),
        _change_data(subject, is_staff="on", user_permissions=[permission.pk]),
    )
    event = AuditEvent.objects.get(action="account.staff_changed")
    assert event.details["changed"] == ["is_staff", "user_permissions"]
    assert event.details["user_permissions"] == ["privacyops.view_auditevent"] and event.details["is_staff"] is True


def test_pm_vii_2_removing_staff_access_writes_an_audit_event(client, admin_user):
    staff = StaffFactory()
    client.post(reverse("admin:accounts_user_change", args=[staff.pk]), _change_data(staff, is_staff=""))
    event = AuditEvent.objects.get(action="account.staff_changed")
    assert event.details["changed"] == ["is_staff"] and event.details["is_staff"] is False


def test_user_pages_are_refused_to_staff_without_permission(client):
    client.force_login(StaffFactory())
    assert client.get(reverse("admin:accounts_user_changelist")).status_code == 403
    assert client.get(reverse("admin:accounts_user_add")).status_code == 403
