"""What the training app writes to the audit trail (see privacyops.audit_actions)."""

from privacyops.audit_actions import action

DATASET_BUILT = action("training.dataset_built", "Training dataset built from allowed conversations (PM-II-5)")
