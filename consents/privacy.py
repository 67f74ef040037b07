"""Which consent records are personal data (category `consent-records`, except the cookie register).

The ledger, the state cache and the chain heads are proof we must be able to show a
regulator (GDPR Art. 7(1)): erasure keeps them (Erase.RETAIN), and they name the subject only by the random
`subject_ref`, so once the account is gone they point at nobody. They find a subject's rows by that
reference (`identifier`). Visitor ids are random too and only become a person's through a VisitorLink.
Restrictions hang off the account itself and go with it. Policy acceptances and notices: `policies.privacy`.
"""

from privacyops import privacy
from privacyops.privacy import Erase, Field

from .models import (
    ApiKey,
    ConsentChain,
    ConsentEvent,
    ConsentNotice,
    ConsentPurpose,
    ConsentState,
    CookieInventory,
    ProcessingRestriction,
    VisitorLink,
)

C = "consent-records"

privacy.register_not_personal(ConsentPurpose, reason="What we ask consent for: the same for everyone.")
privacy.register_not_personal(CookieInventory, reason="The register of cookies the service sets; names no person.")

privacy.register(
    ConsentNotice,
    category=C,
    fields={"created_by": Field(C, Erase.NULL, "The staff member who wrote the notice")},
    not_personal=("id", "purpose", "version", "language", "text", "sha256", "created_at"),
)

privacy.register(
    ApiKey,
    category=C,
    fields={"created_by": Field(C, Erase.NULL, "The staff member who created the key")},
    not_personal=(
        "id",
        "name",
        "prefix",
        "token_sha256",
        "scope",
        "rate_limit_per_minute",
        "created_at",
        "revoked_at",
        "last_used_at",
    ),
)

privacy.register(
    ConsentChain,
    identifier="subject_ref",
    category=C,
    fields={
        "subject_ref": Field(C, Erase.RETAIN, "Your random reference"),
        "visitor_id": Field(C, Erase.RETAIN, "The random id your browser's choice cookie holds"),
        "head_hash": Field(C, Erase.RETAIN, "The fingerprint of your latest consent record"),
        "length": Field(C, Erase.RETAIN, "How many consent records you have"),
    },
    not_personal=("id", "version", "updated_at"),
)

privacy.register(
    ConsentEvent,
    identifier="subject_ref",
    category=C,
    created="recorded_at",
    fields={
        "subject_ref": Field(C, Erase.RETAIN, "Your random reference"),
        "visitor_id": Field(C, Erase.RETAIN, "The random id your browser's choice cookie held"),
        "purpose": Field(C, Erase.RETAIN, "What the consent was for"),
        "action": Field(C, Erase.RETAIN, "Whether you gave, refused or withdrew it, or it expired"),
        "method": Field(C, Erase.RETAIN, "How you told us (button, toggle, sign-up, signal)"),
        "notice": Field(C, Erase.RETAIN, "The text you were shown"),
        "notice_version": Field(C, Erase.RETAIN, "The version of that text"),
        "notice_sha256": Field(C, Erase.RETAIN, "The fingerprint of that text"),
        "policy_version": Field(C, Erase.RETAIN, "The privacy policy in force"),
        "policy_label": Field(C, Erase.RETAIN, "The privacy policy in force"),
        "jurisdiction": Field(C, Erase.RETAIN, "The law that applied to you"),
        "language": Field(C, Erase.RETAIN, "The language you were asked in"),
        "ip_hash": Field(C, Erase.RETAIN, "A keyed fingerprint of your IP address (never the address)"),
        "ua_hash": Field(C, Erase.RETAIN, "A keyed fingerprint of your browser (never its description)"),
        "gpc": Field(C, Erase.RETAIN, "Whether your browser sent a Global Privacy Control signal"),
        "effective_at": Field(C, Erase.RETAIN, "When it took effect"),
        "recorded_at": Field(C, Erase.RETAIN, "When we recorded it"),
        "receipt_id": Field(C, Erase.RETAIN, "The number of your consent receipt"),
        "actor_label": Field(C, Erase.RETAIN, "The staff member or service that recorded it for you"),
        "instruction": Field(C, Erase.RETAIN, "Your instruction a staff member acted on"),
    },
    not_personal=("id", "chain", "seq", "prev_hash", "hash"),
)

privacy.register(
    ConsentState,
    identifier="subject_ref",
    category=C,
    fields={
        "subject_ref": Field(C, Erase.RETAIN, "Your random reference"),
        "visitor_id": Field(C, Erase.RETAIN, "The random id your browser's choice cookie holds"),
        "purpose": Field(C, Erase.RETAIN, "What the consent is for"),
        "event": Field(C, Erase.RETAIN, "Your latest consent record for it"),
        "action": Field(C, Erase.RETAIN, "Your current choice"),
        "effective_at": Field(C, Erase.RETAIN, "Since when"),
    },
    not_personal=("id", "updated_at"),
)

privacy.register(
    VisitorLink,
    identifier="subject_ref",
    category=C,
    fields={
        "visitor_id": Field(C, Erase.RETAIN, "The random id your browser's choice cookie held"),
        "subject_ref": Field(C, Erase.RETAIN, "Your random reference"),
        "method": Field(C, Erase.RETAIN, "Whether you signed in or signed up"),
        "linked_at": Field(C, Erase.RETAIN, "When"),
    },
    not_personal=("id",),
)

privacy.register(
    ProcessingRestriction,
    subject="subject",
    category=C,
    created="created_at",
    fields={
        "purpose": Field(C, Erase.RETAIN, "The processing you restricted or objected to"),
        "kind": Field(C, Erase.RETAIN, "Restriction or objection"),
        "starts_at": Field(C, Erase.RETAIN, "From when"),
        "ends_at": Field(C, Erase.RETAIN, "Until when"),
        "reason": Field(C, Erase.REDACT, "Why", third_party=True),
        "for_legal_claims": Field(C, Erase.RETAIN, "Whether the data is kept for legal claims"),
        "reference": Field(C, Erase.RETAIN, "The request or letter it came from"),
        "created_at": Field(C, Erase.RETAIN, "When it was recorded"),
        "created_by": Field(C, Erase.NULL, "The staff member who recorded it"),
        "lifted_at": Field(C, Erase.RETAIN, "When it was lifted"),
        "lifted_by": Field(C, Erase.NULL, "The staff member who lifted it"),
        "lift_reason": Field(C, Erase.REDACT, "Why it was lifted"),
    },
    not_personal=("id", "subject", "legal_hold"),
)
