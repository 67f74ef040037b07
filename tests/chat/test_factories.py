import hashlib

import pytest

from chat import models
from tests.factories.chat import (
    AccessLogFactory,
    AttachmentFactory,
    ConversationFactory,
    FeedbackFactory,
    MessageFactory,
    SupportMessageFactory,
    UsageEventFactory,
)

pytestmark = pytest.mark.django_db


def test_attachment_file_exists_in_storage_with_consistent_size_and_hash(media_root):
    attachment = AttachmentFactory()
    with attachment.file.open("rb") as f:
        data = f.read()
    assert attachment.file.path.startswith(media_root)
    assert attachment.size == len(data)
    assert attachment.sha256 == hashlib.sha256(data).hexdigest()


def test_feedback_snapshots_its_conversation_and_belongs_to_its_owner():
    conversation = ConversationFactory()
    MessageFactory(conversation=conversation, content="What is GDPR?")
    answer = MessageFactory(conversation=conversation, role="assistant", content="A regulation.")
    feedback = FeedbackFactory(message=answer)
    assert feedback.user == conversation.user
    assert [m["content"] for m in feedback.conversation_snapshot] == ["What is GDPR?", "A regulation."]


def test_support_message_without_an_account_has_its_own_email():
    first, second = SupportMessageFactory(user=None), SupportMessageFactory(user=None)
    assert first.user is None and first.email and first.email != second.email


def test_every_factory_builds_a_valid_row():
    for factory_class in (ConversationFactory, MessageFactory, FeedbackFactory, SupportMessageFactory, UsageEventFactory):
        factory_class().full_clean()
    AccessLogFactory().full_clean()
    v6 = AccessLogFactory(ipv6=True)
    v6.full_clean()
    assert ":" in v6.ip_address
    assert models.AccessLog.objects.count() == 2
