"""Verifying who asked (issue 5 §3, PM-IX-9, PM-XI-2): single-use verification links kept as hashes,
signed status links, unverified requests closed after REQUEST_UNVERIFIED_CLOSE_DAYS, and the gate that keeps
data from leaving before verification."""

import hashlib
import re
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.conf import settings
from django.core import signing
from django.urls import reverse
from django.utils import timezone

from privacyops.models import AuditEvent
from requests import services
from requests.models import Requester, RequestEvent, Right, RightsRequest, Status, VerificationLink
from requests.verification import (
    STATUS_SALT,
    VerificationError,
    request_for_status_token,
    requests_close_unverified,
    require_verified,
    status_token,
    verification_link_consume,
    verification_link_send,
)
from tests.factories.accounts import StaffFactory, UserFactory
from tests.factories.inventory import JurisdictionFactory
from tests.factories.requests import DeadlineRuleFactory, RightsRequestFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """`with committed():` runs the block's after-commit callbacks (the e-mails), as a commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def jurisdiction():
    jurisdiction = JurisdictionFactory()
    DeadlineRuleFactory(jurisdiction=jurisdiction, gdpr=True)
    return jurisdiction


@pytest.fixture
def waiting(jurisdiction):
    """A request without an account, waiting for verification."""
    return RightsRequestFactory(
        jurisdiction=jurisdiction, subject=None, contact_email="asker@example.org", status=Status.AWAITING_VERIFICATION
    )


def _token_in(mail) -> str:
    return re.search(r"/requests/verify/([A-Za-z0-9_-]+)", mail.body).group(1)


def _age(rights_request, days, *, links_too=True):
    """Pretend the request (and its links) were recorded `days` ago."""
    then = timezone.now() - timedelta(days=days)
    RightsRequest.objects.filter(pk=rights_request.pk).update(created_at=then, received_at=then, due_at=then + timedelta(days=30))
    if links_too:
        VerificationLink.objects.filter(request=rights_request).update(
            created_at=then, expires_at=then + timedelta(days=settings.REQUEST_VERIFICATION_DAYS)
        )


# --- Sending --------------------------------------------------------------------------------------------------


def test_link_is_stored_only_as_its_sha256_and_valid_for_the_configured_days(waiting, committed, mailoutbox):
    with committed():
        link = verification_link_send(rights_request=waiting)
    assert link.token_sha256 == hashlib.sha256(link.token.encode()).hexdigest()
    assert not VerificationLink.objects.filter(token_sha256=link.token).exists()
    assert link.expires_at - link.created_at == timedelta(days=settings.REQUEST_VERIFICATION_DAYS)
    assert len(link.token) >= 43  # 32 random bytes
    assert _token_in(mailoutbox[0]) == link.token


def test_link_goes_to_the_contact_address_without_an_account(waiting, committed, mailoutbox):
    with committed():
        link = verification_link_send(rights_request=waiting)
    assert link.sent_to == "asker@example.org"
    assert mailoutbox[0].to == ["asker@example.org"]


def test_link_goes_to_the_accounts_address_when_the_request_has_a_subject(jurisdiction, committed, mailoutbox):
    """Only the account's holder can confirm a request about the account, whichever address it came from."""
    subject = UserFactory(email="holder@example.org")
    rights_request = RightsRequestFactory(
        jurisdiction=jurisdiction, subject=subject, contact_email="someone-else@example.org", status=Status.AWAITING_VERIFICATION
    )
    with committed():
        link = verification_link_send(rights_request=rights_request)
    assert link.sent_to == "holder@example.org"
    assert mailoutbox[0].to == ["holder@example.org"]


def test_email_carries_the_link_the_status_link_the_expiry_and_the_dpo(waiting, committed, mailoutbox):
    with committed():
        link = verification_link_send(rights_request=waiting)
    mail = mailoutbox[0]
    assert mail.subject == f"Please confirm your request {waiting.reference}"
    assert reverse("requests:verify", kwargs={"token": link.token}) in mail.body
    status_path = re.search(r"(/requests/status/\S+)", mail.body).group(1)
    assert request_for_status_token(status_path.rsplit("/", 1)[1]) == waiting
    assert settings.DPO_EMAIL in mail.body and settings.DPO_NAME in mail.body


def test_sending_moves_a_received_request_to_awaiting_verification(jurisdiction, committed):
    rights_request = RightsRequestFactory(jurisdiction=jurisdiction, subject=None, status=Status.RECEIVED)
    with committed():
        verification_link_send(rights_request=rights_request)
    assert rights_request.status == Status.AWAITING_VERIFICATION  # the caller's instance is refreshed
    assert rights_request.events.filter(kind=RequestEvent.Kind.MOVE, to_status=Status.AWAITING_VERIFICATION).exists()


def test_sending_is_on_the_timeline_and_audited_without_the_address_or_token(waiting, committed):
    staff = StaffFactory()
    with committed():
        link = verification_link_send(rights_request=waiting, actor=staff)
    event = waiting.events.get(kind=RequestEvent.Kind.EMAIL)
    assert event.details["template"] == "verification" and event.details["link"] == link.pk
    assert link.token not in event.message
    audit = AuditEvent.objects.get(action="rights_request.verification_link_sent")
    assert audit.details["reference"] == waiting.reference and audit.details["to_account"] is False
    assert audit.actor_id == staff.pk
    assert "asker@example.org" not in str(audit.details) and link.token not in str(audit.details)


def test_a_verified_or_closed_request_gets_no_link(jurisdiction):
    verified = RightsRequestFactory(jurisdiction=jurisdiction, status=Status.IN_PROGRESS, verified_at=timezone.now())
    closed = RightsRequestFactory(jurisdiction=jurisdiction, status=Status.WITHDRAWN)
    for rights_request in (verified, closed):
        with pytest.raises(VerificationError):
            verification_link_send(rights_request=rights_request)
    assert not VerificationLink.objects.exists()


def test_nothing_is_emailed_when_the_transaction_rolls_back(waiting, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        verification_link_send(rights_request=waiting)
    assert len(callbacks) == 1 and mailoutbox == []


# --- Consuming ------------------------------------------------------------------------------------------------


def test_pm_ix_9_consuming_the_link_verifies_the_request_and_starts_work(waiting, committed):
    with committed():
        link = verification_link_send(rights_request=waiting)
        rights_request = verification_link_consume(token=link.token)
    assert rights_request.pk == waiting.pk
    assert rights_request.verified_at is not None and rights_request.status == Status.IN_PROGRESS
    verify = rights_request.events.get(kind=RequestEvent.Kind.VERIFY)
    assert verify.details == {"method": "email_link"}
    link.refresh_from_db()
    assert link.used_at is not None


def test_a_link_works_once(waiting, committed):
    with committed():
        link = verification_link_send(rights_request=waiting)
    verification_link_consume(token=link.token)
    with pytest.raises(VerificationError, match="already used"):
        verification_link_consume(token=link.token)


def test_an_expired_link_is_refused(waiting, committed):
    with committed():
        link = verification_link_send(rights_request=waiting)
    _age(waiting, settings.REQUEST_VERIFICATION_DAYS + 1)
    with pytest.raises(VerificationError, match="no longer works"):
        verification_link_consume(token=link.token)
    waiting.refresh_from_db()
    assert waiting.verified_at is None


def test_sending_again_ends_the_earlier_unused_links(waiting, committed, mailoutbox):
    with committed():
        first = verification_link_send(rights_request=waiting)
        second = verification_link_send(rights_request=waiting)
    assert "replaces the link we sent you before" in mailoutbox[1].body
    with pytest.raises(VerificationError, match="no longer works"):
        verification_link_consume(token=first.token)
    assert verification_link_consume(token=second.token).verified_at is not None


@pytest.mark.parametrize("token", ["", "not-a-token", "A" * 43])
def test_an_unknown_token_is_refused(waiting, committed, token):
    with committed():
        verification_link_send(rights_request=waiting)
    with pytest.raises(VerificationError, match="not valid"):
        verification_link_consume(token=token)


def test_the_stored_digest_is_not_a_working_token(waiting, committed):
    """A copy of the database holds no working link."""
    with committed():
        link = verification_link_send(rights_request=waiting)
    with pytest.raises(VerificationError):
        verification_link_consume(token=link.token_sha256)


def test_a_link_to_a_closed_request_is_refused(waiting, committed):
    with committed():
        link = verification_link_send(rights_request=waiting)
    services.rights_request_withdraw(rights_request=waiting)
    with pytest.raises(VerificationError, match="closed"):
        verification_link_consume(token=link.token)


def test_a_link_to_a_request_staff_verified_meanwhile_is_used_up_quietly(waiting, committed):
    with committed():
        link = verification_link_send(rights_request=waiting)
    services.rights_request_verify(rights_request=waiting, actor=StaffFactory(), method="document")
    rights_request = verification_link_consume(token=link.token)
    assert rights_request.status == Status.IN_PROGRESS
    assert rights_request.events.filter(kind=RequestEvent.Kind.VERIFY).count() == 1
    with pytest.raises(VerificationError, match="already used"):
        verification_link_consume(token=link.token)


def test_a_request_logged_by_staff_is_verified_end_to_end_through_the_portal(jurisdiction, client, committed, mailoutbox):
    staff = StaffFactory()
    with committed():
        rights_request = services.rights_request_submit(
            right=Right.ACCESS, contact_email="letter@example.org", jurisdiction=jurisdiction, channel="post", actor=staff
        )
        verification_link_send(rights_request=rights_request, actor=staff)
    token = _token_in(mailoutbox[-1])
    url = reverse("requests:verify", kwargs={"token": token})
    assert client.get(url).status_code == 200  # a GET (a mail scanner) uses nothing
    rights_request.refresh_from_db()
    assert rights_request.verified_at is None
    assert client.post(url).status_code == 200
    rights_request.refresh_from_db()
    assert rights_request.verified_at is not None and rights_request.status == Status.IN_PROGRESS
    assert client.post(url).status_code == 410


# --- Status links ---------------------------------------------------------------------------------------------


def test_status_token_names_its_request(waiting):
    assert request_for_status_token(status_token(waiting)) == waiting


def test_a_tampered_status_token_is_refused(waiting):
    token = status_token(waiting)
    other = RightsRequestFactory(jurisdiction=waiting.jurisdiction, subject=None)
    _, _, signature = token.partition(":")
    other_payload = signing.Signer(salt=STATUS_SALT).sign_object({"r": other.pk, "ref": other.reference}).partition(":")[0]
    forged = other_payload + ":" + signature
    for bad in (token[:-1] + ("A" if token[-1] != "A" else "B"), forged, token + "x"):
        with pytest.raises(VerificationError, match="not valid"):
            request_for_status_token(bad)


def test_a_token_signed_for_another_purpose_is_not_a_status_token(waiting):
    token = signing.Signer().sign_object({"r": waiting.pk, "ref": waiting.reference})  # default salt
    with pytest.raises(VerificationError):
        request_for_status_token(token)


def test_a_status_token_never_names_another_request_with_the_same_pk(waiting):
    """A deleted request's pk may come back (SQLite reuses the highest): the reference must match too."""
    token = signing.Signer(salt=STATUS_SALT).sign_object({"r": waiting.pk, "ref": "DSR-2020-000001"})
    with pytest.raises(VerificationError, match="no longer exists"):
        request_for_status_token(token)


def test_a_status_token_ends_with_its_request(waiting):
    token = status_token(waiting)
    waiting.delete()
    with pytest.raises(VerificationError, match="no longer exists"):
        request_for_status_token(token)


# --- The gate -------------------------------------------------------------------------------------------------


def test_pm_ix_9_nothing_leaves_before_verification(waiting):
    with pytest.raises(VerificationError, match="not verified"):
        require_verified(waiting)
    waiting.verified_at = timezone.now()
    require_verified(waiting)


def test_pm_xi_2_an_agents_request_also_needs_the_authority_checked(jurisdiction):
    rights_request = RightsRequestFactory(
        jurisdiction=jurisdiction, requester=Requester.AGENT, agent_name="Agent Ltd", verified_at=timezone.now()
    )
    with pytest.raises(VerificationError, match="agent"):
        require_verified(rights_request)
    rights_request.agent_verified_at = timezone.now()
    require_verified(rights_request)


# --- Closing unverified requests ------------------------------------------------------------------------------


def test_an_unverified_request_closes_after_the_configured_days_and_the_requester_is_told(waiting, committed, mailoutbox):
    with committed():
        verification_link_send(rights_request=waiting)
    _age(waiting, settings.REQUEST_UNVERIFIED_CLOSE_DAYS + 1)
    mailoutbox.clear()
    with committed():
        assert requests_close_unverified() == 1
    waiting.refresh_from_db()
    assert waiting.status == Status.UNVERIFIED and waiting.closed_at is not None
    move = waiting.events.get(kind=RequestEvent.Kind.MOVE, to_status=Status.UNVERIFIED)
    assert f"within {settings.REQUEST_UNVERIFIED_CLOSE_DAYS} days" in move.message
    assert waiting.events.filter(kind=RequestEvent.Kind.EMAIL, details__template="unverified").exists()
    assert AuditEvent.objects.filter(action="rights_request.moved", details__to_status=Status.UNVERIFIED).exists()
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["asker@example.org"]
    assert "nobody confirmed it" in mailoutbox[0].subject
    assert settings.DPO_EMAIL in mailoutbox[0].body


def test_closing_is_idempotent(waiting, committed, mailoutbox):
    _age(waiting, 20)
    with committed():
        assert requests_close_unverified() == 1
        assert requests_close_unverified() == 0
    assert len(mailoutbox) == 1


def test_a_request_younger_than_the_limit_stays_open(waiting):
    _age(waiting, settings.REQUEST_UNVERIFIED_CLOSE_DAYS - 1)
    assert requests_close_unverified() == 0
    waiting.refresh_from_db()
    assert waiting.status == Status.AWAITING_VERIFICATION


def test_now_moves_the_cutoff(waiting):
    assert requests_close_unverified(now=timezone.now() + timedelta(days=settings.REQUEST_UNVERIFIED_CLOSE_DAYS + 1)) == 1


def test_a_link_sent_again_recently_gives_the_request_its_full_time(waiting, committed):
    _age(waiting, 20)  # recorded long ago ...
    with committed():
        verification_link_send(rights_request=waiting)  # ... but asked again today
    assert requests_close_unverified() == 0


def test_verified_and_other_requests_are_left_alone(jurisdiction):
    verified = RightsRequestFactory(jurisdiction=jurisdiction, status=Status.IN_PROGRESS, verified_at=timezone.now())
    on_hold = RightsRequestFactory(
        jurisdiction=jurisdiction, status=Status.ON_HOLD, held_from=Status.AWAITING_VERIFICATION, hold_reason="verification"
    )
    for rights_request in (verified, on_hold):
        _age(rights_request, 30)
    assert requests_close_unverified() == 0


def test_a_received_request_never_sent_a_link_also_closes(jurisdiction, committed, mailoutbox):
    rights_request = RightsRequestFactory(jurisdiction=jurisdiction, subject=None, status=Status.RECEIVED)
    _age(rights_request, 20)
    with committed():
        assert requests_close_unverified() == 1
    rights_request.refresh_from_db()
    assert rights_request.status == Status.UNVERIFIED
    moves = list(rights_request.events.filter(kind=RequestEvent.Kind.MOVE).values_list("to_status", flat=True))
    assert moves == [Status.AWAITING_VERIFICATION, Status.UNVERIFIED]
    assert len(mailoutbox) == 1


def test_pm_viii_2_a_report_of_a_child_account_is_never_closed_as_unverified(jurisdiction, committed):
    from requests.models import Right

    report = RightsRequestFactory(jurisdiction=jurisdiction, right=Right.CHILD_REPORT, status=Status.AWAITING_VERIFICATION)
    _age(report, 30)
    with committed():
        assert requests_close_unverified() == 0
    report.refresh_from_db()
    assert report.status == Status.AWAITING_VERIFICATION


def test_the_beat_task_calls_it(waiting):
    from requests.tasks import unverified_requests_close

    _age(waiting, 20)
    assert unverified_requests_close() == 1


def test_links_in_emails_use_site_url_when_set(waiting, committed, mailoutbox, settings):
    settings.SITE_URL = "https://privacy.example.com/"
    with committed():
        link = verification_link_send(rights_request=waiting)
    assert f"https://privacy.example.com/requests/verify/{link.token}" in mailoutbox[0].body


def test_a_timestamped_token_with_our_salt_is_not_a_status_token(waiting):
    with pytest.raises(VerificationError, match="not valid"):
        request_for_status_token(signing.dumps({"r": waiting.pk, "ref": waiting.reference}, salt=STATUS_SALT))


def test_a_request_has_one_status_link_whenever_it_is_made(waiting):
    first = status_token(waiting)
    with mock.patch("time.time", return_value=time.time() + 3600):
        assert status_token(waiting) == first
