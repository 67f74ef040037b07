"""Erasure (issue 5 §4, PM-IX-2): one subject's rows across every registered store, through the retention
engine; holds keep rows (with their reasons), legal-duty records keep only the pseudonymous subject_ref; the
job resumes where a stopped worker left it; nothing happens before verification; the log outside the
database lets a restore from an older backup be erased again."""

import json
from pathlib import Path

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from accounts.models import SocialIdentity, User
from chat.models import AccessLog, Attachment, Conversation, Feedback, Message, SupportMessage, UsageEvent
from privacyops.audit import audit_record
from privacyops.models import AuditEvent
from privacyops.privacy import registry
from privacyops.privacy.strategies import REDACTED
from requests import erasure, services
from requests.models import JobStatus, RecipientNotice, RequestEvent, Right, RightsRequest, Status
from retention.models import LegalHold
from tests.factories.accounts import UserFactory
from tests.factories.chat import (
    AccessLogFactory,
    AttachmentFactory,
    ConversationFactory,
    FeedbackFactory,
    MessageFactory,
    SupportMessageFactory,
    UsageEventFactory,
)
from tests.factories.consents import ProcessingRestrictionFactory
from tests.factories.inventory import (
    DataCategoryFactory,
    DataStoreFactory,
    JurisdictionFactory,
    RecipientFactory,
    staff_with_permissions,
)
from tests.factories.requests import DeadlineRuleFactory

pytestmark = pytest.mark.django_db

CHAT = (Conversation, Message, Attachment, Feedback, SupportMessage, AccessLog, UsageEvent)


@pytest.fixture(autouse=True)
def erasure_log(settings, tmp_path):
    settings.ERASURE_LOG_PATH = str(tmp_path / "offsite" / "erasure-log.jsonl")
    return Path(settings.ERASURE_LOG_PATH)


@pytest.fixture
def register(db):
    codes = ("account-information", "user-content", "feedback", "communication-information", "log-data", "usage-data")
    categories = {code: DataCategoryFactory(code=code) for code in codes}
    stores = {
        code: DataStoreFactory(code=code, kind="django", app_label=code.removeprefix("django-")) for code in ("django-chat",)
    }
    return {"categories": categories, "stores": stores}


@pytest.fixture
def singapore():
    jurisdiction = JurisdictionFactory(code="SG", countries=["SG"], authority_name="PDPC")
    DeadlineRuleFactory(jurisdiction=jurisdiction, period_value=30, period_unit="calendar_days", citation="PDPA s 21")
    return jurisdiction


@pytest.fixture
def dpo(db):
    return staff_with_permissions("requests.approve_erasure_rightsrequest", "requests.approve_rightsrequest")


def _chat_data(user, *, conversations=2, messages=3):
    for _ in range(conversations):
        conversation = ConversationFactory(user=user)
        for _ in range(messages):
            message = MessageFactory(conversation=conversation)
        AttachmentFactory(message=message)
        FeedbackFactory(message=MessageFactory(conversation=conversation, role="assistant"))
    SupportMessageFactory(user=user)
    SupportMessageFactory(user=None, email=user.email.upper(), name="Same person, before signing up")
    AccessLogFactory.create_batch(4, user=user, ip_address="203.0.113.77")
    UsageEventFactory.create_batch(3, user=user)
    SocialIdentity.objects.create(user=user, provider="google", provider_uid=f"g-{user.pk}")


@pytest.fixture
def subject(register, singapore):
    user = UserFactory(country="SG", name="Alex Subject")
    _chat_data(user)
    audit_record(actor=None, action="test.subject_did_something", subject=user)
    return user


@pytest.fixture
def bystander(register, singapore):
    other = UserFactory(country="SG", name="Bea Bystander")
    _chat_data(other, conversations=1, messages=2)
    return other


def _snapshot(rows):
    return sorted(rows.values_list(*[f.attname for f in rows.model._meta.concrete_fields]))


def _approved_request(subject, dpo, **kwargs):
    rights_request = services.rights_request_submit(
        right=kwargs.pop("right", Right.ERASURE), contact_email=subject.email, subject=subject, verified=True, **kwargs
    )
    services.rights_request_move(rights_request=rights_request, to_status=Status.AWAITING_APPROVAL, actor=dpo)
    services.rights_request_approve(rights_request=rights_request, actor=dpo)
    rights_request.refresh_from_db()
    assert rights_request.job_status == JobStatus.QUEUED
    return rights_request


def _personal_rows_left(account_pk, subject_ref, email):
    """Rows of any registered model that still hold this subject's personal data, by label."""
    ghost = User(pk=account_pk, subject_ref=subject_ref, email=email)
    left = {}
    for decl in registry.personal():
        q = decl.subject_q(ghost)
        if q is None:
            continue
        action = erasure.model_action(decl)
        if action == erasure.KEEP:
            continue  # only RETAIN fields: the pseudonymous legal-duty records (audit trail, consent proof)
        rows = decl.model._base_manager.filter(q)
        if action == erasure.UPDATE:
            # Kept rows must carry nothing but RETAIN fields and the pseudonymous ref.
            rows = [r for r in rows if any(_personal_value(decl, r, name) for name in decl.fields)]
            if not rows:
                continue
            left[decl.label] = len(rows)
        elif rows.exists():
            left[decl.label] = rows.count()
    return left


def _personal_value(decl, row, name):
    from privacyops.privacy import Erase

    spec = decl.fields[name]
    if spec.erase == Erase.RETAIN:
        return False
    value = getattr(row, decl.model._meta.get_field(name).attname)
    if spec.erase == Erase.REDACT:
        return value not in ("", None, REDACTED)
    if spec.erase.value.startswith("generalise"):
        return False  # kept generalised by design
    return value not in ("", None, {}, [])


def test_pm_ix_2_erasure_leaves_no_personal_row_of_the_subject_and_touches_nobody_else(subject, bystander, dpo, erasure_log):
    pk, ref, email = subject.pk, subject.subject_ref, subject.email
    others = {model: _snapshot(model.objects.filter(**_owner(model, bystander))) for model in CHAT}
    rights_request = _approved_request(subject, dpo)
    audit_before = AuditEvent.objects.filter(subject_ref=ref).count()

    done = erasure.erasure_work(request_id=rights_request.pk)

    assert done.job_status == JobStatus.DONE, done.job_error
    assert done.status == Status.COMPLETED
    assert not User.objects.filter(pk=pk).exists()
    assert _personal_rows_left(pk, ref, email) == {}
    # What the law keeps stays, naming the subject only by the random reference.
    assert AuditEvent.objects.filter(subject_ref=ref).count() >= audit_before
    assert done.subject_id is None and done.subject_ref == ref
    assert done.contact_email == "" and done.details in ("", REDACTED)
    # Anonymised rows stay for statistics, cut from the person.
    assert AccessLog.objects.filter(user__isnull=True, ip_address="203.0.113.0").count() == 4
    assert not SupportMessage.objects.filter(email__iexact=email).exists()
    # Nobody else's rows changed.
    for model in CHAT:
        assert _snapshot(model.objects.filter(**_owner(model, bystander))) == others[model], model
    # The outcome per category.
    categories = done.job_result["categories"]
    assert categories["user-content"]["erased"] == 2 + 2 * 4 + 2  # conversations, messages, attachments
    assert categories["log-data"]["anonymised"] == 4
    assert categories["rights-request-records"]["legal_duty"] >= 1
    assert categories["audit-records"]["legal_duty"] >= 1
    assert "user-content" in done.outcome and "erased" in done.outcome


def _owner(model, user):
    decl = registry.get(model)
    return {decl.subject: user}


def test_the_subject_is_told_before_the_address_is_cleared_and_recipients_get_tasks(
    subject, dpo, register, django_capture_on_commit_callbacks
):
    email = subject.email
    processor = RecipientFactory(code="hosting", data_categories=[register["categories"]["user-content"]])
    rights_request = _approved_request(subject, dpo)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        done = erasure.erasure_work(request_id=rights_request.pk)
    recipients = [m.to for m in mail.outbox]
    subjects = [m.subject for m in mail.outbox]
    assert [email] in recipients
    assert any("erased" in s for s in subjects), subjects
    body = next(m.body for m in mail.outbox if "erased" in m.subject)
    assert "user-content" in body and email not in body
    assert all(to == [email] for to in recipients)  # nothing went to an empty address
    assert len(mail.outbox) == 1  # the outcome, once: no second "request completed" e-mail
    assert done.contact_email == ""
    # The timeline was redacted with the record: only event kinds and statuses remain.
    assert not RequestEvent.objects.filter(request=done).exclude(message__in=("", REDACTED)).exists()
    # Art. 19: the recipient of an affected category has a task.
    notice = RecipientNotice.objects.get(request=done, recipient=processor)
    assert "user-content" in notice.categories


def test_pm_ix_9_nothing_is_erased_before_verification(subject, dpo):
    rights_request = _approved_request(subject, dpo)
    RightsRequest.objects.filter(pk=rights_request.pk).update(verified_at=None)
    before = {model: model.objects.count() for model in CHAT}

    done = erasure.erasure_work(request_id=rights_request.pk)

    assert done.job_status == JobStatus.FAILED and "not verified" in done.job_error
    assert {model: model.objects.count() for model in CHAT} == before
    assert User.objects.filter(pk=subject.pk).exists()
    assert done.status == Status.FULFILLING


def test_pm_ix_2_a_hold_keeps_its_rows_and_the_outcome_gives_its_reason(subject, dpo, register):
    hold = LegalHold.objects.create(
        subject=subject, category=register["categories"]["user-content"], reason="Litigation about chat logs", reference="CLAIM-7"
    )
    messages = Message.objects.filter(conversation__user=subject).count()
    rights_request = _approved_request(subject, dpo)

    done = erasure.erasure_work(request_id=rights_request.pk)

    assert done.status == Status.PARTIALLY_COMPLETED, done.job_error
    assert Message.objects.filter(conversation__user=subject).count() == messages  # held: untouched
    assert User.objects.filter(pk=subject.pk).exists()  # the held rows need their account
    assert not AccessLog.objects.filter(user=subject).exists()  # other categories go
    listed = done.job_result["holds"]
    assert [(h["hold"], h["reason"]) for h in listed] == [(hold.pk, "Litigation about chat logs")]
    assert listed[0]["rows"]["chat.Message"] == messages
    assert done.job_result["categories"]["user-content"]["held"] >= messages
    assert "Litigation about chat logs" in done.outcome


def test_a_stopped_worker_is_continued_where_it_stopped(subject, dpo, settings):
    settings.ERASURE_BATCH_SIZE = 2
    rights_request = _approved_request(subject, dpo)

    stopped = erasure.erasure_work(request_id=rights_request.pk, max_batches=1)

    assert stopped.job_status == JobStatus.RUNNING
    position = stopped.job_result["position"]
    assert position["last_key"] is not None and stopped.job_result["batches"] == 1
    first_step = erasure.subject_steps(subject, exclude_request=rights_request.pk)[position["step"]][0]
    assert first_step.model._base_manager.count() >= 0  # the step exists
    log_lines = Path(settings.ERASURE_LOG_PATH).read_text().splitlines()
    assert len(log_lines) == 1

    for _ in range(200):  # more workers, one batch each, as leases run out
        current = erasure.erasure_work(request_id=rights_request.pk, max_batches=1)
        if current.job_status != JobStatus.RUNNING:
            break
    assert current.job_status == JobStatus.DONE, current.job_error
    assert current.status == Status.COMPLETED
    assert _personal_rows_left(subject.pk, subject.subject_ref, subject.email) == {}
    assert len(Path(settings.ERASURE_LOG_PATH).read_text().splitlines()) == 1  # logged once


def test_the_log_outside_the_database_holds_keyed_hashes_only(subject, dpo, erasure_log):
    rights_request = _approved_request(subject, dpo)
    erasure.erasure_work(request_id=rights_request.pk)
    entry = json.loads(erasure_log.read_text().splitlines()[0])
    assert entry["subject_ref"] == str(subject.subject_ref)
    assert entry["email_hmac"] == erasure.email_hash(subject.email) and subject.email not in erasure_log.read_text()
    assert entry["request"] == rights_request.reference
    assert timezone.datetime.fromisoformat(entry["erased_at"]).date() == timezone.now().date()


def _restore(rows):
    """What a backup taken before the erasure gives back: the same rows, keys and all."""
    for instance in rows:
        instance.save()  # an UPDATE where an anonymised row survived, an INSERT where it was deleted


def test_pm_ix_2_replay_after_a_restore_erases_again_and_is_idempotent(subject, dpo, bystander):
    backup = [User.objects.get(pk=subject.pk)]
    backup += list(SocialIdentity.objects.filter(user=subject))
    backup += list(Conversation.objects.filter(user=subject))
    backup += list(Message.objects.filter(conversation__user=subject))
    backup += list(AccessLog.objects.filter(user=subject))
    backup += list(SupportMessage.objects.filter(user=subject))
    rights_request = _approved_request(subject, dpo)
    since = timezone.now().date()
    assert erasure.erasure_work(request_id=rights_request.pk).job_status == JobStatus.DONE

    _restore(backup)
    assert Message.objects.filter(conversation__user_id=subject.pk).exists()

    report = erasure.erasures_replay(since=since)

    assert report["entries"] == 1 and report["replayed"] == 1 and report["not_found"] == 0
    assert not User.objects.filter(pk=subject.pk).exists()
    assert _personal_rows_left(subject.pk, subject.subject_ref, subject.email) == {}
    assert User.objects.filter(pk=bystander.pk).exists()
    again = erasure.erasures_replay(since=since)
    assert again["replayed"] == 0 and again["not_found"] == 1
    # A later start date skips it.
    assert erasure.erasures_replay(since=since + timezone.timedelta(days=1))["entries"] == 0


def test_replay_finds_a_restored_account_by_its_email_hash_when_the_ref_differs(subject, erasure_log):
    erasure.erasure_log_append(account=subject, reference="DSR-X")
    User.objects.filter(pk=subject.pk).update(subject_ref="6e0f3c1a-0000-4000-8000-000000000001")
    report = erasure.erasures_replay(since=timezone.now().date())
    assert report["replayed"] == 1
    assert not User.objects.filter(pk=subject.pk).exists()


def test_pm_viii_2_child_report_erases_the_reported_account_and_tells_the_reporter_nothing_of_its_contents(
    register, singapore, dpo, django_capture_on_commit_callbacks
):
    child = UserFactory(country="SG")
    _chat_data(child, conversations=1, messages=1)
    report = services.rights_request_submit(
        right=Right.CHILD_REPORT, contact_email="worried.parent@example.org", jurisdiction=singapore, channel="email"
    )
    RightsRequest.objects.filter(pk=report.pk).update(subject=child, subject_ref=child.subject_ref)
    report.refresh_from_db()
    services.rights_request_verify(rights_request=report, actor=dpo, method="document")
    services.rights_request_move(rights_request=report, to_status=Status.AWAITING_APPROVAL, actor=dpo)
    services.rights_request_approve(rights_request=report, actor=dpo)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        done = erasure.erasure_work(request_id=report.pk)
    assert done.status == Status.COMPLETED, done.job_error
    assert not User.objects.filter(pk=child.pk).exists()
    bodies = "\n".join(m.body for m in mail.outbox)
    assert all(m.to == ["worried.parent@example.org"] for m in mail.outbox)
    assert "user-content" not in bodies and "reported" in bodies


def test_restrictions_and_lifted_holds_go_with_the_account_an_active_hold_does_not(subject, dpo, register):
    ProcessingRestrictionFactory(subject=subject)
    lifted = LegalHold.objects.create(
        subject=subject,
        category=register["categories"]["log-data"],
        reason="Old claim",
        reference="OLD-1",
        placed_at=timezone.now() - timezone.timedelta(days=9),
        lifted_at=timezone.now(),
    )
    rights_request = _approved_request(subject, dpo)
    done = erasure.erasure_work(request_id=rights_request.pk)
    assert done.job_status == JobStatus.DONE, done.job_error
    lifted.refresh_from_db()
    assert lifted.subject_id is None and lifted.reason == "Old claim"
    assert not User.objects.filter(pk=subject.pk).exists()


def test_preview_counts_what_the_erasure_then_does(subject, dpo):
    preview = {row["category"]: row for row in erasure.erasure_preview(subject=subject)}
    assert User.objects.filter(pk=subject.pk).exists()  # a preview changes nothing
    assert Message.objects.filter(conversation__user=subject).exists()
    rights_request = _approved_request(subject, dpo)
    done = erasure.erasure_work(request_id=rights_request.pk)
    for code in ("user-content", "log-data", "usage-data", "feedback", "communication-information", "account-information"):
        after = done.job_result["categories"][code]
        assert (preview[code]["erased"], preview[code]["anonymised"]) == (after["erased"], after["anonymised"]), code


@pytest.mark.postgres
def test_request_timeline_is_redacted_through_the_append_only_trigger(subject, dpo):
    assert connection.vendor == "postgresql"
    older = services.rights_request_submit(right=Right.ACCESS, contact_email=subject.email, subject=subject, verified=True)
    services.rights_request_note(rights_request=older, actor=dpo, message="Called Alex Subject on +65 1234")
    rights_request = _approved_request(subject, dpo)
    done = erasure.erasure_work(request_id=rights_request.pk)
    assert done.job_status == JobStatus.DONE, done.job_error
    assert not RequestEvent.objects.filter(request=older, message__contains="Alex").exists()
