"""What the consents app writes to the audit trail (see privacyops.audit_actions)."""

from inventory.audit_actions import register_actions
from privacyops.audit_actions import action

from .models import ConsentNotice, ConsentPurpose, CookieInventory

# The ledger writes consent.<ConsentEvent.Action> for every event about an account.
GIVEN = action("consent.given", "Consent given")
REFUSED = action("consent.refused", "Consent refused")
WITHDRAWN = action("consent.withdrawn", "Consent withdrawn")
EXPIRED = action("consent.expired", "Consent lapsed")
EXPIRED_DUE = action("consent.expired_due", "Lapsed consents recorded as expired")
VISITOR_LINKED = action("consent.visitor_linked", "Browser's consent choices linked to an account")
IMPORTED = action("consent.imported", "Consents imported")
CHAINS_VERIFIED = action("consent.chains_verified", "Consent ledger verified")
RESTRICTION_PLACED = action("consent.restriction_placed", "Processing restricted")
RESTRICTION_LIFTED = action("consent.restriction_lifted", "Processing restriction lifted")
OBJECTION_RECORDED = action("consent.objection_recorded", "Objection recorded")
OBJECTION_WITHDRAWN = action("consent.objection_withdrawn", "Objection withdrawn")
PROOF_EXPORTED = action("consent.proof_exported", "Consent proof exported")
API_KEY_CREATED = action("consent.api_key_created", "Consent API key created")
API_KEY_REVOKED = action("consent.api_key_revoked", "Consent API key revoked")
SIGNED_UP = action("account.signed_up", "Account created at sign-up")

# Configuration rows saved through the register's audited services (register.<model>.<verb>).
for _model in (ConsentPurpose, ConsentNotice, CookieInventory):
    register_actions(_model)
