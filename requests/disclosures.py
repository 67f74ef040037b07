"""The disclosure log (PM-IV-5): each one-off disclosure of a person's data to an authority or other third
party outside the register's regular recipients -- who asked, on what legal ground, which categories,
when, and which DPO approved it. Access packages list the subject's disclosures (`disclosures_for`).

Invariants:
- Only the DPO role records and approves disclosures: both the recording staff member and the approver
  must hold `requests.add_disclosure`, which the role sync gives the DPO alone (`requests.*`); an approver
  must also be an active staff account.
- A disclosure is found by `subject_ref`, so it stays in the subject's record (and in a later access
  package) whatever happens to the account's other fields.
- The audit event names the disclosure, its categories and its approver by id; never the authority's
  case reference or notes, which can describe the person.
"""

from __future__ import annotations

import datetime
import uuid

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from inventory.models import DataCategory
from privacyops.audit import audit_record

from .models import Disclosure

PERMISSION = "requests.add_disclosure"
# The form's clock and the server's may differ a little; a disclosure far in the future is a typo.
CLOCK_SKEW = datetime.timedelta(minutes=5)


def _subject(subject):
    """(account or None, subject_ref): a User, or the subject_ref of an account that may be gone."""
    if isinstance(subject, uuid.UUID):
        from accounts.models import User

        return User.objects.filter(subject_ref=subject).first(), subject
    ref = getattr(subject, "subject_ref", None)
    if not isinstance(ref, uuid.UUID):
        raise ValidationError({"subject": "Name the subject by their account or their subject_ref."})
    return subject, ref


def disclosure_record(
    *,
    subject,
    authority: str,
    legal_ground: str,
    reference: str,
    category_codes,
    disclosed_at: datetime.datetime,
    approved_by,
    actor,
    notes: str = "",
) -> Disclosure:
    """Log one disclosure (PM-IV-5). `subject` is the account or, once it is erased, its subject_ref."""
    if actor is None or not actor.has_perm(PERMISSION):
        raise PermissionDenied(f"Recording a disclosure needs the permission {PERMISSION} (the DPO's).")
    account, subject_ref = _subject(subject)
    errors: dict[str, str] = {}
    authority = (authority or "").strip()
    legal_ground = (legal_ground or "").strip()
    if not authority:
        errors["authority"] = "Say who asked for the data (court, police, regulator ...)."
    if not legal_ground:
        errors["legal_ground"] = "Give the legal ground the disclosure was made on (the order, the statute)."
    codes = sorted({c.strip() for c in category_codes or () if c and c.strip()})
    categories = list(DataCategory.objects.filter(code__in=codes))
    unknown = sorted(set(codes) - {c.code for c in categories})
    if not codes:
        errors["category_codes"] = "Name at least one data category that was disclosed."
    elif unknown:
        errors["category_codes"] = f"No data category in the register has the code: {', '.join(unknown)}."
    if disclosed_at is None or timezone.is_naive(disclosed_at):
        errors["disclosed_at"] = "Give the date and time of the disclosure, with its time zone."
    elif disclosed_at > timezone.now() + CLOCK_SKEW:
        errors["disclosed_at"] = "A disclosure is logged after it happened, not before."
    if approved_by is None or not (approved_by.is_active and approved_by.is_staff and approved_by.has_perm(PERMISSION)):
        errors["approved_by"] = "A disclosure is approved by an active staff member in the DPO role."
    if errors:
        raise ValidationError(errors)

    with transaction.atomic():
        disclosure = Disclosure.objects.create(
            subject=account,
            subject_ref=subject_ref,
            authority=authority,
            legal_ground=legal_ground,
            reference=(reference or "").strip(),
            disclosed_at=disclosed_at,
            approved_by=approved_by,
            notes=(notes or "").strip(),
            created_by=actor,
        )
        disclosure.categories.set(categories)
        audit_record(
            actor=actor,
            action="disclosure.recorded",
            target=disclosure,
            subject=subject_ref,
            details={"categories": codes, "approved_by": approved_by.pk, "disclosed_at": disclosed_at},
        )
    return disclosure


def disclosures_for(*, subject_ref) -> QuerySet[Disclosure]:
    """The subject's disclosures, latest first, with their categories (for the access package and the workbench)."""
    return (
        Disclosure.objects.filter(subject_ref=subject_ref)
        .select_related("approved_by")
        .prefetch_related("categories")
        .order_by("-disclosed_at", "-pk")
    )
