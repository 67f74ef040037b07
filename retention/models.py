"""Retention rules, legal holds and purge runs (POLICY-MAP VI).

A rule says how long rows of one data category (optionally in one data store) are kept and what happens
after: delete or anonymise. A legal hold keeps rows whatever the rules say. A purge run is one execution of
one rule, with its progress recorded so that a killed worker's run resumes where it stopped.

Database constraints keep the invariants that must hold whoever writes: at most one enabled rule per
category and store, an enabled rule has been confirmed, a hold has at least one scope, and a rule has at
most one real run going at a time.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from inventory.models import DataCategory, DataStore


class RetentionRule(models.Model):
    """How long one category's rows are kept, counted from what, and what happens after (PM-VI-1, PM-VI-2)."""

    class CountsFrom(models.TextChoices):
        CREATED = "created", "Record created"
        LAST_ACTIVITY = "last_activity", "Subject's last activity"
        ACCOUNT_CLOSURE = "account_closure", "Account closure"
        TIMESTAMP = "timestamp", "Another timestamp the registry declares"

    class Action(models.TextChoices):
        DELETE = "delete", "Delete"
        ANONYMISE = "anonymise", "Anonymise"

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    category = models.ForeignKey(DataCategory, on_delete=models.PROTECT, related_name="retention_rules")
    store = models.ForeignKey(
        DataStore,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="retention_rules",
        help_text="Leave empty for the whole category; a store-specific rule wins over a category-wide one.",
    )
    period = models.CharField(max_length=40, help_text="ISO 8601 duration, e.g. P180D, P13M, P3Y.")
    counts_from = models.CharField(max_length=20, choices=CountsFrom.choices, default=CountsFrom.CREATED)
    timestamp_field = models.CharField(
        max_length=100, blank=True, help_text="For 'another timestamp': the field name the registry declares, e.g. closed_at."
    )
    action = models.CharField(max_length=10, choices=Action.choices, default=Action.DELETE)
    enabled = models.BooleanField(default=False)
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    confirmed_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    policy_ref = models.CharField("policy clause", max_length=20, blank=True, default="PM-VI-1")
    seed_digest = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["category__code", "code"]
        permissions = [
            ("confirm_retentionrule", "Can confirm retention rules"),
            ("run_retentionrule", "Can preview and run retention rules"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["category"],
                condition=Q(enabled=True, store__isnull=True),
                name="retention_one_enabled_rule_per_category",
                violation_error_message="Another enabled rule already covers this category.",
            ),
            models.UniqueConstraint(
                fields=["category", "store"],
                condition=Q(enabled=True, store__isnull=False),
                name="retention_one_enabled_rule_per_store",
                violation_error_message="Another enabled rule already covers this category in this store.",
            ),
            models.CheckConstraint(
                name="retention_enabled_needs_confirmation",
                condition=Q(enabled=False) | Q(confirmed_at__isnull=False),
                violation_error_message="A rule runs only after a DPO has confirmed it.",
            ),
            models.CheckConstraint(name="retention_known_action", condition=Q(action__in=["delete", "anonymise"])),
            models.CheckConstraint(
                name="retention_known_counts_from",
                condition=Q(counts_from__in=["created", "last_activity", "account_closure", "timestamp"]),
            ),
            models.CheckConstraint(
                name="retention_timestamp_field_iff_timestamp",
                condition=(Q(counts_from="timestamp") & ~Q(timestamp_field=""))
                | (~Q(counts_from="timestamp") & Q(timestamp_field="")),
                violation_error_message="Name the timestamp field exactly when the rule counts from another timestamp.",
            ),
        ]

    def __str__(self):
        return self.name


class LegalHold(models.Model):
    """Keeps rows out of every purge and erasure while it lasts (PM-VI-3).

    The scope is any combination of a subject, a category and a store: a row is held when every scope the
    hold names matches it. A hold is active until lifted.
    """

    subject = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="legal_holds"
    )
    category = models.ForeignKey(DataCategory, null=True, blank=True, on_delete=models.PROTECT, related_name="legal_holds")
    store = models.ForeignKey(DataStore, null=True, blank=True, on_delete=models.PROTECT, related_name="legal_holds")
    reason = models.TextField()
    reference = models.CharField(max_length=200, help_text="Court order, claim or case number.")
    placed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    placed_at = models.DateTimeField(default=timezone.now)
    review_date = models.DateField(null=True, blank=True, help_text="When the DPO should check the hold is still needed.")
    lifted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    lifted_at = models.DateTimeField(null=True, blank=True)
    lift_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-placed_at"]
        permissions = [("lift_legalhold", "Can lift legal holds")]
        indexes = [
            models.Index(fields=["subject"], condition=Q(lifted_at__isnull=True), name="retention_hold_active_subject"),
        ]
        constraints = [
            models.CheckConstraint(
                name="retention_hold_has_scope",
                condition=Q(subject__isnull=False) | Q(category__isnull=False) | Q(store__isnull=False),
                violation_error_message="A hold names a subject, a category or a store (or several).",
            ),
            models.CheckConstraint(
                name="retention_hold_lifted_after_placed",
                condition=Q(lifted_at__isnull=True) | Q(lifted_at__gte=models.F("placed_at")),
            ),
        ]

    def __str__(self):
        return f"Hold {self.pk}: {self.reference}"

    @property
    def is_active(self) -> bool:
        return self.lifted_at is None


class PurgeRun(models.Model):
    """One execution of one rule: its cutoff, lease, progress and counts (PM-VI-4).

    `cutoff` is fixed when the run is created, so a resumed run matches exactly the rows the first attempt
    would have. `position` is where the next batch starts (step index and last key); it is written in the
    same transaction as the batch it follows.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    # A run a worker may still take up: the one definition of "in progress" (the constraint below spells
    # the same two values, as a migration must).
    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)

    rule = models.ForeignKey(RetentionRule, on_delete=models.PROTECT, related_name="runs")
    dry_run = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cutoff = models.DateTimeField(help_text="Rows whose retention clock started before this are expired.")
    batch_size = models.PositiveIntegerField(default=5000)
    # The owned lease (privacyops.leases): the claim's token, until when it holds, its last renewal.
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="How many times a worker took the lease.")
    counts = models.JSONField(default=dict, blank=True, help_text="Per model: matched, held, kept, deleted, anonymised.")
    batches_done = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    position = models.JSONField(default=dict, blank=True, help_text="Where the next batch starts.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "lease_expires_at"], name="retention_run_status_lease")]
        constraints = [
            models.UniqueConstraint(
                fields=["rule"],
                condition=Q(dry_run=False, status__in=["queued", "running"]),
                name="retention_one_active_run_per_rule",
                violation_error_message="This rule already has a run in progress.",
            ),
            models.CheckConstraint(
                name="retention_run_known_status",
                condition=Q(status__in=["queued", "running", "completed", "failed", "cancelled"]),
            ),
        ]

    def __str__(self):
        kind = "Preview" if self.dry_run else "Run"
        return f"{kind} {self.pk} of {self.rule}"

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.COMPLETED, self.Status.FAILED, self.Status.CANCELLED}
