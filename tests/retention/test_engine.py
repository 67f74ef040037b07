"""The purge engine end to end on chat data (POLICY-MAP VI-1, VI-2, VI-4). Runs on SQLite and PostgreSQL."""

import os
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from chat.models import AccessLog, Attachment, Conversation, Feedback, Message, UsageEvent
from privacyops.models import AuditEvent
from retention import engine
from retention.engine import children_first, purge_run_work
from retention.models import PurgeRun
from retention.selectors import rule_models
from retention.services import purge_run_start
from tests.factories.accounts import UserFactory
from tests.factories.chat import (
    AccessLogFactory,
    AttachmentFactory,
    ConversationFactory,
    FeedbackFactory,
    MessageFactory,
    UsageEventFactory,
)

from .conftest import days_ago, run_inline

pytestmark = pytest.mark.django_db

OLD, NEW = 60, 5  # days: past and within a P30D period


def content_world():
    """Conversations whose rows are old, new or mixed; returns the rows a P30D created rule must keep."""
    old_conv = ConversationFactory(created=days_ago(OLD))
    old_msg = MessageFactory(conversation=old_conv, created=days_ago(OLD))
    old_att = AttachmentFactory(message=old_msg, created=days_ago(OLD))

    mixed_conv = ConversationFactory(created=days_ago(OLD))
    mixed_old_msg = MessageFactory(conversation=mixed_conv, created=days_ago(OLD))
    mixed_new_msg = MessageFactory(conversation=mixed_conv, created=days_ago(NEW))

    kept_by_attachment = MessageFactory(conversation=ConversationFactory(created=days_ago(OLD)), created=days_ago(OLD))
    new_att = AttachmentFactory(message=kept_by_attachment, created=days_ago(NEW))

    new_conv = ConversationFactory(created=days_ago(NEW))
    new_msg = MessageFactory(conversation=new_conv, created=days_ago(NEW))
    return {
        "gone": {Conversation: {old_conv.pk}, Message: {old_msg.pk, mixed_old_msg.pk}, Attachment: {old_att.pk}},
        "kept": {
            Conversation: {mixed_conv.pk, kept_by_attachment.conversation_id, new_conv.pk},
            Message: {mixed_new_msg.pk, kept_by_attachment.pk, new_msg.pk},
            Attachment: {new_att.pk},
        },
        "old_att": old_att,
    }


def test_pm_vi_4_plan_walks_children_before_parents(make_rule):
    rule = make_rule("user-content")
    labels = [d.label for d in children_first(rule_models(rule))]
    assert labels == ["chat.Attachment", "chat.Message", "chat.Conversation"]


@pytest.mark.django_db(transaction=True)
def test_pm_vi_4_delete_goes_children_first_and_keeps_parents_of_kept_rows(make_rule):
    world = content_world()
    run = run_inline(make_rule("user-content"), batch_size=2)

    assert run.status == PurgeRun.Status.COMPLETED, run.error
    for model in (Conversation, Message, Attachment):
        remaining = set(model.objects.values_list("pk", flat=True))
        assert remaining == world["kept"][model], model
    assert run.counts["chat.Attachment"] == {"matched": 1, "held": 0, "kept": 0, "deleted": 1, "anonymised": 0}
    # the message with a new attachment is expired but kept for its child
    assert run.counts["chat.Message"] == {"matched": 3, "held": 0, "kept": 1, "deleted": 2, "anonymised": 0}
    assert run.counts["chat.Conversation"] == {"matched": 3, "held": 0, "kept": 2, "deleted": 1, "anonymised": 0}
    run.rule.refresh_from_db()
    assert run.rule.last_run_at is not None


@pytest.mark.django_db(transaction=True)
def test_pm_vi_4_attachment_files_leave_storage_after_the_batch_commits(make_rule):
    world = content_world()
    old_path = world["old_att"].file.path
    assert os.path.exists(old_path)
    kept_paths = [a.file.path for a in Attachment.objects.all() if a.pk != world["old_att"].pk]

    run_inline(make_rule("user-content"))

    assert not os.path.exists(old_path)
    assert all(os.path.exists(p) for p in kept_paths)


def test_pm_vi_4_files_are_removed_only_on_commit_and_a_missing_file_is_fine(make_rule, django_capture_on_commit_callbacks):
    old = AttachmentFactory(message=MessageFactory(created=days_ago(OLD)), created=days_ago(OLD))
    missing = AttachmentFactory(message=MessageFactory(created=days_ago(OLD)), created=days_ago(OLD))
    os.remove(missing.file.path)
    with django_capture_on_commit_callbacks() as callbacks:
        run = run_inline(make_rule("user-content"))
    assert run.counts["chat.Attachment"]["deleted"] == 2
    assert os.path.exists(old.file.path), "removed before the batch committed"
    for callback in callbacks:
        callback()
    assert not os.path.exists(old.file.path)


def test_pm_vi_4_dry_run_counts_equal_the_real_run_and_change_nothing(make_rule):
    content_world()
    rule = make_rule("user-content")
    before = {m: set(m.objects.values_list("pk", flat=True)) for m in (Conversation, Message, Attachment)}
    batches_before = AuditEvent.objects.filter(action="retention.batch").count()

    preview = run_inline(rule, dry_run=True, batch_size=1)

    assert preview.status == PurgeRun.Status.COMPLETED
    assert {m: set(m.objects.values_list("pk", flat=True)) for m in before} == before
    assert AuditEvent.objects.filter(action="retention.batch").count() == batches_before
    rule.refresh_from_db()
    assert rule.last_run_at is None

    real = run_inline(rule, batch_size=1)
    assert real.counts == preview.counts
    assert sum(c["deleted"] for c in real.counts.values()) == 4


def test_pm_vi_4_set_null_child_outside_the_plan_loses_its_link_not_its_row(make_rule):
    feedback = FeedbackFactory(message=MessageFactory(created=days_ago(OLD), role="assistant"), created=days_ago(NEW))
    message_pk = feedback.message_id
    run = run_inline(make_rule("user-content"))
    assert not Message.objects.filter(pk=message_pk).exists()
    feedback.refresh_from_db()
    assert feedback.message_id is None
    assert feedback.comment  # untouched otherwise
    assert run.counts["chat.Message"]["deleted"] == 1


def test_pm_vi_4_every_batch_writes_progress_and_one_audit_event_without_personal_data(make_rule):
    logs = [AccessLogFactory(created=days_ago(OLD)) for _ in range(5)]
    run = run_inline(make_rule("log-data"), batch_size=2)
    assert run.batches_done == 3
    assert run.counts["chat.AccessLog"]["deleted"] == 5
    events = list(AuditEvent.objects.filter(action="retention.batch", target_id=str(run.pk)).order_by("id"))
    assert len(events) == 3
    assert [e.details["counts"]["deleted"] for e in events] == [2, 2, 1]
    text = " ".join(str(e.details) for e in events)
    for log in logs:
        assert log.ip_address not in text and log.user.email not in text
    actions = list(AuditEvent.objects.filter(target_id=str(run.pk)).values_list("action", flat=True).order_by("id"))
    assert actions[0] == "retention.run_requested" and actions[1] == "retention.run_started"
    assert actions[-1] == "retention.run_completed"
    assert run.lease_owner == "" and run.lease_expires_at is None and run.finished_at is not None


def test_pm_vi_4_anonymise_cuts_the_link_generalises_and_is_idempotent(make_rule):
    old = UsageEventFactory(created=days_ago(500), country="SG", time_zone="Asia/Singapore")
    new = UsageEventFactory(created=days_ago(30))
    rule = make_rule("usage-data", period="P13M", action="anonymise")

    run = run_inline(rule)

    assert run.counts["chat.UsageEvent"] == {"matched": 1, "held": 0, "kept": 0, "deleted": 0, "anonymised": 1}
    old.refresh_from_db()
    new.refresh_from_db()
    assert old.user_id is None and old.anonymised_at is not None
    assert old.time_zone == "" and old.user_agent == "" and old.country == "SG"
    assert old.event_type  # not personal: kept for statistics
    assert new.user_id is not None and new.anonymised_at is None
    again = run_inline(rule)
    assert again.counts["chat.UsageEvent"]["matched"] == 0 and again.counts["chat.UsageEvent"]["anonymised"] == 0


def test_pm_vi_4_anonymise_generalises_ip_addresses_in_the_database(make_rule):
    log = AccessLogFactory(created=days_ago(OLD), ip_address="203.0.113.77", device_id="dev-1")
    run_inline(make_rule("log-data", action="anonymise"))
    log.refresh_from_db()
    assert log.ip_address == "203.0.113.0"
    assert log.device_id == "" and log.user_id is None


def test_pm_vi_2_account_closure_rule_keeps_content_of_open_accounts(make_rule):
    closed = UserFactory(date_joined=days_ago(1000), closed_at=days_ago(45))
    recently_closed = UserFactory(date_joined=days_ago(1000), closed_at=days_ago(10))
    open_account = UserFactory(date_joined=days_ago(1000))
    rows = {
        u: MessageFactory(conversation=ConversationFactory(user=u, created=days_ago(900)), created=days_ago(900))
        for u in (closed, recently_closed, open_account)
    }

    run = run_inline(make_rule("user-content", counts_from="account_closure"))

    assert not Message.objects.filter(pk=rows[closed].pk).exists()
    assert Message.objects.filter(pk__in=[rows[recently_closed].pk, rows[open_account].pk]).count() == 2
    assert run.counts["chat.Conversation"]["deleted"] == 1


def test_pm_vi_1_last_activity_rule_counts_from_activity_or_sign_up(make_rule):
    idle = UserFactory(last_activity_at=days_ago(400))
    active = UserFactory(last_activity_at=days_ago(3))
    never_active = UserFactory(date_joined=days_ago(400))
    never_active_new = UserFactory(date_joined=days_ago(3))
    anonymous_old = AccessLogFactory(user=None, created=days_ago(400))
    anonymous_new = AccessLogFactory(user=None, created=days_ago(3))
    logs = {u: AccessLogFactory(user=u, created=days_ago(1)) for u in (idle, active, never_active, never_active_new)}

    run_inline(make_rule("log-data", counts_from="last_activity", period="P1Y"))

    remaining = set(AccessLog.objects.values_list("pk", flat=True))
    assert remaining == {logs[active].pk, logs[never_active_new].pk, anonymous_new.pk}
    assert anonymous_old.pk not in remaining


def test_pm_vi_1_timestamp_rule_walks_only_models_declaring_the_field(make_rule):
    rule = make_rule("user-content", counts_from="timestamp", timestamp_field="updated")
    assert [d.label for d in rule_models(rule)] == ["chat.Conversation"]
    stale = ConversationFactory(created=days_ago(OLD), updated=days_ago(OLD))
    fresh = ConversationFactory(created=days_ago(OLD), updated=days_ago(NEW))
    run_inline(rule)
    assert set(Conversation.objects.values_list("pk", flat=True)) == {fresh.pk}
    assert stale.pk not in set(Conversation.objects.values_list("pk", flat=True))


def test_pm_vi_1_store_specific_rule_wins_over_the_category_wide_one(make_rule):
    wide = make_rule("user-content", code="content-everywhere")
    assert "chat.Message" in [d.label for d in rule_models(wide)]
    make_rule("user-content", code="content-in-chat", store="django-chat")
    assert [d.label for d in rule_models(wide) if d.store_code == "django-chat"] == []


def test_pm_vi_4_a_run_resumes_from_its_recorded_key_after_the_lease_expires(make_rule):
    logs = [AccessLogFactory(created=days_ago(OLD)) for _ in range(7)]
    keep = AccessLogFactory(created=days_ago(NEW))
    rule = make_rule("log-data")
    expected = run_inline(rule, dry_run=True, batch_size=2).counts

    run = purge_run_start(rule=rule, batch_size=2, enqueue=False)
    first = purge_run_work(run.pk, worker="worker-a", max_batches=1)
    assert first.batches_done == 1 and first.position["last_key"] == logs[1].pk
    # worker-a dies holding a live lease
    PurgeRun.objects.filter(pk=run.pk).update(lease_owner="worker-a", lease_expires_at=timezone.now() + timedelta(minutes=5))
    blocked = purge_run_work(run.pk, worker="worker-b")
    assert blocked.batches_done == 1 and blocked.status == PurgeRun.Status.RUNNING

    PurgeRun.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    done = purge_run_work(run.pk, worker="worker-b")

    assert done.status == PurgeRun.Status.COMPLETED
    assert done.attempts == 2
    assert done.counts == expected
    assert list(AccessLog.objects.values_list("pk", flat=True)) == [keep.pk]


def test_pm_vi_4_redoing_a_committed_batch_changes_nothing(make_rule):
    """A worker killed after its batch committed but before it reported: the same range again is harmless."""
    for _ in range(4):
        UsageEventFactory(created=days_ago(500))
    run = purge_run_start(rule=make_rule("usage-data", period="P13M", action="anonymise"), batch_size=2, enqueue=False)
    purge_run_work(run.pk, worker="a", max_batches=1)
    PurgeRun.objects.filter(pk=run.pk).update(position={**run.position, "last_key": None})
    done = purge_run_work(run.pk, worker="b")
    assert done.counts["chat.UsageEvent"]["anonymised"] == 4
    assert UsageEvent.objects.filter(anonymised_at__isnull=True).count() == 0


def test_pm_vi_4_a_failing_batch_rolls_back_alone_and_fails_the_run(make_rule, monkeypatch):
    for _ in range(4):
        AccessLogFactory(created=days_ago(OLD))
    real_batch = engine._batch
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        result = real_batch(*args, **kwargs)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return result

    monkeypatch.setattr(engine, "_batch", flaky)
    run = run_inline(make_rule("log-data"), batch_size=2)

    assert run.status == PurgeRun.Status.FAILED
    assert "disk on fire" in run.error
    assert run.batches_done == 1 and run.counts["chat.AccessLog"]["deleted"] == 2
    assert AccessLog.objects.count() == 2  # the second batch's delete was rolled back
    assert AuditEvent.objects.filter(action="retention.run_failed", target_id=str(run.pk)).exists()


def _per_call_queries(n: int, rule) -> list[int]:
    user = UserFactory()
    for _ in range(n):
        conversation = ConversationFactory(user=user, created=days_ago(OLD))
        message = MessageFactory(conversation=conversation, created=days_ago(OLD), role="assistant")
        AttachmentFactory(message=message, created=days_ago(OLD))
        FeedbackFactory(message=message, user=user, created=days_ago(NEW))
    run = purge_run_start(rule=rule, batch_size=n, enqueue=False)
    counts = []
    while True:
        with CaptureQueriesContext(connection) as queries:
            run = purge_run_work(run.pk, worker="w", max_batches=1)
        counts.append(len(queries))
        if run.is_finished:
            return counts


def test_pm_vi_4_queries_per_batch_do_not_grow_with_batch_size(make_rule):
    rule = make_rule("user-content")
    small = _per_call_queries(3, rule)
    Conversation.objects.all().delete()
    User.objects.filter(is_staff=False).delete()
    large = _per_call_queries(40, rule)
    assert small == large
    assert Message.objects.count() == 0 and Feedback.objects.filter(message__isnull=False).count() == 0


def test_pm_vi_4_another_workers_live_lease_is_respected(make_rule):
    AccessLogFactory(created=days_ago(OLD))
    run = purge_run_start(rule=make_rule("log-data"), enqueue=False)
    PurgeRun.objects.filter(pk=run.pk).update(
        status=PurgeRun.Status.RUNNING, lease_owner="other", lease_expires_at=timezone.now() + timedelta(minutes=1)
    )
    result = purge_run_work(run.pk, worker="me")
    assert result.lease_owner == "other" and result.batches_done == 0
    assert AccessLog.objects.count() == 1


def test_pm_vi_4_a_worker_whose_lease_was_taken_stops_at_its_next_batch_without_writing(make_rule, monkeypatch):
    AccessLog.objects.bulk_create(AccessLog(created=days_ago(OLD)) for _ in range(8))
    run = purge_run_start(rule=make_rule("log-data"), batch_size=2, enqueue=False)
    real_batch = engine._batch
    calls = []

    def paused_past_its_lease(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # meanwhile another worker found the lease expired and took the run
            until = timezone.now() + timedelta(minutes=1)
            PurgeRun.objects.filter(pk=run.pk).update(lease_owner="thief:1", lease_expires_at=until)
        return real_batch(*args, **kwargs)

    monkeypatch.setattr(engine, "_batch", paused_past_its_lease)
    stopped = purge_run_work(run.pk, worker="slow")

    assert len(calls) == 2 and stopped.batches_done == 2  # the third batch never ran
    assert stopped.lease_owner == "thief:1" and stopped.status == PurgeRun.Status.RUNNING
    assert AccessLog.objects.count() == 4


def test_pm_vi_4_every_claim_has_an_owner_of_its_own(make_rule, monkeypatch):
    AccessLog.objects.bulk_create(AccessLog(created=days_ago(OLD)) for _ in range(4))
    run = purge_run_start(rule=make_rule("log-data"), batch_size=2, enqueue=False)
    owners = []
    real_take = engine._take_lease

    def record(*args, **kwargs):
        taken = real_take(*args, **kwargs)
        owners.append(taken[1].owner)
        return taken

    monkeypatch.setattr(engine, "_take_lease", record)
    purge_run_work(run.pk, worker="w", max_batches=1)
    purge_run_work(run.pk, worker="w")
    assert len(owners) == 2 and owners[0] != owners[1] and all(o.startswith("w:") for o in owners)


def test_pm_vi_4_a_large_batch_is_written_by_key_in_one_statement(make_rule):
    AccessLog.objects.bulk_create(AccessLog(ip_address="192.0.2.1", created=days_ago(OLD)) for _ in range(3000))
    run = purge_run_start(rule=make_rule("log-data"), batch_size=3000, enqueue=False)
    with CaptureQueriesContext(connection) as queries:
        done = purge_run_work(run.pk, worker="w")
    assert done.status == PurgeRun.Status.COMPLETED and done.batches_done == 1
    assert done.counts["chat.AccessLog"]["deleted"] == 3000 and AccessLog.objects.count() == 0
    deletes = [q["sql"] for q in queries if q["sql"].startswith('DELETE FROM "chat_accesslog"')]
    assert len(deletes) == 1


def test_pm_vi_4_a_cancelled_run_stops_at_its_next_batch(make_rule):
    from retention.services import purge_run_cancel

    AccessLog.objects.bulk_create(AccessLog(created=days_ago(OLD)) for _ in range(4))
    run = purge_run_start(rule=make_rule("log-data"), batch_size=2, enqueue=False)
    purge_run_work(run.pk, worker="w", max_batches=1)
    purge_run_cancel(run=run, actor=None)
    after = purge_run_work(run.pk, worker="w")
    assert after.status == PurgeRun.Status.CANCELLED and after.batches_done == 1
    assert AccessLog.objects.count() == 2
    assert AuditEvent.objects.filter(action="retention.run_cancelled", target_id=str(run.pk)).exists()
    assert purge_run_start(rule=run.rule, enqueue=False).status == PurgeRun.Status.QUEUED  # a new run may start
