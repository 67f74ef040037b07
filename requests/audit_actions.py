"""What the requests app writes to the audit trail (see privacyops.audit_actions)."""

from inventory.audit_actions import register_actions
from privacyops.audit_actions import action

from .models import DeadlineRule

# The workflow: rights_request.<step>, each with a RequestEvent on the request's own timeline.
SUBMITTED = action("rights_request.submitted", "Rights request received")
VERIFIED = action("rights_request.verified", "Requester's identity verified")
AGENT_VERIFIED = action("rights_request.agent_verified", "Agent's authority verified")
ASSIGNED = action("rights_request.assigned", "Rights request assigned")
MOVED = action("rights_request.moved", "Rights request status changed")
EXTENDED = action("rights_request.extended", "Rights request deadline extended")
NOTE_ADDED = action("rights_request.note_added", "Note added to a rights request")
REMINDER_SENT = action("rights_request.reminder_sent", "Deadline reminder sent")
EMAIL_SENT = action("rights_request.email_sent", "E-mail sent to the requester")
VERIFICATION_LINK_SENT = action("rights_request.verification_link_sent", "Verification link sent")
RESTRICTION_PLACED = action("rights_request.restriction_placed", "Restriction placed for a request")
OBJECTION_RECORDED = action("rights_request.objection_recorded", "Objection recorded for a request")
CONSENT_WITHDRAWN = action("rights_request.consent_withdrawn", "Consent withdrawn for a request")
RECTIFICATION_PROPOSED = action("rights_request.rectification_proposed", "Rectification proposed")
RECTIFICATION_REJECTED = action("rights_request.rectification_rejected", "Rectification rejected")
RECTIFICATION_APPLIED = action("rectification.applied", "Rectification applied to the data")
RECIPIENT_NOTICES_CREATED = action("rights_request.recipient_notices_created", "Recipients to tell listed (Art. 19)")
RECIPIENT_NOTICE_DONE = action("rights_request.recipient_notice_done", "Recipient told (Art. 19)")
# Access packages.
PACKAGE_READY = action("rights_request.package_ready", "Access package built")
PACKAGE_FAILED = action("rights_request.package_failed", "Access package failed")
PACKAGE_NOT_CLOSED = action("rights_request.package_not_closed", "Package ready; request left open for staff")
PACKAGE_EXPIRED = action("rights_request.package_expired", "Access package expired and deleted")
DOWNLOAD_LINK_ISSUED = action("rights_request.download_link_issued", "Download link issued")
PERSONAL_DATA_DOWNLOADED = action("personal_data.downloaded", "Access package downloaded")
EXPORT_WRITTEN = action("dsr.export_written", "Access package written by the dsr command")
# Erasure.
ERASURE_STARTED = action("erasure.started", "Erasure started")
SUBJECT_ERASED = action("erasure.subject_erased", "Person's data erased")
ERASURE_COMPLETED = action("erasure.completed", "Erasure completed")
ERASURE_FAILED = action("erasure.failed", "Erasure failed")
ERASURE_REPLAYED = action("erasure.replayed", "Erasures replayed after a restore")
ERASE_PREVIEWED = action("dsr.erase_previewed", "Erasure previewed by the dsr command")
# Disclosures (PM-IV-5).
DISCLOSURE_RECORDED = action("disclosure.recorded", "Disclosure to an authority recorded")

# The clocks are configuration saved through the register's audited services (register.deadlinerule.*).
register_actions(DeadlineRule)
