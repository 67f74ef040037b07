"""PM-XI-2: an agent's request waits for staff to check the agent's proof of authority."""

import pytest
from django.core.exceptions import PermissionDenied
from django.core.files.base import ContentFile

from accounts.roles import ROLE_DPO, ROLE_PRIVACY_ANALYST
from privacyops.models import AuditEvent
from requests.models import Requester, RequestEvent, Right, Status
from requests.services import RequestActionError, rights_request_agent_verify, rights_request_approve
from requests.verification import VerificationError, require_verified
from tests.factories.inventory import staff_in_role
from tests.factories.requests import RightsRequestFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)


def _agent_request(**values):
    rights_request = RightsRequestFactory(
        requester=Requester.AGENT, agent_name="Lee & Partners", status=Status.IN_PROGRESS, **values
    )
    rights_request.verified_at = rights_request.received_at
    rights_request.agent_authority.save("authority.pdf", ContentFile(b"%PDF-1.4 power of attorney"), save=True)
    return rights_request


def test_pm_xi_2_staff_verify_the_agent_and_only_then_the_request_may_be_fulfilled():
    rights_request = _agent_request()
    with pytest.raises(VerificationError):
        require_verified(rights_request)
    dpo = staff_in_role(ROLE_DPO)
    rights_request_agent_verify(rights_request=rights_request, actor=dpo)
    rights_request.refresh_from_db()
    assert rights_request.agent_verified_by == dpo and rights_request.agent_verified_at is not None
    require_verified(rights_request)  # no longer refused
    assert RequestEvent.objects.filter(request=rights_request, kind=RequestEvent.Kind.VERIFY, details__agent=True).exists()
    assert AuditEvent.objects.filter(action="rights_request.agent_verified", target_id=str(rights_request.pk)).exists()


def test_pm_xi_2_agent_verification_is_refused_without_a_document_for_a_subject_or_twice():
    dpo = staff_in_role(ROLE_DPO)
    no_document = RightsRequestFactory(requester=Requester.AGENT, agent_name="Lee & Partners", status=Status.IN_PROGRESS)
    with pytest.raises(RequestActionError, match="no proof of authority"):
        rights_request_agent_verify(rights_request=no_document, actor=dpo)
    with pytest.raises(RequestActionError, match="made by the subject"):
        rights_request_agent_verify(rights_request=RightsRequestFactory(status=Status.IN_PROGRESS), actor=dpo)
    verified = _agent_request()
    rights_request_agent_verify(rights_request=verified, actor=dpo)
    with pytest.raises(RequestActionError, match="already verified"):
        rights_request_agent_verify(rights_request=verified, actor=dpo)


def test_pm_viii_2_a_child_report_is_approved_only_by_who_may_approve_an_erasure():
    report = RightsRequestFactory(right=Right.CHILD_REPORT, status=Status.AWAITING_APPROVAL)
    report.verified_at = report.received_at
    report.save(update_fields=["verified_at"])
    with pytest.raises(PermissionDenied):
        rights_request_approve(rights_request=report, actor=staff_in_role(ROLE_PRIVACY_ANALYST))
    report.refresh_from_db()
    assert report.status == Status.AWAITING_APPROVAL
