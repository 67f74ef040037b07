"""Legal holds: what they keep, that they win over every rule, and who may place and lift them (PM-VI-3)."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from chat.models import AccessLog, Conversation, Feedback, Message, SupportMessage, UsageEvent
from privacyops.models import AuditEvent
from retention.engine import purge_run_work
from retention.selectors import active_holds, hold_kept_counts
from retention.services import hold_lift, hold_place, purge_run_start
from tests.factories.accounts import UserFactory
from tests.factories.chat import (
    AccessLogFactory,
    ConversationFactory,
    FeedbackFactory,
    MessageFactory,
    SupportMessageFactory,
    UsageEventFactory,
)
from tests.factories.inventory import staff_in_role

from .conftest import days_ago, run_inline

pytestmark = pytest.mark.django_db

OLD = 60


def place(**scope):
    return hold_place(actor=None, reason="Claim pending", reference="CASE-1", **scope)


def test_pm_vi_3_subject_hold_keeps_that_subjects_rows_only(make_rule):
    held_user, other = UserFactory(), UserFactory()
    held = AccessLogFactory(user=held_user, created=days_ago(OLD))
    AccessLogFactory(user=other, created=days_ago(OLD))
    place(subject=held_user)

    run = run_inline(make_rule("log-data"))

    assert list(AccessLog.objects.values_list("pk", flat=True)) == [held.pk]
    assert run.counts["chat.AccessLog"] == {"matched": 2, "held": 1, "kept": 0, "deleted": 1, "anonymised": 0}


def test_pm_vi_3_category_hold_keeps_the_category_and_nothing_else(make_rule, register):
    rule = make_rule("log-data")
    AccessLogFactory(created=days_ago(OLD))
    place(category=register["categories"]["user-content"])
    run_inline(rule)
    assert AccessLog.objects.count() == 0

    AccessLogFactory(created=days_ago(OLD))
    place(category=register["categories"]["log-data"])
    run = run_inline(rule)
    assert AccessLog.objects.count() == 1
    assert run.counts["chat.AccessLog"]["held"] == 1


def test_pm_vi_3_store_hold_keeps_every_row_in_the_store(make_rule, register):
    rule = make_rule("log-data")
    AccessLogFactory(created=days_ago(OLD))
    place(store=register["stores"]["django-accounts"])
    run_inline(rule)
    assert AccessLog.objects.count() == 0

    AccessLogFactory(created=days_ago(OLD))
    place(store=register["stores"]["django-chat"])
    run = run_inline(rule)
    assert AccessLog.objects.count() == 1
    assert run.counts["chat.AccessLog"]["held"] == 1


def test_pm_vi_3_scopes_combine_subject_and_category(make_rule, register):
    user = UserFactory()
    log = AccessLogFactory(user=user, created=days_ago(OLD))
    message = MessageFactory(conversation=ConversationFactory(user=user, created=days_ago(OLD)), created=days_ago(OLD))
    place(subject=user, category=register["categories"]["user-content"])

    run_inline(make_rule("log-data"))
    run_inline(make_rule("user-content"))

    assert not AccessLog.objects.filter(pk=log.pk).exists()
    assert Message.objects.filter(pk=message.pk).exists()


def test_pm_vi_3_subject_hold_reaches_rows_found_by_identifier(make_rule):
    user = UserFactory(email="held.person@example.org")
    by_email = SupportMessageFactory(user=None, email="Held.Person@Example.org", created=days_ago(OLD))
    stranger = SupportMessageFactory(user=None, email="someone@example.org", created=days_ago(OLD))
    place(subject=user)

    run = run_inline(make_rule("communication-information"))

    assert SupportMessage.objects.filter(pk=by_email.pk).exists()
    assert not SupportMessage.objects.filter(pk=stranger.pk).exists()
    assert run.counts["chat.SupportMessage"]["held"] == 1


def test_pm_vi_3_held_set_null_child_keeps_its_parent_unchanged(make_rule, register):
    """A held feedback is never changed, not even by the set-null of its message's delete: the message stays."""
    user = UserFactory()
    conversation = ConversationFactory(user=user, created=days_ago(OLD))
    message = MessageFactory(conversation=conversation, created=days_ago(OLD), role="assistant")
    feedback = FeedbackFactory(message=message, user=user, created=days_ago(OLD))
    place(subject=user, category=register["categories"]["feedback"])

    rule = make_rule("user-content")
    preview = run_inline(rule, dry_run=True)
    run = run_inline(rule)

    assert Message.objects.filter(pk=message.pk).exists()
    assert Conversation.objects.filter(pk=conversation.pk).exists()
    feedback.refresh_from_db()
    assert feedback.message_id == message.pk
    assert run.counts["chat.Message"] == {"matched": 1, "held": 0, "kept": 1, "deleted": 0, "anonymised": 0}
    assert run.counts["chat.Conversation"]["kept"] == 1
    assert preview.counts == run.counts


def test_pm_vi_3_held_rows_are_not_anonymised(make_rule):
    user = UserFactory()
    held = UsageEventFactory(user=user, created=days_ago(500), time_zone="Asia/Singapore")
    free = UsageEventFactory(created=days_ago(500))
    place(subject=user)

    run_inline(make_rule("usage-data", period="P13M", action="anonymise"))

    held.refresh_from_db()
    free.refresh_from_db()
    assert held.user_id == user.pk and held.anonymised_at is None and held.time_zone == "Asia/Singapore"
    assert free.user_id is None and free.anonymised_at is not None


def test_pm_vi_3_hold_placed_mid_run_counts_from_the_next_batch(make_rule):
    first_user, late_user = UserFactory(), UserFactory()
    early = [AccessLogFactory(user=first_user, created=days_ago(OLD)) for _ in range(2)]
    late = [AccessLogFactory(user=late_user, created=days_ago(OLD)) for _ in range(2)]
    run = purge_run_start(rule=make_rule("log-data"), batch_size=2, enqueue=False)

    purge_run_work(run.pk, worker="w", max_batches=1)
    assert not AccessLog.objects.filter(pk__in=[r.pk for r in early]).exists()
    place(subject=late_user)
    done = purge_run_work(run.pk, worker="w")

    assert set(AccessLog.objects.values_list("pk", flat=True)) == {r.pk for r in late}
    assert done.counts["chat.AccessLog"] == {"matched": 4, "held": 2, "kept": 0, "deleted": 2, "anonymised": 0}


def test_pm_vi_3_a_lifted_hold_keeps_nothing(make_rule):
    user = UserFactory()
    AccessLogFactory(user=user, created=days_ago(OLD))
    hold = place(subject=user)
    hold_lift(hold=hold, actor=None, reason="Case closed")
    assert hold not in active_holds()
    run_inline(make_rule("log-data"))
    assert AccessLog.objects.count() == 0


def test_pm_vi_3_placing_a_hold_is_audited_with_the_subject_ref_only():
    user = UserFactory(email="private.person@example.org")
    dpo = staff_in_role("DPO")
    hold = hold_place(actor=dpo, subject=user, reason="Litigation", reference="COURT-42")
    event = AuditEvent.objects.get(action="retention.hold_placed")
    assert event.subject_ref == user.subject_ref
    assert event.target_id == str(hold.pk) and event.actor_id == dpo.pk
    assert event.details["reference"] == "COURT-42"
    assert "private.person" not in str(event.details)


def test_pm_vi_3_a_hold_needs_a_scope():
    with pytest.raises(ValidationError):
        hold_place(actor=None, reason="x", reference="y")


def test_pm_vi_3_only_a_dpo_lifts_a_hold(register):
    hold = place(category=register["categories"]["log-data"])
    analyst = staff_in_role("Privacy analyst")
    with pytest.raises(PermissionDenied):
        hold_lift(hold=hold, actor=analyst)
    hold.refresh_from_db()
    assert hold.is_active

    dpo = staff_in_role("DPO")
    hold_lift(hold=hold, actor=dpo, reason="Settled")
    hold.refresh_from_db()
    assert not hold.is_active and hold.lifted_by == dpo and hold.lift_reason == "Settled"
    assert AuditEvent.objects.filter(action="retention.hold_lifted", target_id=str(hold.pk)).exists()
    with pytest.raises(ValidationError):
        hold_lift(hold=hold, actor=dpo)


def test_pm_vi_3_hold_kept_counts_per_model(register):
    user = UserFactory()
    AccessLogFactory.create_batch(2, user=user)
    MessageFactory(conversation=ConversationFactory(user=user))
    SupportMessageFactory(user=None, email=user.email)
    AccessLogFactory()  # someone else's

    counts = hold_kept_counts(place(subject=user))
    assert counts["chat.AccessLog"] == 2
    assert counts["chat.Message"] == 1 and counts["chat.Conversation"] == 1
    assert counts["chat.SupportMessage"] == 1
    assert counts["accounts.User"] == 1

    by_category = hold_kept_counts(place(category=register["categories"]["log-data"]))
    assert by_category["chat.AccessLog"] == 3
    assert "chat.Message" not in by_category and "accounts.User" not in by_category

    assert Feedback.objects.count() == 0 and UsageEvent.objects.count() == 0


def test_pm_vi_3_the_hold_check_is_an_anti_join_inside_the_batch_query(make_rule):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    user = UserFactory()
    AccessLogFactory(user=user, created=days_ago(OLD))
    place(subject=user)
    run = purge_run_start(rule=make_rule("log-data"), enqueue=False)
    with CaptureQueriesContext(connection) as queries:
        purge_run_work(run.pk, worker="w")
    picks = [q["sql"] for q in queries if q["sql"].startswith('SELECT "chat_accesslog"."id"')]
    assert picks and all("NOT (EXISTS(SELECT" in sql and '"retention_legalhold"' in sql for sql in picks)
    assert not any('FROM "retention_legalhold"' in q["sql"] and '"subject_id" AS' in q["sql"] for q in queries)
