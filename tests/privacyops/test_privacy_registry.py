"""The personal-data registry: what is declared, and how a subject's rows are found."""

import pytest
from django.apps import apps

from chat import models as chat
from inventory.checks import our_models
from inventory.policy import policy_file_read
from privacyops import privacy
from privacyops.privacy import Erase, Field, RegistryError, registry
from tests.factories.accounts import UserFactory
from tests.factories.chat import SupportMessageFactory


def test_pm_i_every_concrete_model_of_ours_is_declared():
    undeclared = [m._meta.label for m in our_models() if not registry.is_registered(m)]
    assert undeclared == []


def test_pm_i_the_contrib_models_that_hold_personal_data_are_declared():
    for label in ("sessions.Session", "admin.LogEntry", "privacyops.AuditEvent"):
        assert registry.get(apps.get_model(label)).personal


def test_pm_i_every_category_the_registry_names_is_in_the_seed_register():
    assert registry.categories() <= policy_file_read().codes("data_categories")


def test_pm_i_chat_rows_follow_the_policys_categories_and_subject_paths():
    expected = {
        chat.Conversation: ("user-content", "user"),
        chat.Message: ("user-content", "conversation__user"),
        chat.Attachment: ("user-content", "message__conversation__user"),
        chat.Feedback: ("feedback", "user"),
        chat.SupportMessage: ("communication-information", "user"),
        chat.AccessLog: ("log-data", "user"),
        chat.UsageEvent: ("usage-data", "user"),
    }
    for model, (category, subject) in expected.items():
        declaration = registry.get(model)
        assert (declaration.category, declaration.subject, declaration.created) == (category, subject, "created"), model
        assert declaration.store_code == "django-chat"
    assert registry.get(chat.SupportMessage).identifier == "email"


def test_pm_i_only_rows_with_their_own_nullable_link_to_the_account_can_be_anonymised():
    anonymisable = {d.label for d in registry.personal() if d.anonymisable}
    assert anonymisable == {"chat.AccessLog", "chat.Feedback", "chat.SupportMessage", "chat.UsageEvent"}


def test_pm_i_9_fields_that_may_hold_other_peoples_data_are_marked():
    assert registry.get(chat.Message).fields["content"].third_party
    assert registry.get(chat.SupportMessage).fields["body"].third_party


def test_pm_i_10_what_the_subject_may_correct_is_marked():
    from accounts.models import User

    user = registry.get(User)
    assert {n for n, f in user.fields.items() if f.rectifiable} == {"email", "name", "country", "region", "date_of_birth"}


def test_pm_i_5_ip_addresses_are_generalised_to_their_network():
    assert registry.get(chat.AccessLog).fields["ip_address"].erase == Erase.GENERALISE_IP


def test_pm_i_audit_trail_is_kept_under_a_legal_duty():
    from privacyops.models import AuditEvent

    declaration = registry.get(AuditEvent)
    assert declaration.category == "audit-records"
    assert {f.erase for f in declaration.fields.values()} == {Erase.RETAIN}


def test_declaring_a_model_twice_differently_is_an_error_but_the_same_declaration_again_is_not():
    declaration = registry.get(chat.UsageEvent)
    again = privacy.register(
        chat.UsageEvent,
        subject=declaration.subject,
        category=declaration.category,
        created=declaration.created,
        fields=dict(declaration.fields),
        not_personal=declaration.not_personal,
    )
    assert again == declaration
    with pytest.raises(RegistryError):
        privacy.register(chat.UsageEvent, category="log-data", fields={}, not_personal=("id",))
    assert registry.get(chat.UsageEvent) == declaration


def test_a_field_may_be_declared_in_the_short_form():
    assert Field.coerce(("log-data", Erase.NULL, "Device")) == Field("log-data", Erase.NULL, "Device")
    with pytest.raises(RegistryError):
        Field.coerce("log-data")


def test_a_model_declared_not_personal_needs_a_reason():
    from inventory.models import Purpose

    with pytest.raises(RegistryError):
        privacy.register_not_personal(Purpose, reason="")


@pytest.mark.django_db
def test_pm_i_4_support_messages_are_found_by_account_or_by_email_when_sent_without_one():
    user = UserFactory(email="jo.bloggs@example.org")
    other = UserFactory()
    mine = SupportMessageFactory(user=user)
    before_signup = SupportMessageFactory(user=None, email="JO.BLOGGS@example.org")
    SupportMessageFactory(user=other, email="jo.bloggs@example.org")
    SupportMessageFactory(user=None, email="someone@example.org")
    condition = registry.get(chat.SupportMessage).subject_q(user)
    assert set(chat.SupportMessage.objects.filter(condition)) == {mine, before_signup}


@pytest.mark.django_db
def test_pm_i_the_account_row_is_its_own_subject_and_audit_events_are_found_by_subject_ref():
    from accounts.models import User
    from privacyops.audit import audit_record
    from privacyops.models import AuditEvent

    user, other = UserFactory(), UserFactory()
    assert list(User.objects.filter(registry.get(User).subject_q(user))) == [user]
    event = audit_record(actor=None, action="test.seen", subject=user)
    audit_record(actor=None, action="test.seen", subject=other)
    assert list(AuditEvent.objects.filter(registry.get(AuditEvent).subject_q(user))) == [event]
