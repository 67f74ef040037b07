"""The audit trail in the admin: the DPO and auditors read it, nobody changes it (PM-VII-2)."""

import json

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from privacyops.admin_utils import COUNT_CAP
from privacyops.audit import audit_head_anchor, audit_record
from privacyops.models import AuditEvent
from tests.factories.accounts import StaffFactory, UserFactory
from tests.privacyops.tamper import raw_update

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:privacyops_auditevent_changelist"
VERIFY = "admin:privacyops_auditevent_verify"


def _staff(*codenames):
    user = StaffFactory()
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="privacyops", codename__in=codenames))
    return user


@pytest.fixture
def auditor(client):
    user = _staff("view_auditevent", "verify_auditevent")
    client.force_login(user)
    return user


@pytest.fixture
def events():
    staff, alice, bob = StaffFactory(email="dpo@privacyops.test"), UserFactory(), UserFactory()
    return {
        "alice": audit_record(
            actor=staff, action="register.purpose.updated", target=alice, subject=alice, details={"code": "P1"}
        ),
        "bob": audit_record(actor=None, action="retention.batch", subject=bob, details={"deleted": 3}),
        "plain": audit_record(actor=staff, action="register.datacategory.created", details={"code": "C1"}),
    }


def _listed(response) -> set[int]:
    return {event.pk for event in response.context["cl"].result_list}


def test_pm_vii_2_auditor_lists_audit_events(client, auditor, events):
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert _listed(response) == {event.pk for event in events.values()}
    assert events["alice"].hash[:12] in response.content.decode()


def test_pm_vii_2_auditor_finds_events_by_exact_subject_ref(client, auditor, events):
    response = client.get(reverse(CHANGELIST), {"q": str(events["alice"].subject_ref)})
    assert _listed(response) == {events["alice"].pk}


def test_pm_vii_2_auditor_searches_by_action_prefix(client, auditor, events):
    response = client.get(reverse(CHANGELIST), {"q": "register."})
    assert _listed(response) == {events["alice"].pk, events["plain"].pk}


def test_pm_vii_2_auditor_filters_by_action_and_actor(client, auditor, events):
    response = client.get(reverse(CHANGELIST), {"action": "retention.batch"})
    assert _listed(response) == {events["bob"].pk}
    response = client.get(reverse(CHANGELIST), {"actor_label": "dpo@privacyops.test"})
    assert _listed(response) == {events["alice"].pk, events["plain"].pk}
    # The filter offers exactly the values present, read through the index.
    choices = {
        spec.title: [c["display"] for c in spec.choices(response.context["cl"])] for spec in response.context["cl"].filter_specs
    }
    assert set(choices["action"]) >= {"register.purpose.updated", "retention.batch", "register.datacategory.created"}
    assert "system" in choices["actor"]


def test_pm_vii_2_auditor_filters_by_date(client, auditor, events):
    response = client.get(reverse(CHANGELIST))
    dates = next(spec for spec in response.context["cl"].filter_specs if spec.title == "occurred at")
    links = {choice["display"]: choice["query_string"] for choice in dates.choices(response.context["cl"])}
    assert _listed(client.get(reverse(CHANGELIST) + links["Today"])) == {event.pk for event in events.values()}
    before = {"occurred_at__gte": "2000-01-01 00:00:00+00:00", "occurred_at__lt": "2000-01-02 00:00:00+00:00"}
    assert _listed(client.get(reverse(CHANGELIST), before)) == set()


def test_pm_vii_2_auditor_opens_an_event_with_its_details_as_json(client, auditor, events):
    response = client.get(reverse("admin:privacyops_auditevent_change", args=[events["alice"].pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert json.dumps({"code": "P1"}, indent=2).replace('"', "&quot;") in body
    assert events["alice"].hash in body
    assert 'name="_save"' not in body  # view-only page: no save button


def test_pm_vii_2_nobody_can_change_or_delete_an_event_in_the_admin(client, events):
    dpo = _staff("view_auditevent", "verify_auditevent", "change_auditevent", "delete_auditevent", "add_auditevent")
    dpo.is_superuser = True
    dpo.save()
    client.force_login(dpo)
    event = events["alice"]
    change = client.post(reverse("admin:privacyops_auditevent_change", args=[event.pk]), {"action": "test.forged"})
    delete = client.post(reverse("admin:privacyops_auditevent_delete", args=[event.pk]), {"post": "yes"})
    add = client.post(reverse("admin:privacyops_auditevent_add"), {"action": "test.forged"})
    assert (change.status_code, delete.status_code, add.status_code) == (403, 403, 403)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.action, stored.hash) == (event.action, event.hash)
    assert AuditEvent.objects.count() == 3


def test_pm_vii_2_the_list_is_refused_without_the_view_permission(client, events):
    client.force_login(StaffFactory())
    assert client.get(reverse(CHANGELIST)).status_code == 403


def test_pm_vii_2_list_does_not_count_or_scan_the_whole_table(client, auditor, events, django_assert_max_num_queries):
    # Session, user, two permission lookups, one loose index scan per filter, the planner's row estimate
    # (PostgreSQL only), the capped count, the rows, and the cookie middleware's one read of the cookie
    # inventory when a response sets a cookie (the CSRF cookie here).
    with django_assert_max_num_queries(10) as captured:
        response = client.get(reverse(CHANGELIST))
    assert response.context["cl"].full_result_count is None
    counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all(f"LIMIT {COUNT_CAP}" in sql for sql in counts)
    assert not [q["sql"] for q in captured.captured_queries if "DISTINCT" in q["sql"].upper()]


def test_pm_vii_2_verify_page_shows_an_intact_chain_and_its_head(client, auditor, events):
    response = client.get(reverse(VERIFY))
    assert response.status_code == 200
    body = response.content.decode()
    assert "Intact." in body and events["plain"].hash in body


def test_pm_vii_2_verify_page_names_the_edited_event_and_checks_anchors(client, auditor, events):
    audit_head_anchor()
    raw_update(events["bob"].pk, details=json.dumps({"deleted": 0}))
    response = client.get(reverse(VERIFY))
    body = response.content.decode()
    assert "Does not verify." in body
    assert f"#{events['bob'].pk}" in body
    assert "All 1 anchors match" in body  # the anchored head is untouched; the chain shows the edit


def test_pm_vii_2_verify_page_needs_the_verify_permission(client, events):
    client.force_login(_staff("view_auditevent"))
    assert client.get(reverse(VERIFY)).status_code == 403
    assert "Verify chain" not in client.get(reverse(CHANGELIST)).content.decode()


def test_verify_page_sends_anonymous_users_to_the_login(client):
    response = client.get(reverse(VERIFY))
    assert response.status_code == 302 and "login" in response["Location"]
