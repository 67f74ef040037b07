"""Rights requests are personal data too (category `rights-request-records`).

We keep each request's record to show we answered as the law requires (CCPA asks for 24 months of them),
so its facts are retained through the subject's own erasure (Erase.RETAIN), found by the random
`subject_ref` once the account is gone. What could name or describe the person -- the contact address,
the agent, what they wrote, staff notes -- is cleared: the record then names nobody directly.
"""

from privacyops import privacy
from privacyops.privacy import Erase, Field

from .models import (
    DeadlineRule,
    Disclosure,
    DownloadLink,
    ExportPackage,
    RecipientNotice,
    RectificationItem,
    RequestEvent,
    RequestPause,
    RightsRequest,
    VerificationLink,
)

R = "rights-request-records"

privacy.register_not_personal(DeadlineRule, reason="Statutory periods per jurisdiction and right: the same for everyone.")

privacy.register(
    RightsRequest,
    subject="subject",
    identifier="subject_ref",
    category=R,
    created="received_at",
    timestamps=("closed_at",),
    duty_ends=True,  # kept through erasure, for a fixed time: the seeded rule deletes it 24 months after closure
    fields={
        "subject_ref": Field(R, Erase.RETAIN, "Your random reference"),
        "contact_email": Field(R, Erase.NULL, "The address we answer the request at"),
        "agent_name": Field(R, Erase.NULL, "The agent who made the request for you"),
        "agent_authority": Field(R, Erase.NULL, "The agent's proof of authority"),
        "details": Field(R, Erase.REDACT, "What the request said", third_party=True),
        "right": Field(R, Erase.RETAIN, "Which right the request exercised"),
        "received_at": Field(R, Erase.RETAIN, "When we received the request"),
        "closed_at": Field(R, Erase.RETAIN, "When we closed it"),
        "status": Field(R, Erase.RETAIN, "Where the request stands or how it ended"),
        "outcome": Field(R, Erase.RETAIN, "What we decided and did"),
    },
    not_personal=(
        "id",
        "reference",
        "subject",
        "requester",
        "agent_verified_at",
        "agent_verified_by",
        "jurisdiction",
        "channel",
        "held_from",
        "hold_reason",
        "acknowledged_at",
        "verified_at",
        "due_at",
        "extended_due_at",
        "extensions_used",
        "extension_reason",
        "extension_notice_sent_at",
        "reminders_sent",
        "assignee",
        "approved_by",
        "approved_at",
        "duplicate_of",
        "created_by",
        "job_status",
        "job_done",
        "job_total",
        "job_started_at",
        "job_finished_at",
        "job_lease_owner",
        "job_lease_until",
        "job_result",
        "job_error",
        "created_at",
        "updated_at",
    ),
)

privacy.register(
    RequestPause,
    subject="request__subject",
    category=R,
    created="started_at",
    timestamps=("request__closed_at",),  # the timeline goes with its request (rule rights-requests-24m)
    fields={"note": Field(R, Erase.REDACT, "Why the request was on hold, in our words", third_party=True)},
    not_personal=("id", "request", "reason", "stops_clock", "started_at", "ended_at"),
)

privacy.register(
    RequestEvent,
    subject="request__subject",
    category=R,
    created="at",
    timestamps=("request__closed_at",),  # the timeline goes with its request (rule rights-requests-24m)
    fields={"message": Field(R, Erase.REDACT, "What happened, in our words", third_party=True)},
    not_personal=("id", "request", "at", "kind", "actor", "from_status", "to_status", "details"),
)

privacy.register(
    VerificationLink,
    subject="request__subject",
    category=R,
    created="created_at",
    timestamps=("request__closed_at",),
    fields={"sent_to": Field(R, Erase.NULL, "The address we sent the verification link to")},
    not_personal=("id", "request", "token_sha256", "created_at", "expires_at", "used_at"),
)

# Packages and their links are a store of their own (PACKAGES): the encrypted copies live in file storage, and
# their retention (7 days after creation, rule rights-request-packages-7d) is not the requests' 24 months.
PACKAGES = "django-requests-packages"

privacy.register(
    ExportPackage,
    subject="request__subject",
    category=R,
    store=PACKAGES,
    created="created_at",
    fields={"file": Field(R, Erase.DELETE, "The copy of your data we prepared for you (stored encrypted)")},
    not_personal=(
        "id",
        "request",
        "status",
        "size_bytes",
        "sha256",
        "files",
        "rows",
        "created_at",
        "ready_at",
        "expires_at",
        "downloads",
        "deleted_at",
    ),
)

privacy.register(
    DownloadLink,
    subject="package__request__subject",
    category=R,
    store=PACKAGES,  # deleted with its package by the same rule: a child outside a rule's plan would keep it
    created="created_at",
    fields={"used_at": Field(R, Erase.DELETE, "When you started a download")},
    not_personal=("id", "package", "token_sha256", "created_at", "expires_at"),
)

privacy.register(
    RectificationItem,
    subject="request__subject",
    category=R,
    timestamps=("request__closed_at",),
    fields={
        "old_value": Field(R, Erase.REDACT, "The value you asked us to correct"),
        "new_value": Field(R, Erase.REDACT, "The value you proposed"),
        "note": Field(R, Erase.REDACT, "Why we applied or rejected it", third_party=True),
    },
    not_personal=("id", "request", "model_label", "object_pk", "field", "decision", "decided_by", "decided_at"),
)

privacy.register(
    RecipientNotice,
    subject="request__subject",
    category=R,
    created="created_at",
    timestamps=("request__closed_at",),
    fields={"note": Field(R, Erase.REDACT, "What the recipient was told", third_party=True)},
    not_personal=("id", "request", "recipient", "categories", "created_at", "done_at", "done_by"),
)

privacy.register(
    Disclosure,
    subject="subject",
    identifier="subject_ref",
    category=R,
    created="disclosed_at",
    fields={
        "subject_ref": Field(R, Erase.RETAIN, "Your random reference"),
        "authority": Field(R, Erase.RETAIN, "Who we disclosed your data to"),
        "legal_ground": Field(R, Erase.RETAIN, "The legal ground they relied on"),
        "reference": Field(R, Erase.RETAIN, "Their case or order number"),
        "categories": Field(R, Erase.RETAIN, "Which kinds of your data we disclosed"),
        "disclosed_at": Field(R, Erase.RETAIN, "When we disclosed it"),
        "notes": Field(R, Erase.REDACT, "Our notes on the disclosure", third_party=True),
    },
    not_personal=("id", "subject", "approved_by", "created_by", "created_at"),
)
