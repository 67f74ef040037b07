"""The chat data in the workbench: read-only for the DPO, invisible to auditors, cheap on big tables."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chat import models
from privacyops.admin_utils import EstimatedCountPaginator
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
from tests.factories.inventory import staff_in_role

pytestmark = pytest.mark.django_db

MODELS = ["conversation", "message", "attachment", "feedback", "supportmessage", "accesslog", "usageevent"]


def changelist(model):
    return reverse(f"admin:chat_{model}_changelist")


def one_row_each(user=None):
    """One row in every chat table, each in its own conversation of its own (or the given) user."""
    user = user or UserFactory()
    conversation = ConversationFactory(user=user)
    question = MessageFactory(conversation=conversation, content="My passport number is X1234567, is that safe?")
    answer = MessageFactory(conversation=conversation, role="assistant", content="Please do not share it.")
    AttachmentFactory(message=question)
    FeedbackFactory(message=answer, comment="Good advice")
    SupportMessageFactory(user=user)
    SupportMessageFactory(user=None)
    AccessLogFactory(user=user)
    UsageEventFactory(user=user)
    return user


def _queries(client, path) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(path)
        assert response.status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("model", MODELS)
def test_changelist_runs_a_fixed_number_of_queries_whatever_the_rows(client, dpo, model):
    one_row_each()
    few = _queries(client, changelist(model))
    for _ in range(6):
        one_row_each()
    assert _queries(client, changelist(model)) == few


@pytest.mark.parametrize("model", MODELS)
def test_changelist_never_counts_the_whole_table(client, dpo, model):
    one_row_each()
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(changelist(model)).status_code == 200
    table = connection.ops.quote_name(getattr(models, _model_class_name(model))._meta.db_table)
    bare_counts = [
        q["sql"]
        for q in ctx.captured_queries
        if q["sql"].startswith(f"SELECT COUNT(*) AS {connection.ops.quote_name('__count')} FROM {table}")
    ]
    assert bare_counts == []  # counts go through a capped subquery (or the planner's estimate)


def _model_class_name(model):
    return {
        m._meta.model_name: m.__name__
        for m in (
            models.Conversation,
            models.Message,
            models.Attachment,
            models.Feedback,
            models.SupportMessage,
            models.AccessLog,
            models.UsageEvent,
        )
    }[model]


def test_dpo_reads_a_message_read_only_and_cannot_add_change_or_delete(client, dpo):
    one_row_each()
    message = models.Message.objects.get(role="user")
    page = client.get(reverse("admin:chat_message_change", args=[message.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert "X1234567" in body
    assert 'name="content"' not in body and "<textarea" not in body  # shown, not editable
    assert client.post(reverse("admin:chat_message_change", args=[message.pk]), {"content": "changed"}).status_code == 403
    message.refresh_from_db()
    assert "X1234567" in message.content
    for model in MODELS:
        assert client.get(reverse(f"admin:chat_{model}_add")).status_code == 403
    assert client.get(reverse("admin:chat_message_delete", args=[message.pk])).status_code == 403
    assert 'name="action"' not in client.get(changelist("message")).content.decode()  # no bulk delete


def test_feedback_page_shows_the_conversation_snapshot(client, dpo):
    one_row_each()
    feedback = models.Feedback.objects.get()
    body = client.get(reverse("admin:chat_feedback_change", args=[feedback.pk])).content.decode()
    assert "Please do not share it." in body and "Good advice" in body


@pytest.mark.parametrize("model", MODELS)
def test_pm_i_2_auditor_never_sees_chat_content(client, auditor, model):
    one_row_each()
    assert client.get(changelist(model)).status_code == 403
    row = getattr(models, _model_class_name(model)).objects.first()
    assert client.get(reverse(f"admin:chat_{model}_change", args=[row.pk])).status_code == 403


def test_support_agent_never_sees_chat_content(client):
    client.force_login(staff_in_role("Support agent"))
    one_row_each()
    for model in MODELS:
        assert client.get(changelist(model)).status_code == 403


def test_search_is_by_the_subjects_exact_email(client, dpo):
    alice = one_row_each(UserFactory(email="alice@example.org"))
    one_row_each(UserFactory(email="alice.other@example.org"))
    for model in MODELS:
        found = client.get(changelist(model), {"q": "Alice@Example.org"}).context["cl"].result_list
        assert found, model
        owners = {
            "conversation": lambda o: o.user,
            "message": lambda o: o.conversation.user,
            "attachment": lambda o: o.message.conversation.user,
        }.get(model, lambda o: o.user)
        assert all(owners(o) == alice for o in found), model
        assert not client.get(changelist(model), {"q": "alice"}).context["cl"].result_list, model


def test_support_messages_without_an_account_are_found_by_their_email(client, dpo):
    SupportMessageFactory(user=None, email="walk.in@example.net")
    SupportMessageFactory(user=None, email="someone.else@example.net")
    found = client.get(changelist("supportmessage"), {"q": "walk.in@example.net"}).context["cl"].result_list
    assert [m.email for m in found] == ["walk.in@example.net"]


def test_filters_by_role_kind_channel_and_date(client, dpo):
    one_row_each()
    assert {m.role for m in client.get(changelist("message"), {"role__exact": "assistant"}).context["cl"].result_list} == {
        "assistant"
    }
    assert client.get(changelist("attachment"), {"kind__exact": "audio"}).context["cl"].result_list.count() == 0
    assert client.get(changelist("supportmessage"), {"channel__exact": "email"}).context["cl"].result_list.count() == 2
    recent = {"created__gte": "2000-01-01 00:00:00+00:00"}
    assert client.get(changelist("accesslog"), recent).context["cl"].result_list.count() == 1
    assert (
        client.get(changelist("usageevent"), {"created__lt": "2000-01-01 00:00:00+00:00"}).context["cl"].result_list.count() == 0
    )


# --- The paginator ---------------------------------------------------------------------------------------


def test_paginator_caps_a_filtered_count():
    for _ in range(5):
        AccessLogFactory()
    paginator = EstimatedCountPaginator(models.AccessLog.objects.filter(user__isnull=False).order_by("-created"), 2)
    paginator.count_cap = 3
    assert paginator.count == 3
    assert EstimatedCountPaginator(models.AccessLog.objects.order_by("-created"), 2).count == 5


@pytest.mark.postgres
def test_paginator_takes_the_planners_estimate_for_a_large_unfiltered_table():
    AccessLogFactory.create_batch(40)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE chat_accesslog")
    paginator = EstimatedCountPaginator(models.AccessLog.objects.order_by("-created"), 10)
    paginator.estimate_above = 10
    with CaptureQueriesContext(connection) as ctx:
        assert paginator.count == 40  # ANALYZE read every row of so small a table
    assert not any("COUNT(" in q["sql"].upper() for q in ctx.captured_queries)
    filtered = EstimatedCountPaginator(models.AccessLog.objects.filter(path="/chat/").order_by("-created"), 10)
    filtered.estimate_above = 10
    assert filtered.count == models.AccessLog.objects.filter(path="/chat/").count()
