"""The approval rule lives in one place (issue 11 §3, PM-IX-2): `services.approval_permission` decides which
permission approving a request needs, the service enforces it and the workbench's Approve button follows it.
Before, the button followed a copy that forgot child reports, so privacy analysts saw a button the service
then refused."""

import pytest
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from requests import services
from requests.admin import available_actions
from requests.models import Right, Status
from tests.factories.inventory import staff_in_role
from tests.factories.requests import RightsRequestFactory

pytestmark = pytest.mark.django_db

ROLES = ["DPO", "Privacy analyst", "Support agent", "Auditor"]


def _service_accepts(rights_request, actor) -> bool:
    """Whether `rights_request_approve` accepts this actor; whatever it wrote is rolled back."""
    try:
        with transaction.atomic():
            services.rights_request_approve(rights_request=rights_request, actor=actor)
            transaction.set_rollback(True)
    except PermissionDenied:
        return False
    return True


@pytest.mark.parametrize("right", list(Right))
@pytest.mark.parametrize("role", ROLES)
def test_pm_ix_2_the_approve_button_shows_exactly_when_the_service_accepts(role, right):
    rights_request = RightsRequestFactory(right=right, status=Status.AWAITING_APPROVAL, verified_at=timezone.now())
    actor = staff_in_role(role)
    shown = any(button["key"] == "approve" for button in available_actions(rights_request, actor))
    assert shown == _service_accepts(rights_request, actor)
    assert shown == actor.has_perm(services.approval_permission(rights_request))


def test_pm_ix_2_erasure_and_child_reports_need_the_erasure_approval():
    for right in (Right.ERASURE, Right.CHILD_REPORT):
        assert services.approval_permission(RightsRequestFactory.build(right=right)) == services.APPROVE_ERASURE
    assert services.approval_permission(RightsRequestFactory.build(right=Right.ACCESS)) == services.APPROVE


def test_a_privacy_analyst_sees_no_approve_button_on_a_child_report():
    rights_request = RightsRequestFactory(right=Right.CHILD_REPORT, status=Status.AWAITING_APPROVAL, verified_at=timezone.now())
    analyst = staff_in_role("Privacy analyst")
    assert "approve" not in {button["key"] for button in available_actions(rights_request, analyst)}
    with pytest.raises(PermissionDenied):
        services.rights_request_approve(rights_request=rights_request, actor=analyst)
