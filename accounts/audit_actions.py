"""What the accounts app writes to the audit trail (see privacyops.audit_actions)."""

from privacyops.audit_actions import action

DEMO_DPO_CREATED = action("account.demo_dpo_created", "Demo DPO account created")
DEMO_DPO_PASSWORD_RESET = action("account.demo_dpo_password_reset", "Demo DPO password reset")
REAUTH_LOCKED = action("account.reauth_locked", "Re-authentication locked after failures")
REAUTHENTICATED = action("account.reauthenticated", "Signed-in person re-authenticated")
STAFF_CHANGED = action("account.staff_changed", "Staff account or roles changed")
ROLES_SYNCED = action("roles.synced", "Staff roles synchronised")
