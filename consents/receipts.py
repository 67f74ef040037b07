"""Kantara Consent Receipts (v1.1.0) for consent events: what the person is given, and can download, as
proof of each answer they gave (PM-0-2).

One receipt per ledger event, refusals, withdrawals and expiries included: the receipt's ID is the
event's `receipt_id`, and its time is when the event took effect. The receipt is built from the event and
the register as it stands (purpose, data categories, recipients); the event itself, with the hash of the
exact notice text, is the record that does not change. The specification has no field for *what* the
answer was (it was written for consents given), so the ledger's own facts -- the action, the notice
version and hash, the policy version, the place in the hash chain -- travel in one extension member,
`x-privacyops`, which our schema allows and a reader that follows only the specification ignores
(docs/consents.md says why); the official schema leaves every object open, so it allows it too.

Every receipt passes two schemas: the Kantara Initiative's published v1.1 schema (vendored, with its
source noted) and ours, which adds what the specification's prose requires and closes every object. The
controller's own name, address, e-mail and phone come from `inventory.ropa.controller_details()`, the same
place the record of processing reads.
"""

from __future__ import annotations

import datetime
import json
import uuid
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import Q

from inventory.ropa import controller_details
from retention.periods import parse_period

from .models import ConsentEvent, ConsentPurpose, CookieInventory, VisitorLink

RECEIPT_VERSION = "KI-CR-v1.1.0"
RECEIPT_SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "kantara-consent-receipt-v1.1.schema.json"
# The schema the Kantara Initiative publishes for v1.1 (draft-04), vendored unchanged but for its two comment
# lines (see kantara-consent-receipt-v1.1.official.SOURCE.md): every receipt must pass it as well as ours.
OFFICIAL_SCHEMA_PATH = RECEIPT_SCHEMA_PATH.with_name("kantara-consent-receipt-v1.1.official.schema.json")
EXTENSION = "x-privacyops"

Method = ConsentEvent.Method

# How each method reached us, in the receipt's words (the specification's collectionMethod).
COLLECTION_METHODS = {
    Method.SIGNUP: "Checkbox on the sign-up form",
    Method.BANNER: "Button in the cookie banner",
    Method.PORTAL: "Switch on the My consents page",
    Method.API: "Collected by the service and recorded through the consent API",
    Method.GPC: "Global Privacy Control signal sent by the browser",
    Method.STAFF: "Recorded by staff on the person's documented instruction",
    Method.IMPORT: "Imported from an earlier consent system",
    Method.EXPIRY: "The consent's lifetime ended",
}
# The person acted on the question (a click, a tick, a written instruction): EXPLICIT; otherwise IMPLICIT.
EXPLICIT_METHODS = frozenset({Method.SIGNUP, Method.BANNER, Method.PORTAL, Method.API, Method.STAFF})


@cache
def receipt_schema() -> dict:
    """Our JSON Schema (draft 2020-12) for receipts: the official one's rules, with every object closed."""
    return json.loads(RECEIPT_SCHEMA_PATH.read_text(encoding="utf-8"))


@cache
def official_receipt_schema() -> dict:
    """The Kantara Initiative's own JSON Schema for v1.1 (draft-04)."""
    return json.loads(OFFICIAL_SCHEMA_PATH.read_text(encoding="utf-8"))


def _service_name() -> str:
    return getattr(settings, "CONSENT_SERVICE_NAME", "Qwen Chat")


def _controller(details: dict) -> dict:
    """The controller's own name, postal address (an object, as the official schema requires, in the
    specification example's streetAddress/addressCountry shape), e-mail and telephone; `contact` names
    whom to write to about the processing, our DPO."""
    parts = urlsplit(settings.POLICY_URL)
    return {
        "piiController": details["name"],
        "onBehalf": False,
        "contact": details["dpo"]["name"],
        "address": {"streetAddress": details["address"], "addressCountry": details["address_country"]},
        "email": details["email"],
        "phone": details["phone"],
        "piiControllerUrl": f"{parts.scheme}://{parts.netloc}/",
    }


def _duration_words(lifetime: str) -> str:
    period = parse_period(lifetime)
    parts = []
    for amount, unit in ((period.years, "year"), (period.months, "month")):
        if amount:
            parts.append(f"{amount} {unit}{'s' if amount != 1 else ''}")
    days, seconds = period.fixed.days, period.fixed.seconds
    if days:
        parts.append(f"{days} day{'s' if days != 1 else ''}")
    if seconds:
        hours = seconds / 3600
        parts.append(f"{hours:g} hour{'s' if hours != 1 else ''}")
    return " and ".join(parts)


def _termination(purpose: ConsentPurpose) -> str:
    if purpose.is_necessary:
        return "Strictly necessary for the service: it lasts while the service is used and cannot be refused."
    if purpose.lifetime.strip():
        return (
            f"When you withdraw it, or {_duration_words(purpose.lifetime)} ({purpose.lifetime}) after you gave it, "
            "when we ask you again."
        )
    return "When you withdraw it."


def _purpose_facts(purpose: ConsentPurpose) -> dict:
    """The parts of a receipt that depend only on the purpose (read once per purpose, not per event)."""
    register = purpose.purpose
    categories = [a.category.name for a in register.activities.select_related("category").order_by("category__code")]
    recipients = list(register.recipients.order_by("name").values_list("name", flat=True))
    cookie_providers = sorted(
        set(
            CookieInventory.objects.filter(category=purpose, party=CookieInventory.Party.THIRD, is_active=True)
            .exclude(provider="")
            .values_list("provider", flat=True)
        )
    )
    third_parties = list(dict.fromkeys([*recipients, *cookie_providers]))
    disclosure = bool(third_parties) or purpose.is_sale_or_sharing
    category = list(dict.fromkeys(term for term in (purpose.dpv, register.dpv) if term)) or [register.name]
    facts = {
        "purposeCategory": category,
        "piiCategory": categories or [f"The data {register.name.lower()} needs (the register lists no categories yet)"],
        "primaryPurpose": purpose.is_necessary,
        "termination": _termination(purpose),
        "thirdPartyDisclosure": disclosure,
    }
    if disclosure:
        facts["thirdPartyName"] = "; ".join(third_parties) or "Third parties not yet named in the register (ask the DPO)"
    return facts


def _moment(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def receipt_for(event: ConsentEvent, *, _facts: dict | None = None) -> dict:
    """The Kantara Consent Receipt v1.1.0 for one ledger event, as a JSON-ready dict."""
    purpose = event.purpose
    facts = _facts if _facts is not None else _purpose_facts(purpose)
    controller = controller_details()
    notice = f"notice version {event.notice_version}, SHA-256 {event.notice_sha256}" if event.notice_sha256 else "no notice text"
    receipt = {
        "version": RECEIPT_VERSION,
        "jurisdiction": event.jurisdiction or "DEFAULT",
        "consentTimestamp": int(event.effective_at.timestamp()),
        "collectionMethod": COLLECTION_METHODS.get(event.method, event.get_method_display()),
        "consentReceiptID": str(event.receipt_id),
        "language": event.language or "en",
        "piiPrincipalId": str(event.subject_ref) if event.subject_ref else f"visitor:{event.visitor_id}",
        "piiControllers": [_controller(controller)],
        "policyUrl": settings.POLICY_URL,
        "services": [
            {
                "service": _service_name(),
                "purposes": [
                    {
                        "purpose": f"{purpose.name}: {purpose.description} ({notice})",
                        "consentType": "EXPLICIT" if event.method in EXPLICIT_METHODS else "IMPLICIT",
                        **facts,
                    }
                ],
            }
        ],
        "sensitive": False,
        "spiCat": [],
        EXTENSION: {
            "action": event.action,
            "method": event.method,
            "purposeCode": purpose.code,
            "effectiveAt": _moment(event.effective_at),
            "recordedAt": _moment(event.recorded_at),
            "noticeVersion": event.notice_version,
            "noticeSha256": event.notice_sha256,
            "policyVersion": event.policy_label,
            "gpc": event.gpc,
            "chainSeq": event.seq,
            "eventHash": event.hash,
            # The DPO's own contact (the controller's is in piiControllers), as the policy publishes it.
            "dpo": {
                "name": controller["dpo"]["name"],
                "email": controller["dpo"]["email"],
                "postalAddress": controller["dpo"]["postal_address"],
            },
        },
    }
    return receipt


def receipts_for(*, subject_ref: uuid.UUID | str | None = None, visitor_id: uuid.UUID | str | None = None) -> list[dict]:
    """Every receipt of an account (its own events and those of the visitors linked to it) or of a visitor,
    oldest first."""
    if (subject_ref is None) == (visitor_id is None):
        raise ValueError("Give exactly one of subject_ref and visitor_id.")
    if subject_ref is not None:
        visitors = VisitorLink.objects.filter(subject_ref=subject_ref).values("visitor_id")
        events = ConsentEvent.objects.filter(Q(subject_ref=subject_ref) | Q(visitor_id__in=visitors))
    else:
        events = ConsentEvent.objects.filter(visitor_id=visitor_id)
    facts: dict[int, dict] = {}
    receipts = []
    for event in events.select_related("purpose__purpose").order_by("effective_at", "id"):
        if event.purpose_id not in facts:
            facts[event.purpose_id] = _purpose_facts(event.purpose)
        receipts.append(receipt_for(event, _facts=facts[event.purpose_id]))
    return receipts
