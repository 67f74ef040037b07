"""What the retention app writes to the audit trail (see privacyops.audit_actions)."""

from privacyops.audit_actions import action

RULE_CREATED = action("retention.rule_created", "Retention rule created")
RULE_UPDATED = action("retention.rule_updated", "Retention rule changed")
RULE_CONFIRMED = action("retention.rule_confirmed", "Retention rule confirmed by the DPO")
RULE_DISABLED = action("retention.rule_disabled", "Retention rule disabled")
HOLD_PLACED = action("retention.hold_placed", "Legal hold placed")
HOLD_LIFTED = action("retention.hold_lifted", "Legal hold lifted")
RUN_REQUESTED = action("retention.run_requested", "Purge run requested")
RUN_STARTED = action("retention.run_started", "Purge run started")
BATCH = action("retention.batch", "Purge batch committed")
RUN_COMPLETED = action("retention.run_completed", "Purge run completed")
RUN_FAILED = action("retention.run_failed", "Purge run failed")
RUN_CANCELLED = action("retention.run_cancelled", "Purge run cancelled")
