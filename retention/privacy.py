"""Retention's own records (category `retention-records`): rules, holds and purge runs.

They are personal because they name staff (who confirmed, placed, lifted, requested) and, for a hold, the
subject it covers. Rules and holds declare no timestamp retention may count from: a retention rule never
expires them (a hold is evidence of why data was kept). Purge runs count from their creation.
"""

from privacyops import privacy
from privacyops.privacy import Erase, Field

from .models import LegalHold, PurgeRun, RetentionRule

privacy.register(
    RetentionRule,
    category="retention-records",
    fields={
        "confirmed_by": Field("retention-records", Erase.NULL, "The staff member who confirmed the rule"),
    },
    not_personal=(
        "id",
        "code",
        "name",
        "description",
        "category",
        "store",
        "period",
        "counts_from",
        "timestamp_field",
        "action",
        "enabled",
        "confirmed_at",
        "last_run_at",
        "policy_ref",
        "seed_digest",
        "created_at",
        "updated_at",
    ),
)

privacy.register(
    LegalHold,
    subject="subject",
    category="retention-records",
    fields={
        "reason": Field("retention-records", Erase.RETAIN, "Why the data is kept", third_party=True),
        "reference": Field("retention-records", Erase.RETAIN, "The court order, claim or case number"),
        "placed_by": Field("retention-records", Erase.NULL, "The staff member who placed the hold"),
        "lifted_by": Field("retention-records", Erase.NULL, "The staff member who lifted the hold"),
        "lift_reason": Field("retention-records", Erase.RETAIN, "Why the hold was lifted", third_party=True),
        "placed_at": Field("retention-records", Erase.RETAIN, "When the hold was placed"),
        "lifted_at": Field("retention-records", Erase.RETAIN, "When the hold was lifted"),
    },
    not_personal=("id", "subject", "category", "store", "review_date"),
)

privacy.register(
    PurgeRun,
    category="retention-records",
    created="created_at",
    fields={
        "requested_by": Field("retention-records", Erase.NULL, "The staff member who started the run"),
    },
    not_personal=(
        "id",
        "rule",
        "dry_run",
        "status",
        "created_at",
        "started_at",
        "finished_at",
        "cutoff",
        "batch_size",
        "lease_owner",
        "lease_expires_at",
        "heartbeat_at",
        "attempts",
        "counts",
        "batches_done",
        "total_steps",
        "position",
        "error",
    ),
)
