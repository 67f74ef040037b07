"""Rights requests (POLICY-MAP section IX): the request, its timeline, its clock and the rules of the clock.

The workflow is a table (`MOVES`): a status may only move to the statuses listed for it, and
`requests.services` refuses anything else with a clear error. The database keeps the invariants that do
not depend on the table: a closed request has its closing time and only a closed one does; a duplicate
points at the request it duplicates; a request on hold says why and where it goes back to; and one
person has at most one open request per right (a partial unique index), so two submissions racing each
other cannot both open.

The clock (`requests.deadlines`) reads `DeadlineRule` rows: data the DPO edits in the admin, seeded with
the statutory periods and the article each comes from.
"""

from __future__ import annotations

import pgtrigger
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from inventory.models import Jurisdiction

from .calendars import holiday_calendar_error


class Right(models.TextChoices):
    """The rights a person can exercise (PM-IX-1 ... PM-IX-6, PM-VIII-2)."""

    ACCESS = "access", "Access (a copy of my data)"
    PORTABILITY = "portability", "Portability (my data in a machine-readable file)"
    ERASURE = "erasure", "Erasure"
    RECTIFICATION = "rectification", "Rectification"
    RESTRICTION = "restriction", "Restriction of processing"
    OBJECTION = "objection", "Objection to processing"
    WITHDRAW_CONSENT = "withdraw_consent", "Withdrawal of consent"
    CHILD_REPORT = "child_report", "Report of a child's account"


class Status(models.TextChoices):
    RECEIVED = "received", "Received"
    AWAITING_VERIFICATION = "awaiting_verification", "Awaiting verification"
    IN_PROGRESS = "in_progress", "In progress"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    FULFILLING = "fulfilling", "Fulfilling"
    ON_HOLD = "on_hold", "On hold"
    COMPLETED = "completed", "Completed"
    PARTIALLY_COMPLETED = "partially_completed", "Partially completed"
    REJECTED = "rejected", "Rejected"
    WITHDRAWN = "withdrawn", "Withdrawn"
    DUPLICATE = "duplicate", "Closed as a duplicate"
    UNVERIFIED = "unverified", "Closed unverified"


OPEN_STATUSES = frozenset(
    {
        Status.RECEIVED,
        Status.AWAITING_VERIFICATION,
        Status.IN_PROGRESS,
        Status.AWAITING_APPROVAL,
        Status.FULFILLING,
        Status.ON_HOLD,
    }
)
CLOSED_STATUSES = frozenset(set(Status) - OPEN_STATUSES)

# The workflow. On hold, rejected and withdrawn are reachable from every open state (added below); a
# request on hold goes back to the status it was put on hold from (`RightsRequest.held_from`), which the
# service checks against this same table.
MOVES: dict[str, frozenset[str]] = {
    Status.RECEIVED: frozenset({Status.AWAITING_VERIFICATION, Status.IN_PROGRESS, Status.DUPLICATE}),
    Status.AWAITING_VERIFICATION: frozenset({Status.IN_PROGRESS, Status.UNVERIFIED}),
    Status.IN_PROGRESS: frozenset({Status.AWAITING_APPROVAL}),
    Status.AWAITING_APPROVAL: frozenset({Status.FULFILLING, Status.IN_PROGRESS}),
    Status.FULFILLING: frozenset({Status.COMPLETED, Status.PARTIALLY_COMPLETED}),
    Status.ON_HOLD: frozenset(),
}
for _status in OPEN_STATUSES:
    MOVES[_status] = MOVES[_status] | {Status.REJECTED, Status.WITHDRAWN} | ({Status.ON_HOLD} - {_status})
for _status in CLOSED_STATUSES:
    MOVES[_status] = frozenset()


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class Channel(models.TextChoices):
    WEB = "web", "Web form"
    EMAIL = "email", "Email"
    POST = "post", "Post"
    PHONE = "phone", "Phone"


class Requester(models.TextChoices):
    SUBJECT = "subject", "The data subject"
    AGENT = "agent", "An authorised agent"


class HoldReason(models.TextChoices):
    """Why a request is on hold. Only the first two can stop the legal clock, and only where the
    jurisdiction's rule pauses for them (`DeadlineRule.pauses_for_verification`); where the rule's clock
    starts at verification, the period runs from the end of a verification hold instead."""

    AWAITING_VERIFICATION = "verification", "Awaiting proof of identity or authority"
    AWAITING_CLARIFICATION = "clarification", "Awaiting clarification from the requester"
    INTERNAL = "internal", "Internal (the clock keeps running)"


CLOCK_STOPPING_HOLDS = frozenset({HoldReason.AWAITING_VERIFICATION, HoldReason.AWAITING_CLARIFICATION})


class PeriodUnit(models.TextChoices):
    CALENDAR_MONTHS = "calendar_months", "calendar months"
    CALENDAR_DAYS = "calendar_days", "calendar days"
    BUSINESS_DAYS = "business_days", "business days (Monday to Friday, public holidays excepted)"
    HOURS = "hours", "hours"


class ClockStart(models.TextChoices):
    """When a period starts running (see `requests.deadlines`)."""

    RECEIPT = "receipt", "at receipt of the request"
    VERIFICATION = "verification", "when the proof of identity asked for arrives (or at receipt, if later)"


class Roll(models.TextChoices):
    """What happens to a period that ends on a day that is not a working day (see `requests.deadlines`)."""

    NONE = "none", "no roll: it ends that day"
    SUNDAY_OR_HOLIDAY = "sunday_or_holiday", "to the next day that is neither a Sunday nor a public holiday"
    BUSINESS_DAY = "business_day", "to the next business day (not a Saturday, Sunday or public holiday)"


class DeadlineRule(models.Model):
    """PM-IX-9: how long a jurisdiction gives us to answer one right (or, with `right` empty, every right
    it has no row of its own for). Data, not code: the DPO edits it; `requests.deadlines` applies it."""

    jurisdiction = models.ForeignKey(Jurisdiction, on_delete=models.PROTECT, related_name="deadline_rules")
    right = models.CharField(
        max_length=20, choices=Right.choices, blank=True, help_text="Empty: every right without its own row."
    )
    period_value = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    period_unit = models.CharField(max_length=16, choices=PeriodUnit.choices)
    extension_value = models.PositiveIntegerField(default=0, help_text="0: the period cannot be extended.")
    extension_unit = models.CharField(max_length=16, choices=PeriodUnit.choices, blank=True)
    extensions_allowed = models.PositiveSmallIntegerField(default=0, help_text="How many times it may be extended.")
    pauses_for_verification = models.BooleanField(
        default=False, help_text="The clock stops while we wait for proof of identity or for clarification."
    )
    clock_starts = models.CharField(
        max_length=16,
        choices=ClockStart.choices,
        default=ClockStart.RECEIPT,
        help_text="When the period starts: at receipt, or when the proof of identity we asked for arrives.",
    )
    roll = models.CharField(
        "when a period ends on a non-working day",
        max_length=20,
        choices=Roll.choices,
        default=Roll.NONE,
    )
    holiday_calendar = models.CharField(
        max_length=10,
        blank=True,
        help_text=(
            "Public holidays that count for the roll and for business days: a country or country-region code "
            "(SG, US-CA, GB-ENG). Empty: the jurisdiction's own, when it covers one country or region; none "
            "when it covers several."
        ),
    )
    acknowledge_value = models.PositiveIntegerField(null=True, blank=True, help_text="Acknowledge receipt within this.")
    acknowledge_unit = models.CharField(max_length=16, choices=PeriodUnit.choices, blank=True)
    citation = models.CharField(max_length=300, help_text="The article or regulation the row comes from.")
    notes = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["jurisdiction__code", "right"]
        constraints = [
            models.UniqueConstraint(fields=["jurisdiction", "right"], name="deadline_rule_one_per_right"),
            models.CheckConstraint(
                name="deadline_rule_extension_has_unit",
                condition=Q(extension_value=0, extensions_allowed=0) | (Q(extension_value__gt=0) & ~Q(extension_unit="")),
            ),
            models.CheckConstraint(
                name="deadline_rule_acknowledgement_has_unit",
                condition=Q(acknowledge_value__isnull=True) | ~Q(acknowledge_unit=""),
            ),
            models.CheckConstraint(name="deadline_rule_known_roll", condition=Q(roll__in=Roll.values)),
            models.CheckConstraint(name="deadline_rule_known_clock_start", condition=Q(clock_starts__in=ClockStart.values)),
        ]

    def __str__(self):
        right = self.get_right_display() if self.right else "every right"
        return f"{self.jurisdiction.code}, {right}: {self.period_value} {self.get_period_unit_display()}"

    def clean(self):
        if self.extension_value and self.extensions_allowed == 0:
            raise ValidationError({"extensions_allowed": "Say how many times the period may be extended (at least 1)."})
        if self.extensions_allowed and not self.extension_value:
            raise ValidationError({"extension_value": "Give the length of an extension."})
        if self.holiday_calendar:
            error = holiday_calendar_error(self.holiday_calendar)
            if error:
                raise ValidationError({"holiday_calendar": error})


class RightsRequestQuerySet(models.QuerySet):
    def locked(self, pk: int) -> RightsRequest:
        """The request re-read under its row lock, inside the caller's transaction: every action on a request
        takes it, so two actions on one request serialise. Only the request's row (of=self): the account is a
        nullable join PostgreSQL cannot lock, and locking the jurisdiction would serialise unrelated requests."""
        return self.select_for_update(of=("self",)).select_related("subject", "jurisdiction").get(pk=pk)


class RightsRequest(models.Model):
    """One request by a data subject or their agent to exercise a right (PM-IX-1 ... PM-IX-9).

    `subject` is the account, if the requester has one; `subject_ref` stays when the account is erased,
    so the request's own record (kept by legal duty) names nobody directly. `due_at` is the legal
    deadline as last computed (extensions and clock-stopping holds included)."""

    reference = models.CharField(max_length=20, unique=True, editable=False, help_text="DSR-<year>-<number>")
    subject = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="rights_requests"
    )
    subject_ref = models.UUIDField(null=True, blank=True, db_index=True, editable=False)
    requester = models.CharField(max_length=8, choices=Requester.choices, default=Requester.SUBJECT)
    agent_name = models.CharField(max_length=200, blank=True)
    agent_authority = models.FileField(
        upload_to="requests/authority/%Y/", blank=True, help_text="The agent's proof of authority (PM-XI-2)."
    )
    agent_verified_at = models.DateTimeField(null=True, blank=True, editable=False)
    agent_verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    contact_email = models.EmailField()
    jurisdiction = models.ForeignKey(Jurisdiction, on_delete=models.PROTECT, related_name="rights_requests")
    right = models.CharField(max_length=20, choices=Right.choices)
    details = models.TextField(blank=True)
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.WEB)
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.RECEIVED)
    held_from = models.CharField(max_length=24, choices=Status.choices, blank=True, editable=False)
    hold_reason = models.CharField(max_length=16, choices=HoldReason.choices, blank=True, editable=False)
    received_at = models.DateTimeField(default=timezone.now)
    acknowledged_at = models.DateTimeField(null=True, blank=True, editable=False)
    verified_at = models.DateTimeField(null=True, blank=True, editable=False)
    due_at = models.DateTimeField(editable=False)
    extended_due_at = models.DateTimeField(null=True, blank=True, editable=False)
    extensions_used = models.PositiveSmallIntegerField(default=0, editable=False)
    extension_reason = models.TextField(blank=True, editable=False)
    extension_notice_sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    reminders_sent = models.JSONField(
        default=list, blank=True, editable=False, help_text="Reminder marks sent: half, four_fifths, overdue."
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_rights_requests"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    approved_at = models.DateTimeField(null=True, blank=True, editable=False)
    closed_at = models.DateTimeField(null=True, blank=True, editable=False)
    outcome = models.TextField(blank=True, editable=False)
    duplicate_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="duplicates", editable=False
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
        help_text="The staff member who logged it; empty when the requester submitted it.",
    )
    # The fulfilment job (export, erasure ...): its state, progress for the workbench's bar, an owned lease
    # (privacyops.leases: the claim's token and until when it holds) so that one worker at a time works on
    # it and a stalled worker's job can be resumed, and its result (the export's counts, the erasure's outcome).
    job_status = models.CharField(max_length=10, choices=JobStatus.choices, blank=True, editable=False)
    job_done = models.PositiveBigIntegerField(default=0, editable=False)
    job_total = models.PositiveBigIntegerField(default=0, editable=False)
    job_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    job_finished_at = models.DateTimeField(null=True, blank=True, editable=False)
    job_lease_owner = models.CharField(max_length=200, blank=True, editable=False)
    job_lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    job_result = models.JSONField(default=dict, blank=True, editable=False)
    job_error = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RightsRequestQuerySet.as_manager()

    class Meta:
        ordering = ["due_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["subject_ref", "right"],
                condition=Q(subject_ref__isnull=False, status__in=sorted(OPEN_STATUSES)),
                name="rights_request_one_open_per_right",
            ),
            models.CheckConstraint(name="rights_request_known_status", condition=Q(status__in=Status.values)),
            models.CheckConstraint(name="rights_request_known_right", condition=Q(right__in=Right.values)),
            models.CheckConstraint(
                name="rights_request_closed_iff_closed_at",
                condition=Q(status__in=sorted(CLOSED_STATUSES), closed_at__isnull=False)
                | Q(status__in=sorted(OPEN_STATUSES), closed_at__isnull=True),
            ),
            models.CheckConstraint(
                name="rights_request_duplicate_points_at_original",
                condition=Q(status=Status.DUPLICATE, duplicate_of__isnull=False)
                | (~Q(status=Status.DUPLICATE) & Q(duplicate_of__isnull=True)),
            ),
            models.CheckConstraint(
                name="rights_request_hold_has_reason",
                condition=Q(status=Status.ON_HOLD, hold_reason__gt="", held_from__gt="")
                | (~Q(status=Status.ON_HOLD) & Q(hold_reason="", held_from="")),
            ),
            models.CheckConstraint(name="rights_request_due_after_receipt", condition=Q(due_at__gte=models.F("received_at"))),
            models.CheckConstraint(
                name="rights_request_agent_named", condition=Q(requester=Requester.SUBJECT) | ~Q(agent_name="")
            ),
        ]
        indexes = [
            models.Index(fields=["status", "due_at"], name="rights_request_queue_idx"),
            models.Index(fields=["assignee", "status"], name="rights_request_assignee_idx"),
        ]
        permissions = [
            ("approve_rightsrequest", "Can approve a rights request other than erasure"),
            ("approve_erasure_rightsrequest", "Can approve an erasure request"),
            ("view_personal_data_rightsrequest", "Can open the subject's data summary of a request"),
        ]

    def __str__(self):
        return f"{self.reference} ({self.get_right_display()})"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def effective_due_at(self):
        """The deadline in force: the extended one when the period was extended."""
        return self.extended_due_at or self.due_at


class RequestPause(models.Model):
    """A stretch of time a request was on hold. `stops_clock` is decided when the hold starts: true only for
    a verification or clarification hold in a jurisdiction whose rule pauses (see `HoldReason`)."""

    request = models.ForeignKey(RightsRequest, on_delete=models.CASCADE, related_name="pauses")
    reason = models.CharField(max_length=16, choices=HoldReason.choices)
    note = models.TextField(blank=True)
    stops_clock = models.BooleanField()
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["started_at"]
        constraints = [
            models.CheckConstraint(
                name="request_pause_ends_after_start",
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=models.F("started_at")),
            ),
            models.UniqueConstraint(fields=["request"], condition=Q(ended_at__isnull=True), name="request_pause_one_open"),
        ]

    def __str__(self):
        return f"{self.get_reason_display()} from {self.started_at:%Y-%m-%d %H:%M}"


class RequestEvent(models.Model):
    """One entry of a request's timeline: a move, a note, an email, a job (append-only, like the audit trail;
    the audit trail gets its own event for each)."""

    class Kind(models.TextChoices):
        MOVE = "move", "Status change"
        NOTE = "note", "Note"
        EMAIL = "email", "Email sent"
        JOB = "job", "Job"
        ASSIGN = "assign", "Assigned"
        VERIFY = "verify", "Verified"
        EXTEND = "extend", "Deadline extended"
        REMINDER = "reminder", "Reminder"

    request = models.ForeignKey(RightsRequest, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    from_status = models.CharField(max_length=24, choices=Status.choices, blank=True)
    to_status = models.CharField(max_length=24, choices=Status.choices, blank=True)
    message = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["request", "at"], name="request_event_timeline_idx")]
        triggers = [pgtrigger.Protect(name="request_event_append_only", operation=pgtrigger.Update)]

    def __str__(self):
        return f"{self.get_kind_display()} at {self.at:%Y-%m-%d %H:%M}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValueError("Request events are append-only.")
        super().save(*args, **kwargs)


class VerificationLink(models.Model):
    """A signed, single-use link that proves the requester controls an address (PM-IX-9): sent for requests
    without a verified session, valid `REQUEST_VERIFICATION_DAYS`. Only the token's SHA-256 is stored."""

    request = models.ForeignKey(RightsRequest, on_delete=models.CASCADE, related_name="verification_links")
    token_sha256 = models.CharField(max_length=64, unique=True)
    sent_to = models.EmailField()
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                name="verification_link_expires_after_creation", condition=Q(expires_at__gt=models.F("created_at"))
            )
        ]

    def __str__(self):
        return f"Verification link for {self.request.reference}"


class ExportPackage(models.Model):
    """An access or portability package (PM-IX-1, PM-IX-4): one ZIP, stored encrypted at rest, downloadable
    a few times through single-use links until it expires; then the file is deleted and the row stays as
    the record that it existed (size, digest, downloads)."""

    class Status(models.TextChoices):
        BUILDING = "building", "Building"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired (file deleted)"

    request = models.ForeignKey(RightsRequest, on_delete=models.CASCADE, related_name="packages")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.BUILDING)
    file = models.FileField(upload_to="requests/packages/%Y/%m/", blank=True, max_length=300)
    size_bytes = models.PositiveBigIntegerField(default=0, help_text="Of the ZIP before encryption.")
    sha256 = models.CharField(max_length=64, blank=True, help_text="Of the ZIP before encryption.")
    files = models.PositiveIntegerField(default=0)
    rows = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    ready_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    downloads = models.PositiveSmallIntegerField(default=0)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                name="export_package_known_status", condition=Q(status__in=["building", "ready", "failed", "expired"])
            ),
            models.CheckConstraint(name="export_package_at_most_5_downloads", condition=Q(downloads__lte=5)),
            models.CheckConstraint(name="export_package_ready_has_digest", condition=~Q(status="ready") | ~Q(sha256="")),
        ]

    def __str__(self):
        return f"Package {self.pk} of {self.request.reference}"


class DownloadLink(models.Model):
    """A single-use link to a package: used up when its download starts (PM-IX-1). Only the token's SHA-256
    is stored; the subject asks for a new link while the package lives and has downloads left."""

    package = models.ForeignKey(ExportPackage, on_delete=models.CASCADE, related_name="links")
    token_sha256 = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Link to package {self.package_id}"


class RectificationItem(models.Model):
    """One proposed correction of one registered, rectifiable field (PM-IX-3): the old and new values side
    by side for the DPO, who applies or rejects each."""

    class Decision(models.TextChoices):
        PENDING = "pending", "Pending"
        APPLIED = "applied", "Applied"
        REJECTED = "rejected", "Rejected"

    request = models.ForeignKey(RightsRequest, on_delete=models.CASCADE, related_name="rectifications")
    model_label = models.CharField(max_length=100, help_text="e.g. accounts.User")
    object_pk = models.CharField(max_length=64)
    field = models.CharField(max_length=100)
    old_value = models.TextField(blank=True)
    new_value = models.TextField(blank=True)
    decision = models.CharField(max_length=10, choices=Decision.choices, default=Decision.PENDING)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["request", "model_label", "field"]
        constraints = [
            models.CheckConstraint(
                name="rectification_decided_iff_not_pending",
                condition=Q(decision="pending", decided_at__isnull=True) | (~Q(decision="pending") & Q(decided_at__isnull=False)),
            )
        ]

    def __str__(self):
        return f"{self.model_label}.{self.field}: {self.get_decision_display()}"


class RecipientNotice(models.Model):
    """Art. 19: a recipient that receives the affected categories is told of a rectification, erasure or
    restriction. A task for the DPO until a webhook does it: marked done by hand."""

    request = models.ForeignKey(RightsRequest, on_delete=models.CASCADE, related_name="recipient_notices")
    recipient = models.ForeignKey("inventory.Recipient", on_delete=models.PROTECT, related_name="+")
    categories = models.JSONField(default=list, help_text="Codes of the affected data categories it receives.")
    created_at = models.DateTimeField(default=timezone.now)
    done_at = models.DateTimeField(null=True, blank=True)
    done_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [models.UniqueConstraint(fields=["request", "recipient"], name="recipient_notice_once_per_request")]

    def __str__(self):
        return f"Tell {self.recipient} about {self.request.reference}"


class Disclosure(models.Model):
    """PM-IV-5: one disclosure of a person's data to an authority or other third party, outside the regular
    recipients: who asked, on what legal ground, which categories, when, approved by whom. Access packages
    list the subject's disclosures."""

    subject = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="disclosures"
    )
    subject_ref = models.UUIDField(db_index=True)
    authority = models.CharField(max_length=200, help_text="Who asked (court, police, regulator ...).")
    legal_ground = models.CharField(max_length=300)
    reference = models.CharField(max_length=200, blank=True, help_text="Their case or order number.")
    categories = models.ManyToManyField("inventory.DataCategory", related_name="+")
    disclosed_at = models.DateTimeField()
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    notes = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-disclosed_at"]

    def __str__(self):
        return f"Disclosure to {self.authority} on {self.disclosed_at:%Y-%m-%d}"
