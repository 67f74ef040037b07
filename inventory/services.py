"""Writes to the register. Every change goes through here so each one leaves an audit event."""

from __future__ import annotations

from django.db import transaction
from django.forms.models import model_to_dict

from privacyops.audit import audit_record


def _action(instance, verb: str) -> str:
    return f"register.{instance._meta.model_name}.{verb}"


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
            details={"code": getattr(instance, "code", None), "fields": sorted(changed_fields or [])},
        )
    return instance


def register_entry_delete(*, actor, instance) -> None:
    """Delete one register row, audited. Rows still in use are protected by the database (PROTECT)."""
    with transaction.atomic():
        snapshot = {k: v for k, v in model_to_dict(instance).items() if not isinstance(v, list)}
        target = (instance._meta.label_lower, instance.pk)
        instance.delete()
        audit_record(
            actor=actor,
            action=_action(instance, "deleted"),
            target=target,
            details={"code": getattr(instance, "code", None), "row": snapshot},
        )
