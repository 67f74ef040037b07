"""Writes to the register. Every change goes through here so each one leaves an audit event.

Single rows (the admin's add, change and delete) write one event per row with the fields that changed.
A file import writes ONE event for the whole file (counts, format, SHA-256 of the bytes uploaded) and is
all-or-nothing: any row that fails rolls every row back and no event is written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from django.db import transaction
from django.forms.models import model_to_dict

from privacyops.audit import audit_record

# Enough to name what an import touched without turning one audit event into a copy of the file.
MAX_KEYS_IN_IMPORT_EVENT = 200


def _action(instance_or_model, verb: str) -> str:
    return f"register.{instance_or_model._meta.model_name}.{verb}"


def register_key(instance) -> str | None:
    """The natural key a person reads: `code` for entries; the codes of both ends for link rows."""
    code = getattr(instance, "code", None)
    if code is not None:
        return code
    model_name = instance._meta.model_name
    if model_name == "purposebasis":
        where = instance.jurisdiction.code if instance.jurisdiction_id else "*"
        return f"{instance.purpose.code}/{instance.basis.code}/{where}"
    if model_name == "processingactivity":
        return f"{instance.purpose.code}/{instance.category.code}"
    return None


def register_entry_save(*, actor, instance, changed_fields: list[str] | None = None, m2m: dict | None = None):
    """Create or update one register row (and optionally set its many-to-many links), audited.

    `m2m` maps a many-to-many field name to the objects it should hold after the save.
    """
    creating = instance._state.adding
    with transaction.atomic():
        instance.full_clean()
        instance.save()
        for field, values in (m2m or {}).items():
            getattr(instance, field).set(values)
        audit_record(
            actor=actor,
            action=_action(instance, "created" if creating else "updated"),
            target=instance,
            details={"code": register_key(instance), "fields": sorted(changed_fields or [])},
        )
    return instance


def register_entry_delete(*, actor, instance) -> None:
    """Delete one register row, audited. Rows still in use are protected by the database (PROTECT)."""
    with transaction.atomic():
        snapshot = {k: v for k, v in model_to_dict(instance).items() if not isinstance(v, list)}
        target = (instance._meta.label_lower, instance.pk)
        key = register_key(instance)
        instance.delete()
        audit_record(
            actor=actor,
            action=_action(instance, "deleted"),
            target=target,
            details={"code": key, "row": snapshot},
        )


def register_entries_delete(*, actor, instances: Iterable) -> int:
    """Delete several register rows in one transaction (the admin's bulk delete), one event per row."""
    count = 0
    with transaction.atomic():
        for instance in instances:
            register_entry_delete(actor=actor, instance=instance)
            count += 1
    return count


def register_import_apply(*, actor, resource, dataset, file_format: str, file_bytes: bytes):
    """Apply an import file to one register model: all rows or none, one audit event.

    `resource` is the model's django-import-export resource, `dataset` the file read into a tablib
    Dataset, `file_bytes` the file exactly as uploaded (its SHA-256 goes into the event). Returns the
    import Result; when it has errors or validation errors nothing was written and the caller shows them.
    """
    model = resource._meta.model
    with transaction.atomic():
        result = resource.import_data(
            dataset,
            dry_run=False,
            raise_errors=False,
            use_transactions=True,
            rollback_on_validation_errors=True,
            retain_instance_in_row_result=True,
            user=actor,
        )
        if result.has_errors() or result.has_validation_errors():
            transaction.set_rollback(True)
            return result
        totals = result.totals
        keys = {"new": [], "updated": []}
        for row in result.valid_rows():
            bucket = {"new": "new", "update": "updated"}.get(row.import_type)
            if bucket and row.instance is not None and len(keys[bucket]) < MAX_KEYS_IN_IMPORT_EVENT:
                keys[bucket].append(register_key(row.instance))
        audit_record(
            actor=actor,
            action=_action(model, "imported"),
            target=(model._meta.label_lower, ""),
            details={
                "format": file_format,
                "sha256": hashlib.sha256(file_bytes).hexdigest(),
                "rows": result.total_rows,
                "new": totals["new"],
                "updated": totals["update"],
                "deleted": totals["delete"],
                "skipped": totals["skip"],
                "codes": keys,
            },
        )
    return result


def register_export_record(*, actor, model, row_count: int, file_format: str) -> None:
    """Record that the register (or a filtered part of it) left the system as a file."""
    audit_record(
        actor=actor,
        action=_action(model, "exported"),
        target=(model._meta.label_lower, ""),
        details={"format": file_format, "rows": row_count},
    )


def register_ropa_export_record(*, actor, file_format: str) -> None:
    """Record that the Art. 30 record was downloaded from the workbench."""
    audit_record(actor=actor, action="register.record_of_processing.exported", details={"format": file_format})
