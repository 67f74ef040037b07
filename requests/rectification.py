"""Rectification (PM-IX-3, GDPR Art. 16): the subject proposes new values for their registered, rectifiable
fields; the DPO sees old and new side by side and applies or rejects each.

Which fields can be corrected is the registry's answer (`privacy.Field(rectifiable=True)` in each app's
privacy.py): nothing here names a model. A value is checked by the model's own rules -- the field's
`clean` (its type, length, choices, validators) and then `full_clean` of the record with the new value, so
the model's `clean()` (the account lowercases its email) and its constraints (a region must belong to the
country) apply as they do in any form. Proposed changes to one record are validated together: a move
from US/US-CA to DE/"" is valid only as a pair, and can also be decided as a pair
(`rectification_decide_many`).

Invariants:
- Only the subject's own records can be corrected: each target is looked up through the registry's
  `subject_q` for the request's account, at proposal and again when applied.
- Nothing changes before the request is approved: an item is applied only while the request is
  `fulfilling`, by a user holding `requests.approve_rightsrequest` and the change permission of the
  target's model (so the DPO, who answers for account and chat data; an analyst may reject, not apply).
- The old value is captured at proposal. If the record no longer holds it when the DPO applies, the
  item is refused as stale: the DPO would otherwise overwrite a change they never saw.
- Timeline and audit name the model, record id and field, never the old or new value (those stay on the
  item, for the DPO and the subject's access package).
- Applied changes create Art. 19 notification tasks for the recipients of the fields' categories.
- Closing is the DPO's explicit act, `rectification_complete`, once every item is decided: it closes the
  request through `services.rights_request_close` (partially when some items were rejected) or, when
  nothing was applied, rejects it through `services.rights_request_reject`, so the requester gets the
  usual completion or rejection e-mail with the summary as its outcome. Deciding the last item does not
  close the request by itself: the DPO may still add a correction the subject sent later.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from copy import copy

from django.apps import apps
from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from inventory.models import Jurisdiction
from inventory.selectors import jurisdiction_for_subject
from privacyops.audit import audit_record
from privacyops.privacy import NotRegistered, registry

from . import services
from .models import RectificationItem, Right, RightsRequest, Status
from .recipients import recipient_notices_create
from .services import RequestActionError
from .timeline import request_event_record

PERMISSION = "requests.approve_rightsrequest"
APPLY_STATUSES = frozenset({Status.FULFILLING})
REJECT_STATUSES = frozenset({Status.IN_PROGRESS, Status.AWAITING_APPROVAL, Status.FULFILLING})
Decision = RectificationItem.Decision


# --- Reading the registry ---------------------------------------------------------------------------------


def _rectifiable_declarations():
    for declaration in registry.personal():
        names = [name for name, spec in declaration.fields.items() if spec.rectifiable]
        if names:
            yield declaration, names


def _text(value) -> str:
    """How a value is stored on the item and compared: the empty string for None, ISO 8601 for dates."""
    if value is None:
        return ""
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    return str(value)


def rectifiable_fields(*, subject) -> list[dict]:
    """Every rectifiable field of every record the registry finds for `subject`, with its current value.

    One query per registered model with rectifiable fields. Each entry: model_label, object_pk, field,
    meaning (the registry's plain-language text), value (as text), category, model_name.
    """
    entries: list[dict] = []
    for declaration, names in _rectifiable_declarations():
        condition = declaration.subject_q(subject)
        if condition is None:
            continue
        model = declaration.model
        rows = model._default_manager.filter(condition).order_by("pk").values_list("pk", *names)
        for pk, *values in rows.iterator():
            for name, value in zip(names, values, strict=True):
                spec = declaration.fields[name]
                entries.append(
                    {
                        "model_label": declaration.label,
                        "model_name": str(model._meta.verbose_name),
                        "object_pk": str(pk),
                        "field": name,
                        "meaning": spec.meaning,
                        "category": spec.category,
                        "value": _text(value),
                    }
                )
    return entries


def _key(model_label: str, object_pk, field: str) -> str:
    return f"{model_label}:{object_pk}:{field}"


def _target(subject, model_label: str, object_pk, field: str):
    """(declaration, record) for one rectifiable field of one of the subject's records; ValidationError otherwise."""
    key = _key(model_label, object_pk, field)
    try:
        model = apps.get_model(model_label)
        declaration = registry.get(model)
    except (LookupError, ValueError, NotRegistered):
        raise ValidationError({key: "There is no such record type."}) from None
    spec = declaration.fields.get(field)
    if spec is None or not spec.rectifiable:
        raise ValidationError({key: "This field cannot be corrected through a request."})
    condition = declaration.subject_q(subject)
    try:
        record = model._default_manager.filter(condition).filter(pk=object_pk).first() if condition is not None else None
    except (ValueError, TypeError, ValidationError):
        record = None
    if record is None:
        raise ValidationError({key: "This is not one of the subject's records."})
    return declaration, record


def _validated(record, raw: dict[str, object], *, key_of) -> dict[str, object]:
    """The model's own validation of `raw` (field -> new value) applied to a copy of `record`: each field's
    `clean`, then `full_clean` of the record with all the new values. Returns field -> cleaned value as the
    model would store it (after its `clean()`). Errors on fields not being changed are the record's own
    business and are ignored; errors on the changed fields and whole-record errors are raised, keyed."""
    model = type(record)
    candidate = copy(record)
    errors: dict[str, list] = {}
    for name, value in raw.items():
        model_field = model._meta.get_field(name)
        if value is None or (value == "" and model_field.null):
            value = None if model_field.null else ""
        try:
            setattr(candidate, model_field.attname, model_field.clean(value, candidate))
        except ValidationError as error:
            errors.setdefault(key_of(name), []).extend(error.messages)
    if errors:
        raise ValidationError(errors)
    try:
        candidate.full_clean()
    except ValidationError as error:
        for name, problems in error.error_dict.items():
            if name in raw:
                errors.setdefault(key_of(name), []).extend(_neutral(problems))
            elif name == NON_FIELD_ERRORS:
                for changed in raw:
                    errors.setdefault(key_of(changed), []).extend(_neutral(problems))
    if errors:
        raise ValidationError(errors)
    return {name: getattr(candidate, model._meta.get_field(name).attname) for name in raw}


def _neutral(problems) -> list[str]:
    """Messages as the requester may read them: a unique clash says nothing about the other record (whether
    another account uses an address is not theirs to learn)."""
    messages = []
    for problem in problems:
        if getattr(problem, "code", None) == "unique":
            messages.append("This value cannot be used here; write to the data protection officer if you think it is yours.")
        else:
            messages.extend(problem.messages)
    return messages


# --- Proposing ---------------------------------------------------------------------------------------------


def _require_rectification(rights_request: RightsRequest) -> None:
    if rights_request.right != Right.RECTIFICATION:
        raise RequestActionError(f"Request {rights_request.reference} is not a rectification request.", code="wrong_right")
    if not rights_request.is_open:
        raise RequestActionError(f"Request {rights_request.reference} is closed.", code="closed")
    if rights_request.subject_id is None:
        raise RequestActionError(
            f"Request {rights_request.reference} has no account: corrections apply to an account's records.", code="no_subject"
        )


def rectification_propose(*, rights_request: RightsRequest, changes: list[dict], actor=None) -> list[RectificationItem]:
    """Record proposed corrections (each: model_label, object_pk, field, new_value) as pending items.

    Every change is validated before anything is stored; errors are raised together, keyed
    "model_label:object_pk:field". `actor` is the staff member who entered them (None: the subject).
    """
    if not changes:
        raise ValidationError("Propose at least one correction.")
    with transaction.atomic():
        locked = RightsRequest.objects.locked(rights_request.pk)
        _require_rectification(locked)
        subject = locked.subject
        pending = set(
            RectificationItem.objects.filter(request=locked, decision=Decision.PENDING).values_list(
                "model_label", "object_pk", "field"
            )
        )
        errors: dict[str, list] = {}
        grouped: dict[tuple[str, str], dict] = defaultdict(dict)
        records = {}
        for change in changes:
            model_label = str(change.get("model_label", ""))
            object_pk = str(change.get("object_pk", ""))
            field = str(change.get("field", ""))
            key = _key(model_label, object_pk, field)
            try:
                declaration, record = _target(subject, model_label, object_pk, field)
            except ValidationError as error:
                errors.setdefault(key, []).extend(error.messages)
                continue
            label = declaration.label  # the registry's spelling, whatever the caller's case
            if field in grouped.get((label, object_pk), {}) or (label, object_pk, field) in pending:
                errors.setdefault(key, []).append("A correction of this field is already proposed.")
                continue
            grouped[(label, object_pk)][field] = change.get("new_value")
            records[(label, object_pk)] = record

        items: list[RectificationItem] = []
        for (label, object_pk), raw in grouped.items():
            record = records[(label, object_pk)]
            try:
                cleaned = _validated(
                    record, raw, key_of=lambda name, label=label, object_pk=object_pk: _key(label, object_pk, name)
                )
            except ValidationError as error:
                for key, messages in error.message_dict.items():
                    errors.setdefault(key, []).extend(messages)
                continue
            for field, value in cleaned.items():
                old = _text(getattr(record, record._meta.get_field(field).attname))
                new = _text(value)
                if old == new:
                    errors.setdefault(_key(label, object_pk, field), []).append("The record already holds this value.")
                    continue
                items.append(
                    RectificationItem(
                        request=locked, model_label=label, object_pk=object_pk, field=field, old_value=old, new_value=new
                    )
                )
        if errors:
            raise ValidationError(errors)
        items = RectificationItem.objects.bulk_create(items)
        if not all(item.pk for item in items):  # SQLite before 3.35 returns no ids; read them back in order
            items = list(RectificationItem.objects.filter(request=locked).order_by("-pk")[: len(items)])[::-1]
        fields = [f"{item.model_label}.{item.field}" for item in items]
        details = {"items": [item.pk for item in items], "fields": fields}
        request_event_record(
            rights_request=locked,
            action="rights_request.rectification_proposed",
            actor=actor,
            message=f"Corrections proposed for {len(items)} field(s): {', '.join(fields)}.",
            details=details,
        )
    return items


# --- Deciding ----------------------------------------------------------------------------------------------


def _change_permission(model) -> str:
    return f"{model._meta.app_label}.change_{model._meta.model_name}"


def _consequences(declaration, record, before: dict[str, str], after: dict[str, str], rights_request: RightsRequest) -> list[str]:
    """What else an applied change means, for the timeline (issue 5 section 4)."""
    if declaration.label != settings.AUTH_USER_MODEL:
        return []
    notes = []
    if {"country", "region"} & set(after):
        old = copy(record)
        for name, value in before.items():
            setattr(old, name, value)
        try:
            was, now = jurisdiction_for_subject(subject=old).code, jurisdiction_for_subject(subject=record).code
        except Jurisdiction.DoesNotExist:
            was = now = ""
        if was != now:
            notes.append(
                f"The subject's jurisdiction is now {now} (was {was}): new requests get its clock, and consent "
                f"decisions follow its lawful bases from now on. This request keeps {rights_request.jurisdiction.code}'s clock."
            )
    if "email" in after:
        notes.append(
            "The account now signs in with the corrected address; this request's contact address is unchanged, and "
            "support messages once sent without an account from the old address are no longer found by it. "
            "Consents and the audit trail follow the subject_ref and are unaffected."
        )
    return notes


def rectification_decide(*, item: RectificationItem, actor, apply: bool, note: str = "") -> RectificationItem:
    """Apply or reject one proposed correction (PM-IX-3). A rejection needs the reason (`note`), which the
    requester is told when the request is closed."""
    return rectification_decide_many(items=[item], actor=actor, apply=apply, note=note)[0]


def rectification_decide_many(*, items, actor, apply: bool, note: str = "") -> list[RectificationItem]:
    """Decide several pending items of one request at once: applied together, changes to one record are
    validated and saved together (a country and its region)."""
    items = list(items)
    if not items:
        raise ValidationError("Choose at least one proposed correction.")
    if len({item.request_id for item in items}) != 1:
        raise ValidationError("Decide the corrections of one request at a time.")
    note = (note or "").strip()
    if not apply and not note:
        raise ValidationError({"note": "Say why the correction is rejected: the requester is told."})
    if actor is None or not actor.has_perm(PERMISSION):
        raise PermissionDenied(f"Deciding a correction needs the permission {PERMISSION}.")

    with transaction.atomic():
        locked = RightsRequest.objects.locked(items[0].request_id)
        _require_rectification(locked)
        allowed = APPLY_STATUSES if apply else REJECT_STATUSES
        if locked.status not in allowed or locked.verified_at is None:
            what = "applied once the request is approved (fulfilling)" if apply else "rejected while the request is worked on"
            raise RequestActionError(
                f"Request {locked.reference} is {locked.get_status_display().lower()}: corrections are {what}.", code="status"
            )
        rows = list(RectificationItem.objects.select_for_update().filter(pk__in=[item.pk for item in items]).order_by("pk"))
        decided = [row for row in rows if row.decision != Decision.PENDING]
        if decided:
            raise ValidationError(f"Already decided: {', '.join(f'{row.model_label}.{row.field}' for row in decided)}.")
        now = timezone.now()
        consequences: list[str] = []
        categories: set[str] = set()
        if apply:
            by_record: dict[tuple[str, str], list[RectificationItem]] = defaultdict(list)
            for row in rows:
                by_record[(row.model_label, row.object_pk)].append(row)
            for (label, object_pk), record_items in by_record.items():
                consequences += _apply(locked, label, object_pk, record_items, actor)
                declaration = registry.get(apps.get_model(label))
                categories |= {declaration.fields[row.field].category for row in record_items}
        for row in rows:
            row.decision = Decision.APPLIED if apply else Decision.REJECTED
            row.decided_by = actor
            row.decided_at = now
            row.note = note
            row.save(update_fields=["decision", "decided_by", "decided_at", "note"])

        fields = [f"{row.model_label}.{row.field}" for row in rows]
        remaining = RectificationItem.objects.filter(request=locked, decision=Decision.PENDING).count()
        verb = "applied" if apply else "rejected"
        message = f"Correction {verb}: {', '.join(fields)}."
        if consequences:
            message += " " + " ".join(consequences)
        if not remaining:
            message += " Every proposed correction is decided: the request can be closed."
        details = {"items": [row.pk for row in rows], "fields": fields, "pending": remaining}
        # An applied correction is audited per value by `_apply` (aimed at the record it changed).
        request_event_record(
            rights_request=locked,
            action="rights_request.rectification_applied" if apply else "rights_request.rectification_rejected",
            actor=actor,
            message=message,
            details=details,
            audited=not apply,
        )
        if categories:
            recipient_notices_create(rights_request=locked, category_codes=sorted(categories))
    for item in items:
        row = next(row for row in rows if row.pk == item.pk)
        item.decision, item.decided_by, item.decided_at, item.note = row.decision, actor, row.decided_at, row.note
    return items


def _apply(rights_request: RightsRequest, label: str, object_pk: str, rows: list[RectificationItem], actor) -> list[str]:
    """Save the new values of one record (locked, still the subject's, still holding the old values)."""
    model = apps.get_model(label)
    if not actor.has_perm(_change_permission(model)):
        raise PermissionDenied(f"Applying a correction to {model._meta.verbose_name} records needs {_change_permission(model)}.")
    declaration, record = _target(rights_request.subject, label, object_pk, rows[0].field)
    record = model._default_manager.select_for_update().get(pk=record.pk)
    stale = [row for row in rows if _text(getattr(record, model._meta.get_field(row.field).attname)) != row.old_value]
    if stale:
        raise ValidationError(
            f"The record changed since the correction was proposed ({', '.join(row.field for row in stale)}): "
            "reject this proposal and ask for a new one."
        )
    raw = {row.field: row.new_value for row in rows}
    try:
        cleaned = _validated(record, raw, key_of=lambda name: name)
    except ValidationError as error:
        hint = " If another proposed correction of this record goes with it (a country and its region), decide them together."
        raise ValidationError({name: [*messages, hint.strip()] for name, messages in error.message_dict.items()}) from None
    before = {name: getattr(record, model._meta.get_field(name).attname) for name in raw}
    for name, value in cleaned.items():
        setattr(record, model._meta.get_field(name).attname, value)
    record.save(update_fields=[model._meta.get_field(name).attname for name in cleaned])
    for row in rows:
        audit_record(
            actor=actor,
            action="rectification.applied",
            target=record,
            subject=rights_request.subject_ref,
            details={"reference": rights_request.reference, "item": row.pk, "model": label, "field": row.field},
        )
    return _consequences(declaration, record, before, cleaned, rights_request)


# --- Closing -----------------------------------------------------------------------------------------------


def rectification_outcome(rights_request: RightsRequest) -> tuple[str, bool, bool]:
    """(summary for the requester, any applied, any rejected). Fields by their plain meaning; no values."""
    applied, rejected = [], []
    for item in RectificationItem.objects.filter(request=rights_request).order_by("pk"):
        try:
            meaning = registry.get(apps.get_model(item.model_label)).fields[item.field].meaning or item.field
        except (LookupError, NotRegistered, KeyError):
            meaning = item.field
        if item.decision == Decision.APPLIED:
            applied.append(meaning)
        elif item.decision == Decision.REJECTED:
            rejected.append(f"{meaning} (not corrected: {item.note})")
    parts = []
    if applied:
        parts.append("We corrected: " + "; ".join(applied) + ".")
    if rejected:
        parts.append("We did not correct: " + "; ".join(rejected) + ".")
    return " ".join(parts), bool(applied), bool(rejected)


def rectification_complete(*, rights_request: RightsRequest, actor) -> RightsRequest:
    """Close a rectification request once every item is decided (the DPO's act, from the workbench).

    Something applied: completed, or partially completed when some items were rejected (through
    `rights_request_close`, which needs the request to be fulfilling). Nothing applied: rejected with the
    reasons (`rights_request_reject`, which also names the supervisory authority, PM-IX-7).
    """
    with transaction.atomic():
        locked = RightsRequest.objects.locked(rights_request.pk)  # no proposal slips in meanwhile
        _require_rectification(locked)
        items = RectificationItem.objects.filter(request=locked)
        if not items.exists():
            raise RequestActionError(
                "No correction was proposed: reject the request or propose the corrections first.", code="empty"
            )
        if items.filter(decision=Decision.PENDING).exists():
            raise RequestActionError("Decide every proposed correction before closing the request.", code="pending")
        summary, any_applied, any_rejected = rectification_outcome(locked)
        if not any_applied:
            return services.rights_request_reject(rights_request=rights_request, actor=actor, reasons=summary)
        return services.rights_request_close(rights_request=rights_request, actor=actor, outcome=summary, partial=any_rejected)
