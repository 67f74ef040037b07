"""Property test on PostgreSQL: random subjects, rows, holds and rules (POLICY-MAP VI-3, VI-4).

After a run, whatever the data: no held row has changed, no expired unheld row is left unless a kept row
needs it, and the dry run counted exactly what the real run did. The expectations come from a small
model of the rules written here in Python, independent of the engine's SQL.
"""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from accounts.models import User
from chat.models import AccessLog, Attachment, Conversation, Feedback, Message, UsageEvent
from retention.engine import purge_run_work
from retention.models import LegalHold, RetentionRule
from retention.services import purge_run_start

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

AGES = [2, 20, 45, 120]  # days; the rules use P30D
CATEGORY = {
    Conversation: "user-content",
    Message: "user-content",
    Attachment: "user-content",
    Feedback: "feedback",
    AccessLog: "log-data",
    UsageEvent: "usage-data",
}
MODELS = list(CATEGORY)

ages = st.sampled_from(AGES)
maybe_age = st.one_of(st.none(), ages)
subjects = st.lists(st.fixed_dictionaries({"last_activity": maybe_age, "closed": maybe_age}), min_size=1, max_size=3)
attachments = st.lists(ages, max_size=2)
messages = st.lists(st.fixed_dictionaries({"age": ages, "attachments": attachments, "feedback": st.booleans()}), max_size=3)
conversations = st.lists(st.fixed_dictionaries({"subject": st.integers(0, 2), "age": ages, "messages": messages}), max_size=3)
logs = st.lists(st.fixed_dictionaries({"subject": st.one_of(st.none(), st.integers(0, 2)), "age": ages}), max_size=4)
holds = st.lists(
    st.fixed_dictionaries(
        {
            "subject": st.one_of(st.none(), st.integers(0, 2)),
            "category": st.one_of(st.none(), st.sampled_from(["user-content", "feedback", "log-data", "usage-data"])),
            "store": st.one_of(st.none(), st.sampled_from(["django-chat", "django-accounts"])),
        }
    ).filter(lambda h: any(v is not None for v in h.values())),
    max_size=2,
)
rules = st.sampled_from(
    [
        ("user-content", "created", "delete"),
        ("user-content", "account_closure", "delete"),
        ("user-content", "last_activity", "delete"),
        ("log-data", "created", "delete"),
        ("log-data", "last_activity", "anonymise"),
        ("usage-data", "created", "anonymise"),
    ]
)


def build(now, world):
    ago = lambda days: now - timedelta(days=days)  # noqa: E731
    users = [
        User.objects.create(
            email=f"s{i}-{now.timestamp()}@example.org",
            date_joined=ago(200),
            last_activity_at=ago(s["last_activity"]) if s["last_activity"] else None,
            closed_at=ago(s["closed"]) if s["closed"] else None,
        )
        for i, s in enumerate(world["subjects"])
    ]
    pick = lambda i: users[i % len(users)] if i is not None else None  # noqa: E731
    for c in world["conversations"]:
        user = pick(c["subject"])
        conversation = Conversation.objects.create(user=user, created=ago(c["age"]), updated=ago(c["age"]))
        for m in c["messages"]:
            message = Message.objects.create(conversation=conversation, role="user", content="hello", created=ago(m["age"]))
            for age in m["attachments"]:
                Attachment.objects.create(message=message, file="chat/attachments/x.txt", created=ago(age))
            if m["feedback"]:
                Feedback.objects.create(user=user, message=message, rating="up", comment="nice", created=ago(2))
    for entry in world["logs"]:
        user = pick(entry["subject"])
        AccessLog.objects.create(user=user, ip_address="198.51.100.7", user_agent="UA", created=ago(entry["age"]))
        UsageEvent.objects.create(user=user, event_type="message_sent", time_zone="UTC", created=ago(entry["age"]))
    return users


def snapshot():
    return {(m, row["id"]): row for m in MODELS for row in m.objects.values()}


def subject_of(model, row, rows):
    if model is Message:
        return rows[(Conversation, row["conversation_id"])]["user_id"]
    if model is Attachment:
        return subject_of(Message, rows[(Message, row["message_id"])], rows)
    return row["user_id"]


def oracle(rule, cutoff, before, users_by_id, hold_rows):
    """Which rows are held, expired, and (for deletes) kept because a kept row points at them."""

    def held(model, row):
        subject = subject_of(model, row, before)
        return any(
            (h.subject_id is None or h.subject_id == subject)
            and (h.category is None or h.category.code == CATEGORY[model])
            and (h.store is None or h.store.code == "django-chat")
            for h in hold_rows
        )

    def expired(model, row):
        subject = users_by_id.get(subject_of(model, row, before))
        if rule.counts_from == "created":
            return row["created"] < cutoff
        if rule.counts_from == "account_closure":
            return subject is not None and subject.closed_at is not None and subject.closed_at < cutoff
        if subject is None:
            return row["created"] < cutoff
        return (subject.last_activity_at or subject.date_joined) < cutoff

    plan = [m for m in MODELS if CATEGORY[m] == rule.category.code]
    is_held = {key: held(key[0], row) for key, row in before.items()}
    is_expired = {key: expired(key[0], row) for key, row in before.items() if key[0] in plan}
    kept = {}
    if rule.action == "delete":
        for key in sorted((k for k in is_expired if k[0] is Attachment), key=lambda k: k[1]):
            kept[key] = not is_expired[key] or is_held[key]
        for key in (k for k in is_expired if k[0] is Message):
            children = [k for k, r in before.items() if k[0] is Attachment and r["message_id"] == key[1]]
            feedback = [k for k, r in before.items() if k[0] is Feedback and r["message_id"] == key[1]]
            kept[key] = (
                not is_expired[key]
                or is_held[key]
                or any(kept.get(c, True) for c in children)
                or any(is_held[f] for f in feedback)
            )
        for key in (k for k in is_expired if k[0] is Conversation):
            children = [k for k, r in before.items() if k[0] is Message and r["conversation_id"] == key[1]]
            kept[key] = not is_expired[key] or is_held[key] or any(kept[c] for c in children)
        for key in (k for k in is_expired if k[0] in (AccessLog, UsageEvent)):
            kept[key] = not is_expired[key] or is_held[key]
    return plan, is_held, is_expired, kept


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    world=st.fixed_dictionaries({"subjects": subjects, "conversations": conversations, "logs": logs, "holds": holds}),
    rule_spec=rules,
    batch_size=st.integers(1, 4),
)
# A held feedback (a set-null child in another category) must keep its expired message and conversation.
@example(
    world={
        "subjects": [{"last_activity": None, "closed": None}],
        "conversations": [{"subject": 0, "age": 120, "messages": [{"age": 120, "attachments": [], "feedback": True}]}],
        "logs": [],
        "holds": [{"subject": None, "category": "feedback", "store": None}],
    },
    rule_spec=("user-content", "created", "delete"),
    batch_size=1,
)
def test_pm_vi_3_pm_vi_4_no_held_row_changes_no_expired_row_stays_dry_run_equals_run(register, world, rule_spec, batch_size):
    category, counts_from, action = rule_spec
    with transaction.atomic():
        # Check foreign keys at each statement, not at a commit that never comes: children really go first.
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        now = timezone.now()
        users = build(now, world)
        for h in world["holds"]:
            LegalHold.objects.create(
                subject=users[h["subject"] % len(users)] if h["subject"] is not None else None,
                category=register["categories"][h["category"]] if h["category"] else None,
                store=register["stores"][h["store"]] if h["store"] else None,
                reason="test",
                reference="REF",
            )
        rule = RetentionRule.objects.create(
            code="property-rule",
            name="Property rule",
            category=register["categories"][category],
            period="P30D",
            counts_from=counts_from,
            action=action,
            enabled=True,
            confirmed_at=now,
        )
        before = snapshot()

        preview = purge_run_start(rule=rule, dry_run=True, batch_size=batch_size, enqueue=False)
        preview = purge_run_work(preview.pk, worker="property")
        assert snapshot() == before, "a dry run changed data"
        run = purge_run_start(rule=rule, batch_size=batch_size, enqueue=False)
        run = purge_run_work(run.pk, worker="property")
        after = snapshot()

        assert run.status == "completed", run.error
        assert preview.counts == run.counts
        users_by_id = {u.pk: u for u in User.objects.filter(pk__in=[u.pk for u in users])}
        plan, is_held, is_expired, kept = oracle(rule, run.cutoff, before, users_by_id, list(LegalHold.objects.all()))

        for key, row in before.items():
            if is_held[key]:
                assert after.get(key) == row, f"held row {key} changed"
        for key, expired in is_expired.items():
            if not expired:
                assert after.get(key) == before[key]
            elif is_held[key]:
                continue
            elif action == "delete":
                assert (key in after) == kept[key], f"{key}: expected {'kept' if kept[key] else 'deleted'}"
            else:
                assert after[key]["anonymised_at"] is not None and after[key]["user_id"] is None
        for (model, pk), row in before.items():
            if model not in plan and model is not Feedback:
                assert after.get((model, pk)) == row, f"{model.__name__} {pk} is outside the rule but changed"
            if model is Feedback and not is_held[(model, pk)] and row["message_id"] is not None:
                assert after[(model, pk)]["message_id"] == (row["message_id"] if (Message, row["message_id"]) in after else None)
        total = {k: sum(c[k] for c in run.counts.values()) for k in ("matched", "held", "deleted", "anonymised")}
        assert total["matched"] == sum(1 for e in is_expired.values() if e)
        assert total["held"] == sum(1 for k, e in is_expired.items() if e and is_held[k])
        transaction.set_rollback(True)
