"""Data stores of kind `django` follow the code's registry: one per app that declares personal data."""

import pytest
from django.apps import apps
from django.core.management import call_command
from django.urls import reverse

from inventory.audit_actions import DATASTORE_SYNCED
from inventory.models import DataCategory, DataStore
from inventory.policy import register_policy_load
from inventory.services import (
    DATASTORE_SYNC_LABEL,
    datastore_sync_after_migrate,
    datastore_sync_from_registry,
)
from privacyops.models import AuditEvent
from privacyops.privacy import registry
from retention.models import RetentionRule

pytestmark = pytest.mark.django_db

CHAT_CATEGORIES = {"user-content", "feedback", "communication-information", "log-data", "usage-data"}


def _categories(code):
    return set(DataStore.objects.get(code=code).categories.values_list("code", flat=True))


def _last_app():
    return [c for c in apps.get_app_configs() if c.models_module is not None][-1]


def test_pm_i_loadpolicy_creates_one_django_store_per_app_with_personal_data(seeded):
    expected = {d.store_code for d in registry.personal()}
    assert {
        "django-chat",
        "django-accounts",
        "django-privacyops",
        "django-retention",
        "django-consents",
        "django-policies",
        "django-requests",
        "django-requests-packages",
        "django-otp_email",
        "django-sessions",
        "django-admin",
    } == expected
    stores = DataStore.objects.filter(code__in=expected)
    assert stores.count() == len(expected)
    chat = stores.get(code="django-chat")
    assert (chat.kind, chat.app_label) == (DataStore.Kind.DJANGO, "chat")
    assert "(chat)" in chat.name
    assert _categories("django-chat") == CHAT_CATEGORIES
    assert _categories("django-accounts") == {"account-information"}
    assert _categories("django-retention") == {"retention-records"}
    assert _categories("django-consents") == {"consent-records"}
    assert _categories("django-policies") == {"consent-records"}  # policy acceptances are proof of consent too
    assert _categories("django-requests") == {"rights-request-records"}
    assert set(DataCategory.objects.get(code="log-data").stores.values_list("code", flat=True)) == {"django-chat"}


def test_pm_i_the_sync_is_idempotent_and_silent_when_nothing_changed(seeded):
    before = AuditEvent.objects.count()
    result = datastore_sync_from_registry()
    assert not result.changed
    assert AuditEvent.objects.count() == before
    report = register_policy_load()
    assert report.extensions[DATASTORE_SYNC_LABEL].created == report.extensions[DATASTORE_SYNC_LABEL].updated == 0
    assert AuditEvent.objects.count() == before


def test_pm_i_a_drifted_store_is_put_back_with_one_audit_event(seeded):
    chat = DataStore.objects.get(code="django-chat")
    chat.categories.remove(DataCategory.objects.get(code="log-data"))
    chat.categories.add(DataCategory.objects.get(code="cookies"))
    chat.name = "Chat service database"  # the DPO's own name is kept
    chat.save()
    before = AuditEvent.objects.count()

    result = datastore_sync_from_registry()

    assert result.updated == ["django-chat"]
    assert _categories("django-chat") == CHAT_CATEGORIES
    assert DataStore.objects.get(code="django-chat").name == "Chat service database"
    events = list(AuditEvent.objects.order_by("id")[before:])
    assert [e.action for e in events] == [DATASTORE_SYNCED]
    assert events[0].details == {"created": [], "updated": ["django-chat"]}


def test_pm_i_loadpolicy_counts_the_stores_in_its_one_audit_event():
    before = AuditEvent.objects.count()
    report = register_policy_load()
    events = list(AuditEvent.objects.order_by("id")[before:])
    assert len(events) == 1
    assert events[0].details["counts"][DATASTORE_SYNC_LABEL]["created"] == len({d.store_code for d in registry.personal()})
    assert report.extensions[DATASTORE_SYNC_LABEL].created > 0


def test_pm_i_after_migrate_the_stores_follow_the_registry_once_the_register_is_loaded(seeded):
    RetentionRule.objects.filter(store__isnull=False).delete()  # a rule's store is protected
    DataStore.objects.filter(kind=DataStore.Kind.DJANGO).delete()
    datastore_sync_after_migrate(sender=_last_app(), app_config=_last_app())
    assert _categories("django-chat") == CHAT_CATEGORIES


def test_pm_i_after_migrate_on_an_empty_register_nothing_is_written():
    before = AuditEvent.objects.count()
    datastore_sync_after_migrate(sender=_last_app(), app_config=_last_app())
    assert not DataStore.objects.exists()
    assert AuditEvent.objects.count() == before


def test_pm_i_other_kinds_of_store_are_left_alone(seeded):
    other = DataStore.objects.create(code="crm", name="CRM", kind=DataStore.Kind.SQL)
    other.categories.add(DataCategory.objects.get(code="account-information"))
    datastore_sync_from_registry()
    assert _categories("crm") == {"account-information"}


def test_pm_i_admin_shows_categories_per_store_and_stores_per_category(seeded, dpo, client):
    page = client.get(reverse("admin:inventory_datastore_changelist"))
    assert page.status_code == 200
    assert "django-chat" in page.content.decode()
    assert "communication-information" in page.content.decode()
    log_data = DataCategory.objects.get(code="log-data")
    page = client.get(reverse("admin:inventory_datacategory_change", args=[log_data.pk]))
    assert page.status_code == 200
    assert "django-chat" in page.content.decode()
    chat = DataStore.objects.get(code="django-chat")
    page = client.get(reverse("admin:inventory_datastore_change", args=[chat.pk]))
    assert page.status_code == 200
    assert 'name="categories"' not in page.content.decode()  # a Django app's categories come from the code


def test_pm_i_the_command_reports_the_store_sync(capsys):
    call_command("loadpolicy")
    assert "Data stores from the registry" in capsys.readouterr().out
