"""What the policies app writes to the audit trail (see privacyops.audit_actions)."""

from privacyops.audit_actions import action

DRAFT_CREATED = action("policy.draft_created", "Policy version drafted")
DRAFT_UPDATED = action("policy.draft_updated", "Policy draft changed")
DRAFT_DELETED = action("policy.draft_deleted", "Policy draft deleted")
PUBLISHED = action("policy.published", "Policy version published")
NOTICES_SENT = action("policy.notices_sent", "Policy-change notices sent (one batch)")
NOTICES_COMPLETE = action("policy.notices_complete", "Every policy-change notice sent")
NOTICE_RESENT = action("policy.notice_resent", "Policy-change notice sent again")
NOTICE_CONFIRMED = action("policy.notice_confirmed", "Policy-change notice acknowledged")
ACCEPTED = action("policy.accepted", "Policy version accepted")
