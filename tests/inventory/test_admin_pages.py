"""The admin walk: every register page renders for the DPO, is refused to non-staff, and is read-only for
the Auditor (PM-VII-2: least privilege)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from inventory import models
from inventory.resources import RESOURCES
from privacyops.models import AuditEvent
from tests.factories import inventory as f
from tests.factories.accounts import UserFactory

pytestmark = pytest.mark.django_db

REGISTER_MODELS = list(RESOURCES)


def _url(model, view, *args):
    return reverse(f"admin:inventory_{model._meta.model_name}_{view}", args=args)


def _instance(model):
    return model.objects.order_by("pk").first()


def test_every_register_model_is_in_the_admin():
    from django.contrib import admin

    assert set(REGISTER_MODELS) <= set(admin.site._registry)
    assert len(REGISTER_MODELS) == 12


@pytest.mark.parametrize("model", REGISTER_MODELS, ids=lambda m: m._meta.model_name)
def test_pm_vii_2_dpo_sees_changelist_add_and_change_pages(client, dpo, register, model):
    obj = _instance(model)
    assert obj is not None
    for url in (_url(model, "changelist"), _url(model, "add"), _url(model, "change", obj.pk)):
        response = client.get(url)
        assert response.status_code == 200, url
    # The changelist lists the row by its natural key.
    assert str(obj) in client.get(_url(model, "changelist")).content.decode()


@pytest.mark.parametrize("model", REGISTER_MODELS, ids=lambda m: m._meta.model_name)
def test_pm_vii_2_non_staff_user_is_sent_to_the_login_page(client, register, model):
    client.force_login(UserFactory())
    obj = _instance(model)
    for url in (_url(model, "changelist"), _url(model, "add"), _url(model, "change", obj.pk)):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("model", REGISTER_MODELS, ids=lambda m: m._meta.model_name)
def test_pm_vii_2_auditor_reads_but_cannot_add(client, auditor, register, model):
    obj = _instance(model)
    assert client.get(_url(model, "changelist")).status_code == 200
    change = client.get(_url(model, "change", obj.pk))
    assert change.status_code == 200
    assert 'name="_save"' not in change.content.decode()  # a read-only view, no save button
    assert client.get(_url(model, "add")).status_code == 403


def test_pm_vii_2_auditor_post_to_change_is_refused_and_changes_nothing(client, auditor, register):
    transfer = register["amber"]
    events = AuditEvent.objects.count()
    response = client.post(
        _url(models.Transfer, "change", transfer.pk),
        {"code": transfer.code, "name": "Changed by the auditor", "from_country": "SG", "to_country": "CN", "mechanism": "scc"},
    )
    assert response.status_code == 403
    transfer.refresh_from_db()
    assert transfer.name != "Changed by the auditor" and transfer.mechanism == "unspecified"
    assert AuditEvent.objects.count() == events


def test_pm_vii_2_auditor_cannot_delete(client, auditor, register):
    transfer = register["amber"]
    assert client.post(_url(models.Transfer, "delete", transfer.pk), {"post": "yes"}).status_code == 403
    assert models.Transfer.objects.filter(pk=transfer.pk).exists()


def _changelist_queries(client, model) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(_url(model, "changelist")).status_code == 200
    return len(ctx.captured_queries)


def _grow_register(n: int):
    """n more rows of every kind, each with links, so any per-row query would show."""
    for _ in range(n):
        purpose = f.PurposeFactory()
        category = f.DataCategoryFactory(sources=[f.CollectionSourceFactory()])
        subjects = f.DataSubjectCategoryFactory()
        purpose.subject_categories.add(subjects)
        f.PurposeBasisFactory(purpose=purpose, jurisdiction=f.JurisdictionFactory())
        f.ProcessingActivityFactory(purpose=purpose, category=category)
        recipient = f.RecipientFactory(purposes=[purpose], data_categories=[category])
        f.TransferFactory(recipient=recipient, recipient_category=recipient.category, data_categories=[category])
        f.DataStoreFactory()


@pytest.mark.parametrize("model", REGISTER_MODELS, ids=lambda m: m._meta.model_name)
def test_changelist_queries_do_not_grow_with_rows(client, dpo, register, model, django_assert_max_num_queries):
    before = _changelist_queries(client, model)
    _grow_register(15)
    after = _changelist_queries(client, model)
    assert after == before
    with django_assert_max_num_queries(20):
        client.get(_url(model, "changelist"))
