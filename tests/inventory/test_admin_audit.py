"""Every write from the workbench goes through the register's services and leaves an audit event naming
what changed (PM-VII-2: a tamper-evident record of every staff action)."""

import pytest
from django.db.models import Model
from django.urls import reverse

from inventory import models
from privacyops.audit import audit_chain_verify
from privacyops.models import AuditEvent
from tests.factories import inventory as f

pytestmark = pytest.mark.django_db


def _url(model, view, *args):
    return reverse(f"admin:inventory_{model._meta.model_name}_{view}", args=args)


def _value(value):
    if isinstance(value, Model):
        return value.pk
    if isinstance(value, list | tuple):
        return [_value(v) for v in value]
    if value is None:
        return ""
    return value


def _put(data: dict, prefix: str, form):
    for name in form.fields:
        key = f"{prefix}{name}"
        value = form[name].value()
        if value is False:
            continue
        data[key] = "on" if value is True else _value(value)


def admin_post_data(response) -> dict:
    """What the change page would post back unchanged: the main form and every inline formset."""
    data = {}
    _put(data, "", response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for name in formset.management_form.fields:
            data[f"{formset.prefix}-{name}"] = formset.management_form[name].value()
        for i, form in enumerate(formset.forms):
            _put(data, f"{formset.prefix}-{i}-", form)
    return data


def _events(action):
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_pm_vii_2_changing_a_transfer_records_the_changed_field(client, dpo, register):
    transfer = register["amber"]
    url = _url(models.Transfer, "change", transfer.pk)
    data = admin_post_data(client.get(url))
    data["mechanism"] = "scc"
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    transfer.refresh_from_db()
    assert transfer.mechanism == "scc"
    (event,) = _events("register.transfer.updated")
    assert event.details == {"code": "sg-to-cn", "fields": ["mechanism"]}
    assert event.actor_label == dpo.email
    assert audit_chain_verify().ok


def test_pm_vii_2_many_to_many_changes_are_saved_and_listed(client, dpo, register):
    purpose = register["improve"]
    url = _url(models.Purpose, "change", purpose.pk)
    data = admin_post_data(client.get(url))
    data["subject_categories"] = [register["holders"].pk]
    assert client.post(url, data).status_code == 302
    assert list(purpose.subject_categories.all()) == [register["holders"]]
    (event,) = _events("register.purpose.updated")
    assert event.details["fields"] == ["subject_categories"]


def test_pm_vii_2_inline_rows_are_saved_and_deleted_through_the_services(client, dpo, register):
    purpose = register["service"]
    url = _url(models.Purpose, "change", purpose.pk)
    data = admin_post_data(client.get(url))
    prefix = "purpose_bases"
    # Delete the China row, add a general legal-obligation row.
    china_index = next(i for i in range(int(data[f"{prefix}-TOTAL_FORMS"])) if data.get(f"{prefix}-{i}-jurisdiction"))
    data[f"{prefix}-{china_index}-DELETE"] = "on"
    new = int(data[f"{prefix}-TOTAL_FORMS"])
    data[f"{prefix}-TOTAL_FORMS"] = new + 1
    data[f"{prefix}-{new}-basis"] = register["legal"].pk
    data[f"{prefix}-{new}-condition"] = "where a law requires it"
    response = client.post(url, data)
    assert response.status_code == 302
    rows = {(pb.basis.code, pb.jurisdiction_id) for pb in purpose.purpose_bases.all()}
    assert rows == {("contract", None), ("legal-obligation", None)}
    (created,) = _events("register.purposebasis.created")
    assert created.details["code"] == "provide-service/legal-obligation/*"
    assert set(created.details["fields"]) >= {"basis", "condition"}
    (deleted,) = _events("register.purposebasis.deleted")
    assert deleted.details["code"] == "provide-service/legal-obligation/CN"
    # The purpose itself did not change: no event claims it did.
    assert not _events("register.purpose.updated")


def test_pm_vii_2_adding_an_entry_is_audited(client, dpo, register):
    response = client.post(
        _url(models.DataSubjectCategory, "add"),
        {"code": "website-visitors", "name": "Website visitors", "description": "People browsing the site."},
    )
    assert response.status_code == 302
    assert models.DataSubjectCategory.objects.filter(code="website-visitors").exists()
    (event,) = _events("register.datasubjectcategory.created")
    assert event.details["code"] == "website-visitors"
    assert {"code", "name", "description"} <= set(event.details["fields"])


def test_pm_vii_2_deleting_an_entry_is_audited(client, dpo, register):
    store = register["store"]
    response = client.post(_url(models.DataStore, "delete", store.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not models.DataStore.objects.filter(pk=store.pk).exists()
    (event,) = _events("register.datastore.deleted")
    assert event.details["code"] == "chat-db"


def test_pm_vii_2_bulk_delete_writes_one_event_per_row(client, dpo, register):
    extra = [f.DataStoreFactory(), f.DataStoreFactory()]
    pks = [register["store"].pk, *(s.pk for s in extra)]
    response = client.post(
        _url(models.DataStore, "changelist"),
        {"action": "delete_selected", "_selected_action": pks, "post": "yes"},
    )
    assert response.status_code == 302
    assert not models.DataStore.objects.filter(pk__in=pks).exists()
    assert sorted(e.details["code"] for e in _events("register.datastore.deleted")) == sorted(
        ["chat-db", *(s.code for s in extra)]
    )


def test_a_category_in_use_cannot_be_deleted(client, dpo, register):
    category = register["account"]
    response = client.post(_url(models.DataCategory, "delete", category.pk), {"post": "yes"})
    # The admin refuses (PROTECT): the confirmation page lists what protects it; nothing is deleted or audited.
    assert response.status_code == 200
    assert models.DataCategory.objects.filter(pk=category.pk).exists()
    assert not _events("register.datacategory.deleted")
