"""The chat service's personal data (POLICY-MAP I-2 to I-6, I-9): what each column is and how erasure treats it.

Columns that identify nobody once the row's link to its subject is cut (a message's role, an event's type,
a rating) are declared not personal: anonymising keeps them, which is what makes an anonymised row still
useful for statistics. Everything that could point back at a person is personal and has a strategy.
"""

from privacyops import privacy
from privacyops.privacy import Erase, Field

from .models import AccessLog, Attachment, Conversation, Feedback, Message, SupportMessage, UsageEvent

privacy.register(
    Conversation,
    subject="user",
    category="user-content",
    created="created",
    timestamps=("updated",),
    fields={
        "title": Field("user-content", Erase.REDACT, "The title of the conversation", rectifiable=True, third_party=True),
        "created": Field("user-content", Erase.GENERALISE_DAY, "When you started the conversation"),
        "updated": Field("user-content", Erase.GENERALISE_DAY, "When the conversation last changed"),
    },
    not_personal=("id", "user"),
)

privacy.register(
    Message,
    subject="conversation__user",
    category="user-content",
    created="created",
    fields={
        "content": Field("user-content", Erase.DELETE, "What you wrote to the assistant, or its answer", third_party=True),
        "created": Field("user-content", Erase.GENERALISE_DAY, "When the message was sent"),
    },
    not_personal=("id", "conversation", "role"),
)

privacy.register(
    Attachment,
    subject="message__conversation__user",
    category="user-content",
    created="created",
    fields={
        "file": Field("user-content", Erase.DELETE, "A file, image or recording you uploaded", third_party=True),
        "sha256": Field("user-content", Erase.DELETE, "A fingerprint of the uploaded file"),
        "created": Field("user-content", Erase.GENERALISE_DAY, "When you uploaded it"),
    },
    not_personal=("id", "message", "kind", "size"),
)

privacy.register(
    Feedback,
    subject="user",
    category="feedback",
    created="created",
    fields={
        "message": Field("feedback", Erase.NULL, "The answer you rated"),
        "comment": Field("feedback", Erase.REDACT, "Your idea or suggestion", rectifiable=True, third_party=True),
        "conversation_snapshot": Field(
            "feedback", Erase.DELETE, "The rated conversation as it was when you gave feedback", third_party=True
        ),
        "created": Field("feedback", Erase.GENERALISE_DAY, "When you gave the feedback"),
    },
    not_personal=("id", "user", "rating", "anonymised_at"),
)

privacy.register(
    SupportMessage,
    subject="user",
    identifier="email",
    category="communication-information",
    created="created",
    fields={
        "name": Field("communication-information", Erase.NULL, "The name you gave us", rectifiable=True),
        "email": Field("communication-information", Erase.NULL, "The address we answer you at", rectifiable=True),
        "body": Field("communication-information", Erase.REDACT, "What you wrote to support", third_party=True),
        "created": Field("communication-information", Erase.GENERALISE_DAY, "When you wrote"),
    },
    not_personal=("id", "user", "channel", "third_party_attested", "anonymised_at"),
)

privacy.register(
    AccessLog,
    subject="user",
    category="log-data",
    created="created",
    fields={
        "ip_address": Field("log-data", Erase.GENERALISE_IP, "The internet address your request came from"),
        "device_brand": Field("log-data", Erase.NULL, "Your device's maker"),
        "device_model": Field("log-data", Erase.NULL, "Your device's model"),
        "device_id": Field("log-data", Erase.NULL, "Your device's identifier"),
        "browser": Field("log-data", Erase.NULL, "Your browser and its settings"),
        "user_agent": Field("log-data", Erase.NULL, "What your browser says about itself"),
        "path": Field("log-data", Erase.NULL, "The page or action you requested"),
        "created": Field("log-data", Erase.GENERALISE_DAY, "When you made the request"),
    },
    not_personal=("id", "user", "anonymised_at"),
)

privacy.register(
    UsageEvent,
    subject="user",
    category="usage-data",
    created="created",
    fields={
        "country": Field("usage-data", Erase.GENERALISE_COUNTRY, "The country you used the service from"),
        "time_zone": Field("usage-data", Erase.NULL, "Your time zone"),
        "user_agent": Field("usage-data", Erase.NULL, "What your browser says about itself"),
        "created": Field("usage-data", Erase.GENERALISE_DAY, "When you did it"),
    },
    not_personal=("id", "user", "event_type", "feature", "device_type", "connection", "anonymised_at"),
)
