"""Which policy records are personal data (category `consent-records`, as when they lived in consents).

Acceptances are proof of what a subject agreed to (PM-0-1): erasure keeps them (Erase.RETAIN) and they name
the subject only by the random `subject_ref`, so once the account is gone they point at nobody. Notice
deliveries hang off the account itself and go with it. A version names only the staff member who published it.
"""

from privacyops import privacy
from privacyops.privacy import Erase, Field

from .models import PolicyAcceptance, PolicyNoticeDelivery, PolicyVersion

C = "consent-records"

privacy.register(
    PolicyVersion,
    category=C,
    fields={"published_by": Field(C, Erase.NULL, "The staff member who published the version")},
    not_personal=(
        "id",
        "label",
        "last_updated",
        "effective_at",
        "summary",
        "text",
        "url",
        "short_notice_reason",
        "short_notice_note",
        "published_at",
        "notice_sent_at",
        "seed_digest",
        "created_at",
    ),
)

privacy.register(
    PolicyAcceptance,
    identifier="subject_ref",
    category=C,
    created="accepted_at",
    fields={
        "subject_ref": Field(C, Erase.RETAIN, "Your random reference"),
        "version": Field(C, Erase.RETAIN, "The policy version you accepted"),
        "accepted_at": Field(C, Erase.RETAIN, "When you accepted it"),
        "method": Field(C, Erase.RETAIN, "How you accepted it"),
        "client": Field(C, Erase.RETAIN, "Where you accepted it"),
        "ua_hash": Field(C, Erase.RETAIN, "A keyed fingerprint of your browser"),
    },
    not_personal=("id",),
)

privacy.register(
    PolicyNoticeDelivery,
    subject="user",
    category=C,
    created="sent_at",
    fields={
        "version": Field(C, Erase.DELETE, "The policy version we told you about"),
        "status": Field(C, Erase.DELETE, "Whether the e-mail went out or you saw the notice in the service"),
        "sent_at": Field(C, Erase.DELETE, "When we told you"),
        "acknowledged_at": Field(C, Erase.DELETE, "When you acknowledged it"),
    },
    not_personal=("id", "user"),
)
