"""PM-I-10: the data we hold must be accurate, so the subject can correct it. End to end: the subject sees
their current values on the portal's rectification form, proposes a correction there, the DPO approves
and applies it (the services the workbench calls), the record then holds the new value, the old one is
kept in the request's history, and the subject's next access package shows the corrected value."""

import pytest
from django.urls import reverse

from accounts.roles import ROLE_DPO
from requests import services
from requests.models import RectificationItem, Right, RightsRequest, Status
from requests.rectification import rectifiable_fields, rectification_complete, rectification_decide
from tests.factories.accounts import UserFactory
from tests.factories.inventory import staff_in_role
from tests.inventory.pm import package_of

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("seeded")]


@pytest.fixture
def subject(client):
    user = UserFactory(name="Ana Smiht", email="ana@example.org", country="DE")
    client.force_login(user)
    return user


def _fix_field(subject, field: str) -> str:
    """The form field the portal shows for the subject's account `field` (the rows come from the registry)."""
    for index, entry in enumerate(rectifiable_fields(subject=subject)):
        if (entry["model_label"], entry["field"]) == ("accounts.User", field):
            return f"fix_{index}"
    raise AssertionError(f"accounts.User.{field} is not offered for correction")


def test_pm_i_10_the_portal_shows_the_subject_what_we_hold_so_they_can_check_it(client, subject):
    page = client.get(reverse("requests:new") + "?right=rectification").content.decode()
    name = _fix_field(subject, "name")
    assert f'<label for="id_{name}">Your name</label></th><td>Ana Smiht</td>' in page
    assert "<td>ana@example.org</td>" in page
    assert f'name="{name}"' in page


def test_pm_i_10_a_correction_the_subject_proposes_is_applied_by_the_dpo_and_the_old_value_kept(client, subject):
    response = client.post(
        reverse("requests:new"),
        {"right": Right.RECTIFICATION, _fix_field(subject, "name"): "Ana Smith", "details": "My name is misspelt."},
    )
    assert response.status_code == 302
    rights_request = RightsRequest.objects.get(subject=subject, right=Right.RECTIFICATION)
    [item] = RectificationItem.objects.filter(request=rights_request)
    assert (item.field, item.old_value, item.new_value, item.decision) == ("name", "Ana Smiht", "Ana Smith", "pending")
    subject.refresh_from_db()
    assert subject.name == "Ana Smiht"  # nothing changes before the DPO decides

    dpo = staff_in_role(ROLE_DPO)
    services.rights_request_move(rights_request=rights_request, to_status=Status.AWAITING_APPROVAL, actor=dpo)
    services.rights_request_approve(rights_request=rights_request, actor=dpo)
    rectification_decide(item=item, actor=dpo, apply=True)
    rectification_complete(rights_request=rights_request, actor=dpo)

    subject.refresh_from_db()
    assert subject.name == "Ana Smith"
    item.refresh_from_db()
    assert (item.old_value, item.new_value, item.decision, item.decided_by) == ("Ana Smiht", "Ana Smith", "applied", dpo)
    rights_request.refresh_from_db()
    assert rights_request.status == Status.COMPLETED
    [row] = package_of(subject).rows("accounts.User")
    assert row["name"] == "Ana Smith"


def test_pm_i_10_an_inaccurate_correction_is_refused_on_the_form_and_nothing_is_recorded(client, subject):
    response = client.post(
        reverse("requests:new"), {"right": Right.RECTIFICATION, _fix_field(subject, "email"): "not-an-address"}
    )
    assert response.status_code == 200
    assert "valid email" in response.content.decode().lower()
    assert not RightsRequest.objects.filter(subject=subject).exists()
    assert not RectificationItem.objects.exists()
