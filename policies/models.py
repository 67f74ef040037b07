"""Policy versions, who accepted which, and the notices of a new version (POLICY-MAP intro, X).

These models began in the `consents` app and moved here with their rows: the tables keep the names they
had (`consents_policy...`, set by `db_table`), so an existing database changed nothing but the migration
state, and the permissions kept their codenames (`policies.publish_policyversion` is the same row as the
former `consents.publish_policyversion`; see migrations 0001 and 0002).

Acceptances name the subject only by `subject_ref`: they are proof kept after an account is erased
(PM-0-1), and then point at nobody. Notice deliveries hang off the account itself and go with it.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class PolicyVersion(models.Model):
    """One version of the privacy policy (PM-X-1). Published versions notify every account holder (PM-X-2)."""

    class ShortNoticeReason(models.TextChoices):
        NONE = "", "—"
        LEGAL_CHANGE = "legal_change", "A change in the law"
        CORRECTION = "correction", "A correction that changes no processing"
        OTHER = "other", "Other (explained in the note)"

    label = models.CharField(max_length=40, unique=True, help_text="E.g. 2025-04-25.")
    last_updated = models.DateField(help_text='The "last updated" date the policy shows.')
    effective_at = models.DateTimeField(help_text="When this version takes effect.")
    summary = models.TextField(help_text="What changed, in plain words; the notice e-mail carries it.")
    text = models.TextField(blank=True, help_text="The full policy text (Markdown).")
    url = models.URLField(blank=True, help_text="Where the published policy lives.")
    short_notice_reason = models.CharField(max_length=20, choices=ShortNoticeReason.choices, blank=True)
    short_notice_note = models.TextField(blank=True)
    published_at = models.DateTimeField(null=True, blank=True, editable=False)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    notice_sent_at = models.DateTimeField(null=True, blank=True, editable=False, help_text="When the last notice went out.")
    seed_digest = models.CharField(max_length=64, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        db_table = "consents_policyversion"
        ordering = ["-effective_at"]
        get_latest_by = "effective_at"
        permissions = [("publish_policyversion", "Can publish a policy version")]

    def __str__(self):
        return f"Policy {self.label}"


class PolicyAcceptance(models.Model):
    """Which policy version an account accepted, when and how (PM-0-1, PM-X-3). Kept as proof: by subject_ref."""

    class Method(models.TextChoices):
        SIGNUP = "signup", "Agreed at sign-up"
        ACKNOWLEDGEMENT = "acknowledgement", "Acknowledged the update banner"
        CONTINUED_USE = "continued_use", "Used the service after the effective date"
        IMPORT = "import", "Imported from an earlier system"

    subject_ref = models.UUIDField(db_index=True)
    version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="acceptances")
    accepted_at = models.DateTimeField(default=timezone.now)
    method = models.CharField(max_length=20, choices=Method.choices)
    client = models.CharField(max_length=40, blank=True, help_text='Where: "web", "api", or the client that reported it.')
    ua_hash = models.CharField(max_length=64, blank=True)

    class Meta:
        db_table = "consents_policyacceptance"
        ordering = ["-accepted_at"]
        default_permissions = ("view",)  # recorded by sign-up, the update banner and the continued-use check
        constraints = [models.UniqueConstraint(fields=["subject_ref", "version"], name="policy_acceptance_unique")]

    def __str__(self):
        return f"{self.subject_ref} accepted {self.version_id}"


class PolicyNoticeDelivery(models.Model):
    """One notice of one policy version sent to one account (PM-X-2): the unique row makes 'never twice' hold.

    The notice run claims rows (`queued`) in a committed transaction, marks each `sending` just before its
    e-mail goes and `sent` right after; a row left `sending` by a crash is unconfirmed and never sent again
    automatically (see `policies.notices`)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued (claimed by a notice run, not yet attempted)"
        SENDING = "sending", "Sending (unconfirmed if it stays so)"
        SENT = "sent", "E-mail sent"
        FAILED = "failed", "E-mail refused or failed"
        IN_SERVICE = "in_service", "Acknowledged in the service before any e-mail"

    version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="deliveries")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="policy_notices")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SENT)
    sent_at = models.DateTimeField(default=timezone.now, help_text="When the e-mail was sent (queued or sending: when claimed).")
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "consents_policynoticedelivery"
        default_permissions = ("view",)
        constraints = [
            models.UniqueConstraint(fields=["version", "user"], name="policy_notice_once"),
            models.CheckConstraint(
                name="policy_notice_known_status", condition=Q(status__in=["queued", "sending", "sent", "failed", "in_service"])
            ),
        ]
        indexes = [models.Index(fields=["version", "status"], name="policy_notice_status_idx")]

    def __str__(self):
        return f"{self.version} → {self.user_id}"
