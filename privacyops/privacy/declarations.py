"""Declarations of the core's own model and of the contrib models we use that hold personal data.

The audit trail is kept under a legal duty (Erase.RETAIN): erasure leaves it, and it names subjects only by
their random `subject_ref`, so once the account is gone the trail points at nobody. It finds a subject's
events by that reference (`identifier`), not by a foreign key.
"""

from django.contrib.admin.models import LogEntry
from django.contrib.sessions.models import Session
from django_otp.plugins.otp_email.models import EmailDevice

from privacyops.models import AuditEvent

from . import registry as _registry
from .registry import Erase, Field

_registry.register(
    AuditEvent,
    identifier="subject_ref",
    category="audit-records",
    created="occurred_at",
    fields={
        "occurred_at": Field("audit-records", Erase.RETAIN, "When the action happened"),
        "actor_id": Field("audit-records", Erase.RETAIN, "The staff member who acted (their account number then)"),
        "actor_label": Field("audit-records", Erase.RETAIN, "The staff member who acted (their email then)"),
        "target_type": Field("audit-records", Erase.RETAIN, "The kind of record acted on"),
        "target_id": Field("audit-records", Erase.RETAIN, "The record acted on"),
        "subject_ref": Field("audit-records", Erase.RETAIN, "Your random reference, when the action concerned you"),
    },
    not_personal=("id", "action", "details", "prev_hash", "hash"),
)

# The session behind a signed-in browser: its key is the session cookie's value.
_registry.register(
    Session,
    category="cookies",
    timestamps=("expire_date",),
    fields={
        "session_key": Field("cookies", Erase.DELETE, "The identifier in your session cookie"),
        "session_data": Field("cookies", Erase.DELETE, "What the session remembers, such as that you are signed in"),
        "expire_date": Field("cookies", Erase.DELETE, "When the session ends"),
    },
)

# The workbench's own change log: which staff member changed which record. A record's text may be a
# subject's email (str(User)), so it is redacted on erasure.
_registry.register(
    LogEntry,
    category="audit-records",
    created="action_time",
    fields={
        "user": Field("audit-records", Erase.DELETE, "The staff member who made the change"),
        "object_id": Field("audit-records", Erase.NULL, "The record changed"),
        "object_repr": Field("audit-records", Erase.REDACT, "How the changed record was shown", third_party=True),
        "change_message": Field("audit-records", Erase.REDACT, "What was changed"),
        "action_time": Field("audit-records", Erase.GENERALISE_DAY, "When the change was made"),
    },
    not_personal=("id", "content_type", "action_flag"),
)

# django-otp's email device: where one-time codes for re-authentication go (accounts without a password).
_registry.register(
    EmailDevice,
    subject="user",
    category="account-information",
    created="created_at",
    fields={
        "email": Field("account-information", Erase.DELETE, "The address we send one-time codes to"),
        "token": Field("account-information", Erase.DELETE, "The one-time code last sent"),
    },
    not_personal=(
        "id",
        "user",
        "name",
        "confirmed",
        "valid_until",
        "last_generated_timestamp",
        "throttling_failure_timestamp",
        "throttling_failure_count",
        "created_at",
        "last_used_at",
    ),
)
