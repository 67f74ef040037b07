"""Rights requests are personal data too (category `rights-request-records`).

We keep each request's record to show we answered as the law requires (CCPA asks for 24 months of them),
so its facts are retained through the subject's own erasure (Erase.RETAIN), found by the random
`subject_ref` once the account is gone. What could name or describe the person -- the contact address,
the agent, what they wrote, staff notes -- is cleared: the record then names nobody directly.
"""

from privacyops import privacy
from privacyops.privacy import Erase, Field

from .models import DeadlineRule, RequestEvent, RequestPause, RightsRequest

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
