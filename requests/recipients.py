"""Recipients told (GDPR Art. 19): after a rectification, erasure or restriction, every recipient that receives
an affected data category gets a notification task, which the DPO marks done (a webhook comes later).

Invariants:
- Who receives what is the register's answer (`inventory.Recipient.data_categories`), never a list kept here.
- One `RecipientNotice` per request and recipient (a unique constraint): a later change on the same request
  merges its categories into the existing task. A task already marked done that gains a category the
  recipient was not told about is opened again, since that recipient has not been told everything yet.
- The request row is locked while its tasks are written, so two fulfilment steps of one request (a
  rectification applied while a restriction is placed) merge instead of racing for the unique row.
- Timeline and audit carry register codes (recipients, categories) and ids only.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from inventory.models import DataCategory, Recipient

from .models import RecipientNotice, RightsRequest
from .timeline import request_event_record

logger = logging.getLogger(__name__)

DONE_PERMISSION = "requests.change_recipientnotice"


def _codes(category_codes) -> tuple[list[str], list[str]]:
    """(codes the register knows, codes it does not). No recipient can receive a category the register lacks
    (`Recipient.data_categories` points at its rows), so an unknown code finds nobody; it is logged and kept
    on the timeline instead of failing the fulfilment step that asked."""
    codes = sorted({code.strip() for code in category_codes if code and code.strip()})
    known = set(DataCategory.objects.filter(code__in=codes).values_list("code", flat=True))
    return [code for code in codes if code in known], [code for code in codes if code not in known]


def recipient_notices_create(*, rights_request: RightsRequest, category_codes) -> list[RecipientNotice]:
    """Create (or extend) a notification task for each recipient receiving any of `category_codes` (Art. 19).

    Returns the tasks this call created or changed, in recipient order; an empty list when no recipient
    receives these categories or every task already covers them. Codes the register does not know find no
    recipient (logged).
    """
    codes, unknown = _codes(category_codes)
    if unknown:
        logger.warning("request %s: data categories not in the register, no recipient to tell: %s", rights_request.pk, unknown)
    if not codes:
        return []
    recipients = (
        Recipient.objects.filter(data_categories__code__in=codes).distinct().order_by("code").prefetch_related("data_categories")
    )
    touched: list[RecipientNotice] = []
    with transaction.atomic():
        locked = RightsRequest.objects.locked(rights_request.pk)
        existing = {notice.recipient_id: notice for notice in RecipientNotice.objects.filter(request=locked)}
        for recipient in recipients:
            received = sorted(c.code for c in recipient.data_categories.all() if c.code in codes)
            notice = existing.get(recipient.pk)
            if notice is None:
                touched.append(RecipientNotice.objects.create(request=locked, recipient=recipient, categories=received))
                continue
            new = sorted(set(received) - set(notice.categories))
            if not new:
                continue
            notice.categories = sorted(set(notice.categories) | set(new))
            fields = ["categories"]
            if notice.done_at is not None:
                notice.done_at = None
                notice.done_by = None
                fields += ["done_at", "done_by"]
            notice.save(update_fields=fields)
            touched.append(notice)
        if touched:
            details = {
                "notices": [n.pk for n in touched],
                "recipients": [n.recipient.code for n in touched],
                "categories": codes,
            }
            if unknown:
                details["unknown_categories"] = unknown
            request_event_record(
                rights_request=locked,
                action="rights_request.recipient_notices_created",
                message=f"Recipients to tell of the change (GDPR Art. 19): {', '.join(details['recipients'])}.",
                details=details,
            )
    return touched


def recipient_notice_done(*, notice: RecipientNotice, actor, note: str = "") -> RecipientNotice:
    """The DPO has told the recipient (by whatever channel the contract with it names); `note` says how."""
    if actor is None or not actor.has_perm(DONE_PERMISSION):
        raise PermissionDenied(f"Marking a recipient as told needs the permission {DONE_PERMISSION}.")
    with transaction.atomic():
        locked = RecipientNotice.objects.select_for_update(of=("self",)).select_related("request", "recipient").get(pk=notice.pk)
        if locked.done_at is not None:
            raise ValidationError(f"{locked.recipient} was already marked as told on {locked.done_at:%Y-%m-%d %H:%M}.")
        locked.done_at = timezone.now()
        locked.done_by = actor
        locked.note = (note or "").strip()
        locked.save(update_fields=["done_at", "done_by", "note"])
        details = {"notice": locked.pk, "recipient": locked.recipient.code, "categories": locked.categories}
        request_event_record(
            rights_request=locked.request,
            action="rights_request.recipient_notice_done",
            actor=actor,
            message=f"Recipient told of the change (GDPR Art. 19): {locked.recipient.code}.",
            details=details,
        )
    for field in ("done_at", "done_by_id", "note"):
        setattr(notice, field, getattr(locked, field))
    return notice
