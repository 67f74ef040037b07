"""The chat service's own data: what the system governs (POLICY-MAP section I).

Every table carries its subject (directly, or through its parent) and a creation time, and has an index on
(subject, created) and on every foreign key: the purge engine filters on both in each batch, exports walk a
subject's rows in time order, and PostgreSQL checks each deleted parent against its children through the
child's foreign-key index (without it a purge batch seq-scans the child table).

`anonymised_at` marks rows that a retention rule has anonymised; the engine's UPDATE both guards on it and
stamps it, so an anonymise batch that runs twice changes nothing the second time.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


class Conversation(models.Model):
    """A chat thread of one account holder: User Content (PM-I-2)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["user", "created"], name="chat_conv_user_created")]

    def __str__(self):
        return self.title or f"Conversation {self.pk}"


class Message(models.Model):
    """One prompt or answer in a conversation: User Content (PM-I-2)."""

    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["conversation", "created"], name="chat_msg_conv_created")]
        constraints = [models.CheckConstraint(name="chat_message_known_role", condition=models.Q(role__in=["user", "assistant"]))]

    def __str__(self):
        return f"{self.get_role_display()} message {self.pk}"


class Attachment(models.Model):
    """A file uploaded with a message (text, image, audio): User Content (PM-I-2). It goes with its message."""

    class Kind(models.TextChoices):
        TEXT = "text", "Text"
        IMAGE = "image", "Image"
        AUDIO = "audio", "Audio"
        FILE = "file", "Other file"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to="chat/attachments/%Y/%m/", max_length=300)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.FILE)
    size = models.PositiveBigIntegerField(default=0, help_text="Bytes.")
    sha256 = models.CharField(max_length=64, blank=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["message", "created"], name="chat_att_msg_created")]
        constraints = [
            models.CheckConstraint(
                name="chat_attachment_known_kind", condition=models.Q(kind__in=["text", "image", "audio", "file"])
            )
        ]

    def __str__(self):
        return f"{self.get_kind_display()} attachment {self.pk}"


class Feedback(models.Model):
    """A rating or suggestion, with a snapshot of the rated conversation kept as long as it (PM-I-3)."""

    class Rating(models.TextChoices):
        UP = "up", "Thumbs up"
        DOWN = "down", "Thumbs down"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="feedback")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="feedback")
    rating = models.CharField(max_length=4, choices=Rating.choices, blank=True)
    comment = models.TextField(blank=True)
    conversation_snapshot = models.JSONField(default=list, blank=True, help_text="The rated conversation as it was.")
    created = models.DateTimeField(default=timezone.now)
    anonymised_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name_plural = "feedback"
        indexes = [models.Index(fields=["user", "created"], name="chat_fb_user_created")]
        constraints = [
            models.CheckConstraint(name="chat_feedback_known_rating", condition=models.Q(rating__in=["", "up", "down"]))
        ]

    def __str__(self):
        return f"Feedback {self.pk}"


class SupportMessage(models.Model):
    """A message to support by email or a social page: Communication Information (PM-I-4).

    `third_party_attested` records the sender's statement that other people's data in the message is
    shared with their consent (PM-I-9). Rows without an account are found by `email`.
    """

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        SOCIAL = "social", "Social media page"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="support_messages"
    )
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True)
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.EMAIL)
    body = models.TextField()
    third_party_attested = models.BooleanField(
        default=False, help_text="The sender confirmed that third persons in the message agreed to share their data."
    )
    created = models.DateTimeField(default=timezone.now)
    anonymised_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        indexes = [
            models.Index(fields=["user", "created"], name="chat_sup_user_created"),
            models.Index(fields=["email"], name="chat_sup_email"),
        ]
        constraints = [
            models.CheckConstraint(name="chat_support_known_channel", condition=models.Q(channel__in=["email", "social"]))
        ]

    def __str__(self):
        return f"Support message {self.pk}"


class AccessLog(models.Model):
    """One request to the service: Log Data (PM-I-5). High volume."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="access_logs"
    )
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    device_brand = models.CharField(max_length=100, blank=True)
    device_model = models.CharField(max_length=100, blank=True)
    device_id = models.CharField(max_length=100, blank=True)
    browser = models.CharField(max_length=100, blank=True)
    user_agent = models.TextField(blank=True)
    path = models.CharField(max_length=500, blank=True)
    created = models.DateTimeField(default=timezone.now)
    anonymised_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        indexes = [
            models.Index(fields=["user", "created"], name="chat_log_user_created"),
            models.Index(fields=["created"], name="chat_log_created"),
        ]

    def __str__(self):
        return f"Access {self.pk}"


class UsageEvent(models.Model):
    """What an account holder did in the service: Usage Data (PM-I-6). High volume."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="usage_events"
    )
    event_type = models.CharField(max_length=50)
    feature = models.CharField(max_length=100, blank=True)
    country = models.CharField(max_length=2, blank=True)
    time_zone = models.CharField(max_length=64, blank=True)
    user_agent = models.TextField(blank=True)
    device_type = models.CharField(max_length=20, blank=True)
    connection = models.CharField(max_length=20, blank=True)
    created = models.DateTimeField(default=timezone.now)
    anonymised_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        indexes = [
            models.Index(fields=["user", "created"], name="chat_use_user_created"),
            models.Index(fields=["created"], name="chat_use_created"),
        ]

    def __str__(self):
        return f"{self.event_type} {self.pk}"
