"""Factories for the chat service's data (chat.models).

Rows are small and valid: a message belongs to a conversation of a user, an attachment's file really
exists in default storage with `size` and `sha256` computed from its bytes, a feedback row carries a
snapshot of its message's conversation. Files go to MEDIA_ROOT: a test that creates attachments should
point MEDIA_ROOT at its tmp_path (the `media_root` fixture in tests/chat/conftest.py does that).
"""

import hashlib

import factory
from django.core.files.base import ContentFile
from django.utils import timezone

from chat import models
from tests.factories.accounts import UserFactory


class ConversationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Conversation

    user = factory.SubFactory(UserFactory)
    title = factory.Faker("sentence", nb_words=4)
    created = factory.LazyFunction(timezone.now)
    updated = factory.LazyAttribute(lambda o: o.created)


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Message

    conversation = factory.SubFactory(ConversationFactory)
    role = models.Message.Role.USER
    content = factory.Faker("paragraph", nb_sentences=2)
    created = factory.LazyFunction(timezone.now)


def _attachment_bytes(o) -> bytes:
    return f"attachment {o.name} of a test message\n".encode()


class AttachmentFactory(factory.django.DjangoModelFactory):
    """An attachment whose file exists in storage; pass `content=b"..."` to choose its bytes."""

    class Meta:
        model = models.Attachment
        exclude = ("name", "content")

    message = factory.SubFactory(MessageFactory)
    kind = models.Attachment.Kind.TEXT
    name = factory.Sequence(lambda n: f"note-{n}.txt")
    content = factory.LazyAttribute(_attachment_bytes)
    file = factory.LazyAttribute(lambda o: ContentFile(o.content, name=o.name))
    size = factory.LazyAttribute(lambda o: len(o.content))
    sha256 = factory.LazyAttribute(lambda o: hashlib.sha256(o.content).hexdigest())
    created = factory.LazyAttribute(lambda o: o.message.created)


def _snapshot(feedback) -> list:
    if feedback.message is None:
        return []
    messages = feedback.message.conversation.messages.order_by("created", "pk")
    return [{"role": m.role, "content": m.content, "created": m.created.isoformat()} for m in messages]


class FeedbackFactory(factory.django.DjangoModelFactory):
    """A rating of an assistant message by the conversation's owner, with the conversation's snapshot."""

    class Meta:
        model = models.Feedback

    message = factory.SubFactory(MessageFactory, role=models.Message.Role.ASSISTANT)
    user = factory.LazyAttribute(lambda o: o.message.conversation.user if o.message else UserFactory())
    rating = models.Feedback.Rating.DOWN
    comment = factory.Faker("sentence", nb_words=8)
    conversation_snapshot = factory.LazyAttribute(_snapshot)
    created = factory.LazyFunction(timezone.now)


class SupportMessageFactory(factory.django.DjangoModelFactory):
    """A support message of an account holder; pass `user=None` for a sender without an account."""

    class Meta:
        model = models.SupportMessage

    user = factory.SubFactory(UserFactory)
    name = factory.LazyAttribute(lambda o: o.user.name if o.user else "Dana Sender")
    email = factory.LazyAttributeSequence(lambda o, n: o.user.email if o.user else f"sender{n}@example.com")
    channel = models.SupportMessage.Channel.EMAIL
    body = factory.Faker("paragraph", nb_sentences=3)
    third_party_attested = False
    created = factory.LazyFunction(timezone.now)


_USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
]


class AccessLogFactory(factory.django.DjangoModelFactory):
    """One request; IPv4 by default, `ipv6=True` (a factory trait) for an IPv6 address."""

    class Meta:
        model = models.AccessLog

    class Params:
        ipv6 = factory.Trait(ip_address=factory.Faker("ipv6", network=False))

    user = factory.SubFactory(UserFactory)
    ip_address = factory.Faker("ipv4_public")
    device_brand = "Google"
    device_model = "Pixel 8"
    device_id = factory.Faker("uuid4")
    browser = "Chrome Mobile 124"
    user_agent = factory.Iterator(_USER_AGENTS)
    path = factory.Iterator(["/chat/", "/api/messages", "/account/", "/api/conversations"])
    created = factory.LazyFunction(timezone.now)


class UsageEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.UsageEvent

    user = factory.SubFactory(UserFactory)
    event_type = factory.Iterator(["message_sent", "conversation_opened", "attachment_uploaded", "feedback_given"])
    feature = factory.Iterator(["chat", "voice", "file-upload", "feedback"])
    country = factory.LazyAttribute(lambda o: (o.user.country if o.user else "") or "SG")
    time_zone = "Asia/Singapore"
    user_agent = factory.Iterator(_USER_AGENTS)
    device_type = factory.Iterator(["desktop", "mobile", "tablet"])
    connection = factory.Iterator(["wifi", "cellular", "ethernet"])
    created = factory.LazyFunction(timezone.now)
