"""Recipients told (GDPR Art. 19): one task per recipient receiving an affected category, merged per request,
marked done by the DPO; timeline and audit carry codes and ids only."""

import threading

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import close_old_connections, connection

from accounts.roles import ROLE_DPO, ROLE_PRIVACY_ANALYST
from privacyops.models import AuditEvent
from requests.models import RecipientNotice, RequestEvent, Right
from requests.recipients import recipient_notice_done, recipient_notices_create
from tests.factories.inventory import DataCategoryFactory, RecipientFactory, staff_in_role
from tests.factories.requests import RightsRequestFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def register():
    account = DataCategoryFactory(code="account-information")
    content = DataCategoryFactory(code="user-content")
    logs = DataCategoryFactory(code="log-data")
    return {
        "crm": RecipientFactory(code="crm", data_categories=[account]),
        "cloud": RecipientFactory(code="cloud", data_categories=[account, content]),
        "analytics": RecipientFactory(code="analytics", data_categories=[logs]),
    }


def test_a_task_for_each_recipient_of_an_affected_category_art19(register):
    rights_request = RightsRequestFactory(right=Right.RECTIFICATION)
    notices = recipient_notices_create(rights_request=rights_request, category_codes=["account-information"])
    told = [(n.recipient.code, n.categories) for n in notices]
    assert told == [("cloud", ["account-information"]), ("crm", ["account-information"])]
    assert all(n.done_at is None for n in notices)
    event = rights_request.events.get(details__action="recipient_notices_created")
    assert event.details["recipients"] == ["cloud", "crm"] and "cloud" in event.message
    audit = AuditEvent.objects.get(action="rights_request.recipient_notices_created")
    assert audit.details["categories"] == ["account-information"] and audit.subject_ref == rights_request.subject_ref


def test_a_second_change_merges_into_the_existing_task_and_reopens_a_done_one(register):
    rights_request = RightsRequestFactory(right=Right.RESTRICTION)
    recipient_notices_create(rights_request=rights_request, category_codes=["account-information"])
    cloud = RecipientNotice.objects.get(recipient__code="cloud")
    recipient_notice_done(notice=cloud, actor=staff_in_role(ROLE_DPO), note="E-mailed their DPO")

    touched = recipient_notices_create(rights_request=rights_request, category_codes=["user-content", "log-data"])
    assert sorted(n.recipient.code for n in touched) == ["analytics", "cloud"]
    cloud.refresh_from_db()
    assert cloud.categories == ["account-information", "user-content"]
    assert cloud.done_at is None and cloud.done_by is None  # told about account data, not yet about the content
    assert RecipientNotice.objects.filter(request=rights_request).count() == 3  # unique per request and recipient


def test_nothing_new_writes_nothing(register):
    rights_request = RightsRequestFactory()
    recipient_notices_create(rights_request=rights_request, category_codes=["account-information"])
    events = RequestEvent.objects.count()
    assert recipient_notices_create(rights_request=rights_request, category_codes=["account-information"]) == []
    assert recipient_notices_create(rights_request=rights_request, category_codes=[]) == []
    assert RequestEvent.objects.count() == events


def test_a_category_the_register_lacks_finds_nobody_and_does_not_fail(register):
    rights_request = RightsRequestFactory()
    notices = recipient_notices_create(rights_request=rights_request, category_codes=["no-such-category", "log-data"])
    assert [n.recipient.code for n in notices] == ["analytics"]
    event = rights_request.events.get(details__action="recipient_notices_created")
    assert event.details["unknown_categories"] == ["no-such-category"]


def test_the_dpo_marks_a_task_done_once(register):
    rights_request = RightsRequestFactory()
    (notice, *_rest) = recipient_notices_create(rights_request=rights_request, category_codes=["account-information"])
    dpo = staff_in_role(ROLE_DPO)
    returned = recipient_notice_done(notice=notice, actor=dpo, note="Sent through their portal")
    assert returned is notice and notice.done_at is not None and notice.done_by_id == dpo.pk
    notice.refresh_from_db()
    assert notice.note == "Sent through their portal"
    event = rights_request.events.get(details__action="recipient_notice_done")
    assert event.actor == dpo and "Sent through" not in event.message
    audit = AuditEvent.objects.get(action="rights_request.recipient_notice_done")
    assert audit.details["recipient"] == notice.recipient.code and "note" not in audit.details
    with pytest.raises(ValidationError, match="already marked"):
        recipient_notice_done(notice=notice, actor=dpo)


def test_marking_done_needs_the_dpo_permission(register):
    (notice, *_rest) = recipient_notices_create(rights_request=RightsRequestFactory(), category_codes=["user-content"])
    with pytest.raises(PermissionDenied):
        recipient_notice_done(notice=notice, actor=staff_in_role(ROLE_PRIVACY_ANALYST))
    with pytest.raises(PermissionDenied):
        recipient_notice_done(notice=notice, actor=None)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_fulfilment_steps_racing_merge_into_one_task_per_recipient(register):
    """A rectification applied while a restriction is placed: the request row lock serialises them, so the
    second merges its categories into the first's task instead of hitting the unique constraint."""
    rights_request = RightsRequestFactory()
    barrier = threading.Barrier(2)
    errors = []

    def create(codes):
        try:
            barrier.wait(timeout=10)
            recipient_notices_create(rights_request=rights_request, category_codes=codes)
        except Exception as exc:
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=create, args=(codes,)) for codes in (["account-information"], ["user-content"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    cloud = RecipientNotice.objects.get(request=rights_request, recipient__code="cloud")
    assert cloud.categories == ["account-information", "user-content"]
    assert RecipientNotice.objects.filter(request=rights_request).count() == 2  # cloud and crm
