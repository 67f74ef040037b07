"""The custom user model: email login, the subject reference ledgers use, and social sign-in links (PM-I-8)."""

import uuid

import pytest
from django.contrib.auth import authenticate
from django.db import IntegrityError, transaction

from accounts.models import SocialIdentity, User
from tests.factories.accounts import UserFactory

pytestmark = pytest.mark.django_db


def test_create_user_lowercases_the_email_and_signs_in_with_it():
    user = User.objects.create_user("Ada.Lovelace@Example.ORG", password="correct horse battery staple")

    assert user.email == "ada.lovelace@example.org"
    assert authenticate(username="ada.lovelace@example.org", password="correct horse battery staple") == user
    assert User.USERNAME_FIELD == "email"


def test_create_user_requires_an_email():
    with pytest.raises(ValueError):
        User.objects.create_user("", password="x")


def test_email_is_unique():
    User.objects.create_user("same@example.org")
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user("SAME@example.org")


def test_subject_ref_is_a_random_uuid_unique_per_account():
    first, second = UserFactory(), UserFactory()

    assert isinstance(first.subject_ref, uuid.UUID)
    assert first.subject_ref.version == 4
    assert first.subject_ref != second.subject_ref
    second.subject_ref = first.subject_ref
    with pytest.raises(IntegrityError), transaction.atomic():
        second.save()


def test_region_may_be_empty_or_a_subdivision_of_the_country():
    UserFactory(country="US", region="US-CA")
    UserFactory(country="SG", region="")


def test_database_refuses_a_region_outside_the_country():
    with pytest.raises(IntegrityError), transaction.atomic():
        UserFactory(country="US", region="SG-01")


def test_database_refuses_closure_before_joining():
    user = UserFactory()
    user.closed_at = user.date_joined.replace(year=user.date_joined.year - 1)
    with pytest.raises(IntegrityError), transaction.atomic():
        user.save()


def test_pm_i_8_a_social_identity_is_unique_per_provider_and_uid():
    SocialIdentity.objects.create(user=UserFactory(), provider="github", provider_uid="42")
    SocialIdentity.objects.create(user=UserFactory(), provider="google", provider_uid="42")  # other provider: fine
    with pytest.raises(IntegrityError), transaction.atomic():
        SocialIdentity.objects.create(user=UserFactory(), provider="github", provider_uid="42")


def test_pm_i_8_database_refuses_an_unknown_social_provider():
    with pytest.raises(IntegrityError), transaction.atomic():
        SocialIdentity.objects.create(user=UserFactory(), provider="myspace", provider_uid="1")


def test_pm_i_8_social_identities_go_with_the_account():
    user = UserFactory()
    SocialIdentity.objects.create(user=user, provider="google", provider_uid="g-1")
    user.delete()
    assert not SocialIdentity.objects.filter(provider_uid="g-1").exists()
