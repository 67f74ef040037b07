"""The e-mails a requester receives about their request (PM-IX, PM-XI-1).

Each one is a plain-text template, `templates/requests/email/<template>.txt`, whose first line is the
subject. Every template includes `_contact.txt`, so the DPO's contact is in every e-mail (PM-XI-1).

The e-mail leaves after the transaction commits: an action that rolls back sends nothing. The timeline
entry (RequestEvent kind=email) and the audit event are written in the caller's transaction, so they
exist exactly when the action does. A send that fails after the commit is logged (on_commit robust=True)
and does not undo the action.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from . import deadlines
from .models import DeadlineRule, PeriodUnit, RequestEvent, RightsRequest
from .timeline import request_event_record

logger = logging.getLogger(__name__)

TEMPLATES = frozenset(
    {
        "acknowledgement",
        "duplicate",
        "extension",
        "rejection",
        "completion",
        "erasure_done",
        "package_ready",
        "downloaded",
        "download_link",
        "verification",
        "unverified",
    }
)


def controller_contact() -> dict:
    return {
        "name": settings.CONTROLLER_NAME,
        "dpo_name": settings.DPO_NAME,
        "dpo_email": settings.DPO_EMAIL,
        "dpo_postal_address": settings.DPO_POSTAL_ADDRESS,
    }


def site_url(path: str) -> str:
    """A whole URL for a link in an e-mail: e-mails are sent outside any HTTP request (settings.SITE_URL)."""
    return settings.SITE_URL.rstrip("/") + path


def request_email_render(*, rights_request: RightsRequest, template: str, **context) -> tuple[str, str]:
    """(subject, body) of one e-mail about `rights_request`."""
    if template not in TEMPLATES:
        raise ValueError(f"Unknown request e-mail template {template!r} (known: {', '.join(sorted(TEMPLATES))}).")
    full = {
        "reference": rights_request.reference,
        "right": rights_request.get_right_display().lower(),
        "received_at": rights_request.received_at,
        "due_at": rights_request.effective_due_at,
        "hour_period": _hour_period(rights_request),
        "controller": controller_contact(),
        **context,
    }
    zone = deadlines.deadline_zone()
    full.setdefault("zone", zone.key)
    # Dates are printed where the deadline is counted (its due day ends there), not in the server's zone.
    with timezone.override(zone):
        text = render_to_string(f"requests/email/{template}.txt", full).lstrip("\n")
    subject, _, body = text.partition("\n")
    return " ".join(subject.split()), body.lstrip("\n")


def _hour_period(rights_request: RightsRequest) -> bool:
    # Only an hour-based period (Indonesia's 3x24 hours) needs the time of day in the e-mail.
    try:
        return deadlines.rule_for(rights_request.jurisdiction, rights_request.right).period_unit == PeriodUnit.HOURS
    except DeadlineRule.DoesNotExist:
        # A missing rule must not stop an e-mail: the date alone is still right.
        return False


def request_email_send(
    *, rights_request: RightsRequest, template: str, actor=None, to: str | None = None, details: dict | None = None, **context
) -> RequestEvent:
    """Render, record (timeline + audit, in the current transaction) and send after commit.

    `to`: another address than the request's contact (a verification link goes to the account's own).
    The body is never stored or logged: some carry a single-use token."""
    subject, body = request_email_render(rights_request=rights_request, template=template, **context)
    message = EmailMessage(
        subject=subject, body=body, to=[to or rights_request.contact_email], headers={"Auto-Submitted": "auto-generated"}
    )
    reference = rights_request.reference

    def send():
        message.send()
        logger.info("rights request %s: %s e-mail sent", reference, template)

    with transaction.atomic():
        event = request_event_record(
            rights_request=rights_request,
            action="rights_request.email_sent",
            actor=actor,
            kind=RequestEvent.Kind.EMAIL,
            message=f"E-mail sent: {subject}",
            details={"template": template, **(details or {})},
            audit_details={"template": template},
        )
        transaction.on_commit(send, robust=True)
    return event
