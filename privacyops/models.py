"""The audit trail: one append-only, hash-chained table for the whole system.

Invariants:
- Rows are only ever inserted. PostgreSQL enforces it with a trigger (UPDATE and DELETE raise, for
  superusers and raw SQL too); on SQLite the model and its queryset refuse in Python.
- Each row's `hash` is SHA-256 over its canonical form, which includes the previous row's hash, so
  editing, removing or reordering any row breaks verification from that row on.
- One chain for the whole table: the writer takes a transaction-scoped lock before reading the head,
  and holds it to commit, so two writers can never chain onto the same predecessor.
- Subjects appear only as `subject_ref`; staff actors are stored as id and email *text*, so deleting an
  account never deletes or rewrites history.
"""

import datetime
import hashlib
import json

import pgtrigger
from django.db import models
from django.utils import timezone

GENESIS_HASH = "0" * 64


class AppendOnlyError(Exception):
    """Raised when code tries to change or remove an audit event."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("Audit events are append-only; they cannot be updated.")

    def delete(self):
        raise AppendOnlyError("Audit events are append-only; they cannot be deleted.")


class AuditEvent(models.Model):
    SYSTEM_ACTOR = "system"

    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_id = models.BigIntegerField(null=True, blank=True, help_text="Staff account id at the time; not a link.")
    actor_label = models.CharField(max_length=254, help_text='Staff email at the time, or "system" for jobs.')
    action = models.CharField(max_length=100, db_index=True)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    subject_ref = models.UUIDField(null=True, blank=True, db_index=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["actor_label", "occurred_at"])]
        permissions = [("verify_auditevent", "Can verify the audit chain")]
        triggers = [
            pgtrigger.Protect(name="audit_append_only", operation=pgtrigger.Update | pgtrigger.Delete),
        ]

    def __str__(self):
        return f"#{self.pk} {self.action} by {self.actor_label}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("Audit events are append-only; they cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Audit events are append-only; they cannot be deleted.")

    def canonical(self) -> str:
        """The exact bytes (as text) the hash covers. Changing this breaks every existing chain."""
        occurred = self.occurred_at.astimezone(datetime.UTC).isoformat(timespec="microseconds")
        return json.dumps(
            {
                "occurred_at": occurred,
                "actor_id": self.actor_id,
                "actor_label": self.actor_label,
                "action": self.action,
                "target_type": self.target_type,
                "target_id": self.target_id,
                "subject_ref": str(self.subject_ref) if self.subject_ref else None,
                "details": self.details,
                "prev_hash": self.prev_hash,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )

    def compute_hash(self) -> str:
        return hashlib.sha256(self.canonical().encode("utf-8")).hexdigest()
