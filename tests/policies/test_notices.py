"""The notice run (PM-X-2): every account holder e-mailed once per policy version, in batches, resumably."""

import datetime
import smtplib
import threading
from collections import Counter

import pytest
from django.core import mail
from django.core.cache import cache
from django.core.mail.backends import locmem
from django.db import connection, connections
from django.utils import timezone

from policies.models import PolicyAcceptance, PolicyNoticeDelivery, PolicyVersion
from policies.notices import (
    CLAIM_STALE_AFTER,
    policy_notice_confirm,
    policy_notice_resend,
    policy_notices_send,
    policy_notices_unconfirmed,
)
from policies.services import policy_accept, policy_acknowledge, policy_version_publish
from policies.tasks import policy_notice_batches_send
from privacyops.models import AuditEvent
from tests.factories.accounts import StaffFactory, UserFactory
from tests.factories.consents import PolicyVersionFactory

pytestmark = pytest.mark.django_db

DAY = datetime.timedelta(days=1)
Status = PolicyNoticeDelivery.Status


class Crash(BaseException):
    """The worker dies (SIGKILL, OOM): nothing after this point runs, no `except Exception` catches it."""


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def baseline():
    """The version in force, whose notice run is long done."""
    at = timezone.now() - 200 * DAY
    return PolicyVersionFactory(label="2025-04-25", effective_at=at, published_at=at, notice_sent_at=at)


@pytest.fixture
def version(baseline):
    """A new version just published (the run not started: publication's on-commit task is not run here)."""
    return PolicyVersionFactory(
        label="2026-01-01",
        effective_at=timezone.now() + 40 * DAY,
        last_updated=datetime.date(2025, 12, 1),
        summary="We now keep access logs for 90 days instead of 180.",
        url="https://example.org/privacy/2026-01-01",
        published_at=timezone.now(),
    )


def _recipients(outbox=None) -> Counter:
    return Counter(address for message in (outbox if outbox is not None else mail.outbox) for address in message.to)


def _crash_after(monkeypatch, sends: int):
    """Let `sends` e-mails leave, then kill the run right after the last one left (before it is confirmed)."""
    original = locmem.EmailBackend.send_messages

    def send_messages(self, messages):
        if len(mail.outbox) >= sends:
            raise AssertionError("the run went on after it was killed")
        count = original(self, messages)
        if len(mail.outbox) == sends:
            raise Crash
        return count

    monkeypatch.setattr(locmem.EmailBackend, "send_messages", send_messages)
    return original


def _age(**lookup) -> None:
    """Make rows look as old as a run that died more than CLAIM_STALE_AFTER ago."""
    PolicyNoticeDelivery.objects.filter(**lookup).update(sent_at=timezone.now() - CLAIM_STALE_AFTER - DAY)


def test_pm_x_2_every_active_account_holder_gets_one_notice_in_batches(version, settings):
    settings.POLICY_NOTICE_BATCH_SIZE = 2
    holders = UserFactory.create_batch(5)
    StaffFactory()
    UserFactory(is_active=False)
    UserFactory(date_joined=timezone.now() - 10 * DAY, closed_at=timezone.now())

    sent = policy_notices_send()

    assert sent == 5
    assert _recipients() == {u.email: 1 for u in holders}
    assert set(PolicyNoticeDelivery.objects.values_list("status", flat=True)) == {Status.SENT}
    batches = AuditEvent.objects.filter(action="policy.notices_sent").order_by("id")
    assert [(e.details["claimed"], e.details["sent"]) for e in batches] == [(2, 2), (2, 2), (1, 1)]
    version.refresh_from_db()
    assert version.notice_sent_at is not None
    complete = AuditEvent.objects.get(action="policy.notices_complete")
    assert complete.details["sent"] == 5 and complete.details["sending"] == 0


def test_pm_x_2_a_second_run_sends_nothing(version):
    UserFactory.create_batch(3)
    policy_notices_send()
    first = len(mail.outbox)

    assert policy_notices_send() == 0
    PolicyVersion.objects.filter(pk=version.pk).update(notice_sent_at=None)  # even if the run were not marked done
    assert policy_notices_send() == 0

    assert len(mail.outbox) == first == 3


def test_pm_x_2_the_notice_says_what_changes_when_where_to_read_it_and_how_to_object(version, settings):
    subject = UserFactory(name="Ada Lovelace")

    policy_notices_send()

    (message,) = mail.outbox
    html, mime = message.alternatives[0]
    assert message.to == [subject.email] and mime == "text/html"
    assert "changes on" in message.subject and settings.CONTROLLER_NAME in message.subject
    for body in (message.body, html):
        assert "Ada Lovelace" in body
        assert "We now keep access logs for 90 days instead of 180." in body
        assert version.effective_at.strftime("%Y") in body and "2026-01-01" in body
        assert "https://example.org/privacy/2026-01-01" in body
        assert "close your account" in body and "object" in body
        assert settings.DPO_EMAIL in body
    assert message.extra_headers["Auto-Submitted"] == "auto-generated"


def test_pm_x_2_the_baseline_version_and_drafts_send_nothing(baseline):
    UserFactory.create_batch(2)
    PolicyVersionFactory(label="draft", effective_at=timezone.now() + 60 * DAY)

    assert policy_notices_send() == 0
    assert not mail.outbox and not PolicyNoticeDelivery.objects.exists()


def test_pm_x_2_subjects_who_already_read_the_version_get_no_email(version):
    acknowledged, signed_up, continued = UserFactory.create_batch(3)
    policy_acknowledge(user=acknowledged, version=version)
    policy_accept(subject=signed_up, version=version, method=PolicyAcceptance.Method.SIGNUP)
    policy_accept(subject=continued, version=version, method=PolicyAcceptance.Method.CONTINUED_USE)

    policy_notices_send()

    assert _recipients() == {continued.email: 1}  # continued use is no proof they read the change


def test_pm_x_2_publishing_queues_the_run_which_the_beat_task_also_calls(baseline, django_capture_on_commit_callbacks, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    UserFactory.create_batch(2)
    draft = PolicyVersionFactory(label="2026-02-01", effective_at=timezone.now() + 45 * DAY)

    with django_capture_on_commit_callbacks(execute=True):
        policy_version_publish(actor=None, version=draft)

    assert len(mail.outbox) == 2
    assert policy_notice_batches_send() == 0


def test_pm_x_2_a_run_killed_mid_batch_resumes_without_sending_anyone_twice(version, settings, monkeypatch):
    settings.POLICY_NOTICE_BATCH_SIZE = 3
    holders = UserFactory.create_batch(8)
    original = _crash_after(monkeypatch, sends=4)  # batch 1 done; batch 2 killed after its first e-mail left

    with pytest.raises(Crash):
        policy_notices_send()

    states = Counter(PolicyNoticeDelivery.objects.values_list("status", flat=True))
    assert states == {Status.SENT: 3, Status.SENDING: 1, Status.QUEUED: 2}
    assert PolicyVersion.objects.get(pk=version.pk).notice_sent_at is None
    monkeypatch.setattr(locmem.EmailBackend, "send_messages", original)

    # The next run sends to the accounts nobody claimed; the dead run's batch waits until it is stale.
    assert policy_notices_send() == 2
    assert PolicyVersion.objects.get(pk=version.pk).notice_sent_at is None
    _age(status__in=[Status.QUEUED, Status.SENDING])

    assert policy_notices_send() == 2  # the two queued ones: never attempted, so safe to send

    assert _recipients() == {u.email: 1 for u in holders}
    unconfirmed = policy_notices_unconfirmed(version=version)
    assert unconfirmed.count() == 1  # its e-mail did leave: reported, never resent
    assert PolicyVersion.objects.get(pk=version.pk).notice_sent_at is not None
    assert AuditEvent.objects.filter(action="policy.notices_sent").order_by("id").last().details["unconfirmed"] == 1


def test_pm_x_2_a_run_killed_between_the_claim_and_the_first_send_loses_nobody(version, settings, monkeypatch):
    settings.POLICY_NOTICE_BATCH_SIZE = 10
    holders = UserFactory.create_batch(3)

    def die(self):
        raise Crash

    monkeypatch.setattr(locmem.EmailBackend, "open", die, raising=False)
    with pytest.raises(Crash):
        policy_notices_send()
    monkeypatch.undo()
    assert Counter(PolicyNoticeDelivery.objects.values_list("status", flat=True)) == {Status.QUEUED: 3}

    _age(status=Status.QUEUED)
    policy_notices_send()

    assert _recipients() == {u.email: 1 for u in holders}
    assert not policy_notices_unconfirmed().exists()


def test_pm_x_2_a_refused_message_is_marked_failed_the_rest_released_and_the_run_stops(version, settings, monkeypatch):
    settings.POLICY_NOTICE_BATCH_SIZE = 5
    holders = UserFactory.create_batch(5)
    refused = holders[1]
    original = locmem.EmailBackend.send_messages

    def send_messages(self, messages):
        if messages[0].to == [refused.email]:
            raise smtplib.SMTPRecipientsRefused({refused.email: (550, b"no such mailbox")})
        return original(self, messages)

    monkeypatch.setattr(locmem.EmailBackend, "send_messages", send_messages)

    assert policy_notices_send() == 1
    assert PolicyNoticeDelivery.objects.get(user=refused).status == Status.FAILED
    assert PolicyNoticeDelivery.objects.count() == 2  # the three not attempted were handed back
    event = AuditEvent.objects.get(action="policy.notices_sent")
    assert (event.details["sent"], event.details["failed"], event.details["released"]) == (1, 1, 3)

    assert policy_notices_send() == 3

    assert _recipients() == {u.email: 1 for u in holders if u != refused}
    assert PolicyNoticeDelivery.objects.get(user=refused).status == Status.FAILED  # never retried on its own


def test_the_dpo_resends_or_confirms_an_unconfirmed_notice(version):
    dpo = StaffFactory()
    lost, delivered = UserFactory.create_batch(2)
    first = PolicyNoticeDelivery.objects.create(version=version, user=lost, status=Status.SENDING)
    second = PolicyNoticeDelivery.objects.create(version=version, user=delivered, status=Status.SENDING)

    policy_notice_resend(actor=dpo, delivery=first)
    policy_notice_confirm(actor=dpo, delivery=second)

    assert _recipients() == {lost.email: 1}
    assert set(PolicyNoticeDelivery.objects.values_list("status", flat=True)) == {Status.SENT}
    assert AuditEvent.objects.filter(action__in=["policy.notice_resent", "policy.notice_confirmed"]).count() == 2
    with pytest.raises(Exception, match="nothing to send again"):
        policy_notice_resend(actor=dpo, delivery=first)


def test_the_workbench_filters_unconfirmed_notices_and_the_dpo_sends_them_again(version, client, dpo):
    subject = UserFactory()
    delivery = PolicyNoticeDelivery.objects.create(version=version, user=subject, status=Status.SENDING)
    _age(pk=delivery.pk)
    url = "/admin/policies/policynoticedelivery/"

    listed = client.get(url, {"state": "unconfirmed"}).content.decode()
    response = client.post(url, {"action": "send_again", "_selected_action": [delivery.pk]})

    assert str(subject.subject_ref) in listed and "unconfirmed" in listed
    assert response.status_code == 302
    assert _recipients() == {subject.email: 1}


def test_an_analyst_cannot_send_notices_again(version, client):
    from tests.factories.inventory import staff_in_role

    client.force_login(staff_in_role("Privacy analyst"))
    delivery = PolicyNoticeDelivery.objects.create(version=version, user=UserFactory(), status=Status.SENDING)

    client.post("/admin/policies/policynoticedelivery/", {"action": "send_again", "_selected_action": [delivery.pk]})

    assert not mail.outbox and PolicyNoticeDelivery.objects.get().status == Status.SENDING


def test_max_batches_bounds_one_invocation(version, settings):
    settings.POLICY_NOTICE_BATCH_SIZE = 2
    UserFactory.create_batch(5)

    assert policy_notices_send(max_batches=1) == 2
    assert policy_notices_send() == 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_pm_x_2_concurrent_runs_never_send_twice_on_postgresql(settings):
    settings.POLICY_NOTICE_BATCH_SIZE = 3
    at = timezone.now() - 200 * DAY
    PolicyVersionFactory(label="2025-04-25", effective_at=at, published_at=at, notice_sent_at=at)
    version = PolicyVersionFactory(label="2026-01-01", effective_at=timezone.now() + 40 * DAY, published_at=timezone.now())
    holders = UserFactory.create_batch(40)
    start = threading.Barrier(4)
    totals, errors = [], []

    def run():
        try:
            start.wait()
            totals.append(policy_notices_send())
        except Exception as exc:  # reported below; a thread's exception would otherwise vanish
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    assert sum(totals) == 40
    assert _recipients() == {u.email: 1 for u in holders}
    assert PolicyNoticeDelivery.objects.filter(version=version, status=Status.SENT).count() == 40
    assert PolicyVersion.objects.get(pk=version.pk).notice_sent_at is not None
    assert connection.vendor == "postgresql"
