"""Consents, restrictions and cookies (POLICY-MAP intro, II-2, III, IX-5, IX-6, XI-3); policy versions live in `policies`.

The ledger (`ConsentEvent`) is the proof: every consent given, refused, withdrawn or expired is one row,
never updated or deleted (a PostgreSQL trigger refuses it, as for the audit trail; the model and queryset
refuse on SQLite). Rows are hash-chained per *principal* -- an account (its `subject_ref`) or an
anonymous visitor (a random id in the choice cookie) -- through one `ConsentChain` row each, which the
writer locks; so two people clicking at once never wait on each other, and editing, removing or
reordering any event breaks its principal's chain.

`ConsentState` is a cache of the ledger kept in the same transaction: per principal and purpose, the event
with the latest effective time. It exists for O(1) reads and is always rebuildable from the ledger.
`ConsentChain.version` is bumped in the same transaction as every change to a principal's consents or
restrictions; decision caches key on it, so an answer computed from old state can never be read again
once the change has committed.

Subjects appear only by `subject_ref`: once an account is erased, the proof of what it consented to no
longer points at a person.
"""

import datetime
import hashlib
import json
import uuid

import pgtrigger
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from inventory.models import Purpose
from policies.models import PolicyVersion
from retention.periods import parse_period


def validate_lifetime(value: str) -> None:
    """A consent lifetime is an ISO 8601 duration the retention periods parser accepts (P13M, P6M, P1Y)."""
    if value:
        parse_period(value)


class AppendOnlyError(Exception):
    """Raised when code tries to change or remove a consent event or a used notice."""


# Exactly one of an account's subject_ref and a visitor's id.
ONE_PRINCIPAL = Q(subject_ref__isnull=False, visitor_id__isnull=True) | Q(subject_ref__isnull=True, visitor_id__isnull=False)


class CookieCategory(models.TextChoices):
    NECESSARY = "necessary", "Necessary"
    FUNCTIONALITY = "functionality", "Functionality"
    ANALYTICS = "analytics", "Analytics"


class ConsentPurpose(models.Model):
    """Something a subject or visitor is asked to agree to: marketing e-mails, a cookie category (PM-II-2, PM-III)."""

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(help_text="Plain language: what we do with the data if you agree.")
    purpose = models.ForeignKey(
        Purpose, on_delete=models.PROTECT, related_name="consent_purposes", help_text="The register purpose it serves."
    )
    is_necessary = models.BooleanField(default=False, help_text="Strictly necessary: always on, cannot be refused.")
    cookie_category = models.CharField(
        max_length=20, choices=CookieCategory.choices, blank=True, help_text="Set when this purpose is a cookie category."
    )
    consequences = models.TextField(blank=True, help_text="What stops working without it (PM-III-7, PM-XI-3).")
    ends_service = models.BooleanField(
        default=False, help_text="Withdrawing ends a service or contract: the subject confirms after reading the consequences."
    )
    is_sale_or_sharing = models.BooleanField(
        default=False, help_text="Sale or sharing in the CCPA sense: a Global Privacy Control signal refuses it."
    )
    lifetime = models.CharField(
        max_length=40,
        blank=True,
        validators=[validate_lifetime],
        help_text="ISO 8601 duration after which a consent expires and is asked again, e.g. P13M.",
    )
    dpv = models.CharField("DPV term", max_length=200, blank=True)
    policy_ref = models.CharField("policy clause", max_length=20, blank=True)
    position = models.PositiveSmallIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    seed_digest = models.CharField(max_length=64, blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "code"]
        constraints = [
            models.CheckConstraint(
                name="consent_purpose_necessary_not_sale",
                condition=Q(is_necessary=False) | Q(is_sale_or_sharing=False, ends_service=False),
            ),
            models.CheckConstraint(
                name="consent_purpose_known_cookie_category",
                condition=Q(cookie_category__in=["", *CookieCategory.values]),
            ),
        ]

    def __str__(self):
        return self.name


class ConsentNotice(models.Model):
    """The exact text shown when asking for one purpose, per version and language. Immutable once created: the
    hash in every event must point at text we still hold, so a correction is a new version."""

    purpose = models.ForeignKey(ConsentPurpose, on_delete=models.PROTECT, related_name="notices")
    version = models.CharField(max_length=40)
    language = models.CharField(max_length=10, default="en")
    text = models.TextField()
    sha256 = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )

    class Meta:
        ordering = ["purpose", "language", "-created_at"]
        default_permissions = ("add", "view", "delete")  # a text never changes: a correction is a new version
        constraints = [
            models.UniqueConstraint(fields=["purpose", "version", "language"], name="consent_notice_unique_version"),
        ]
        triggers = [
            pgtrigger.Protect(
                name="consent_notice_immutable",
                operation=pgtrigger.Update,
                condition=pgtrigger.AnyChange("purpose", "version", "language", "text", "sha256"),
            ),
        ]

    def __str__(self):
        return f"{self.purpose.code} v{self.version} ({self.language})"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            stored = type(self).objects.filter(pk=self.pk).values_list("text", "version", "language", "purpose_id").first()
            if stored and stored != (self.text, self.version, self.language, self.purpose_id):
                raise AppendOnlyError("A consent notice cannot change once created; add a new version instead.")
        self.sha256 = self.digest(self.text)
        super().save(*args, **kwargs)

    @staticmethod
    def digest(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CookieInventory(models.Model):
    """Each cookie, beacon or storage item the service sets (CNIL asks for a register of all, exempt ones too)."""

    class Party(models.TextChoices):
        FIRST = "first", "First party"
        THIRD = "third", "Third party"

    class Kind(models.TextChoices):
        COOKIE = "cookie", "Cookie"
        BEACON = "beacon", "Web beacon"
        STORAGE = "storage", "Local storage"

    name = models.CharField(max_length=200)
    category = models.ForeignKey(
        ConsentPurpose,
        on_delete=models.PROTECT,
        related_name="cookies",
        limit_choices_to=~Q(cookie_category=""),
        help_text="The cookie category (a consent purpose) it belongs to.",
    )
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.COOKIE)
    party = models.CharField(max_length=10, choices=Party.choices, default=Party.FIRST)
    provider = models.CharField(max_length=200, blank=True, help_text="Who sets or reads it, for third-party items.")
    duration = models.CharField(max_length=100, help_text='How long it lasts, e.g. "session", "1 year".')
    description = models.TextField(help_text="What it is for.")
    is_active = models.BooleanField(default=True)
    seed_digest = models.CharField(max_length=64, blank=True, editable=False)

    class Meta:
        ordering = ["category__position", "name"]
        verbose_name = "cookie"
        verbose_name_plural = "cookie inventory"
        constraints = [models.UniqueConstraint(fields=["name", "provider"], name="cookie_inventory_unique_name")]

    def __str__(self):
        return self.name


class ConsentChain(models.Model):
    """The head of one principal's hash chain. Exactly one of subject_ref and visitor_id is set.

    Writers lock this row (SELECT ... FOR UPDATE) to append; `version` is bumped with every change to the
    principal's consents or restrictions and keys the decision cache.
    """

    subject_ref = models.UUIDField(null=True, blank=True, unique=True)
    visitor_id = models.UUIDField(null=True, blank=True, unique=True)
    head_hash = models.CharField(max_length=64, default="0" * 64)
    length = models.PositiveIntegerField(default=0)
    version = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        default_permissions = ("view",)  # written only by the ledger
        constraints = [
            models.CheckConstraint(
                name="consent_chain_one_principal",
                condition=ONE_PRINCIPAL,
            ),
        ]

    def __str__(self):
        return f"subject {self.subject_ref}" if self.subject_ref else f"visitor {self.visitor_id}"


class ConsentEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("Consent events are append-only; they cannot be updated.")

    def delete(self):
        raise AppendOnlyError("Consent events are append-only; they cannot be deleted.")


GENESIS_HASH = "0" * 64


class ConsentEvent(models.Model):
    """One consent given, refused, withdrawn or expired (PM-0-2). Append-only; hash-chained per principal."""

    class Action(models.TextChoices):
        GIVEN = "given", "Given"
        REFUSED = "refused", "Refused"
        WITHDRAWN = "withdrawn", "Withdrawn"
        EXPIRED = "expired", "Expired"

    class Method(models.TextChoices):
        SIGNUP = "signup", "Sign-up checkbox"
        BANNER = "banner", "Cookie banner button"
        PORTAL = "portal", "Portal toggle"
        API = "api", "Consent API"
        GPC = "gpc", "Global Privacy Control signal"
        STAFF = "staff", "Staff on the subject's documented instruction"
        IMPORT = "import", "Import of historical consents"
        EXPIRY = "expiry", "Lifetime ended"

    # No index of its own: the (chain, seq) unique constraint leads with it.
    chain = models.ForeignKey(ConsentChain, on_delete=models.PROTECT, related_name="events", db_index=False)
    seq = models.PositiveIntegerField(help_text="Position in the principal's chain, from 1.")
    subject_ref = models.UUIDField(null=True, blank=True)
    visitor_id = models.UUIDField(null=True, blank=True)
    purpose = models.ForeignKey(ConsentPurpose, on_delete=models.PROTECT, related_name="events")
    action = models.CharField(max_length=10, choices=Action.choices)
    method = models.CharField(max_length=10, choices=Method.choices)
    notice = models.ForeignKey(ConsentNotice, null=True, blank=True, on_delete=models.PROTECT, related_name="events")
    notice_version = models.CharField(max_length=40, blank=True)
    notice_sha256 = models.CharField(max_length=64, blank=True)
    policy_version = models.ForeignKey(PolicyVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    policy_label = models.CharField(max_length=40, blank=True)
    jurisdiction = models.CharField(max_length=10, blank=True)
    language = models.CharField(max_length=10, blank=True)
    ip_hash = models.CharField(max_length=64, blank=True, help_text="Keyed hash of the IP address; never the address.")
    ua_hash = models.CharField(max_length=64, blank=True, help_text="Keyed hash of the user agent; never the string.")
    gpc = models.BooleanField(default=False, help_text="The request carried a Global Privacy Control signal.")
    effective_at = models.DateTimeField()
    recorded_at = models.DateTimeField(default=timezone.now)
    receipt_id = models.UUIDField(default=uuid.uuid4, unique=True)
    actor_label = models.CharField(max_length=254, blank=True, help_text="Staff member or API client that recorded it.")
    instruction = models.CharField(
        max_length=300, blank=True, help_text="For staff: the subject's documented instruction (ticket, letter reference)."
    )
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = ConsentEventQuerySet.as_manager()

    class Meta:
        ordering = ["-effective_at", "-id"]
        default_permissions = ("add", "view")  # append-only
        # Bulk import of historical consents (consents.imports.admin) is a right of its own: recording one
        # consent on a subject's documented instruction (add) does not include it.
        permissions = [("import_consentevent", "Can import historical consent events")]
        constraints = [
            models.UniqueConstraint(fields=["chain", "seq"], name="consent_event_unique_seq"),
            # No unique index on `hash`: nothing looks an event up by its hash, and distinct hashes follow
            # from what each covers (the subject, seq and unique receipt id). Such an index costs every
            # write path a random insertion: 6.1 s of the 13.5 s the import spent inserting 1 000 000 events (0007).
            models.CheckConstraint(
                name="consent_event_one_principal",
                condition=ONE_PRINCIPAL,
            ),
        ]
        indexes = [
            # Partial: an event is about an account or a visitor, never both, so each index holds only its own.
            models.Index(
                fields=["subject_ref", "purpose", "effective_at"],
                name="consent_event_subject_idx",
                condition=Q(subject_ref__isnull=False),
            ),
            models.Index(
                fields=["visitor_id", "purpose", "effective_at"],
                name="consent_event_visitor_idx",
                condition=Q(visitor_id__isnull=False),
            ),
        ]
        triggers = [
            pgtrigger.Protect(name="consent_event_append_only", operation=pgtrigger.Update | pgtrigger.Delete),
        ]

    def __str__(self):
        return f"{self.purpose_id} {self.action} ({self.method}) {self.effective_at:%Y-%m-%d %H:%M}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("Consent events are append-only; they cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Consent events are append-only; they cannot be deleted.")

    def canonical(self, *, purpose_code: str) -> str:
        """The exact text the hash covers. Changing this breaks every existing chain."""

        def moment(value: datetime.datetime) -> str:
            return value.astimezone(datetime.UTC).isoformat(timespec="microseconds")

        return json.dumps(
            {
                "seq": self.seq,
                "subject_ref": str(self.subject_ref) if self.subject_ref else None,
                "visitor_id": str(self.visitor_id) if self.visitor_id else None,
                "purpose": purpose_code,
                "action": self.action,
                "method": self.method,
                "notice_version": self.notice_version,
                "notice_sha256": self.notice_sha256,
                "policy_label": self.policy_label,
                "jurisdiction": self.jurisdiction,
                "language": self.language,
                "ip_hash": self.ip_hash,
                "ua_hash": self.ua_hash,
                "gpc": self.gpc,
                "effective_at": moment(self.effective_at),
                "recorded_at": moment(self.recorded_at),
                "receipt_id": str(self.receipt_id),
                "actor_label": self.actor_label,
                "instruction": self.instruction,
                "prev_hash": self.prev_hash,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )

    def compute_hash(self, *, purpose_code: str) -> str:
        return hashlib.sha256(self.canonical(purpose_code=purpose_code).encode("utf-8")).hexdigest()


class ConsentState(models.Model):
    """The current consent of one principal for one purpose: the ledger's latest event by effective time.

    For an account, the events of visitors linked to it count too (VisitorLink)."""

    subject_ref = models.UUIDField(null=True, blank=True)
    visitor_id = models.UUIDField(null=True, blank=True)
    purpose = models.ForeignKey(ConsentPurpose, on_delete=models.PROTECT, related_name="states")
    event = models.ForeignKey(ConsentEvent, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=10, choices=ConsentEvent.Action.choices)
    effective_at = models.DateTimeField()
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        default_permissions = ("view",)  # written only by the ledger
        constraints = [
            models.UniqueConstraint(
                fields=["subject_ref", "purpose"], condition=Q(subject_ref__isnull=False), name="consent_state_unique_subject"
            ),
            models.UniqueConstraint(
                fields=["visitor_id", "purpose"], condition=Q(visitor_id__isnull=False), name="consent_state_unique_visitor"
            ),
            models.CheckConstraint(
                name="consent_state_one_principal",
                condition=ONE_PRINCIPAL,
            ),
        ]
        indexes = [models.Index(fields=["purpose", "action", "effective_at"], name="consent_state_expiry_idx")]

    def __str__(self):
        return f"{self.purpose_id}: {self.action}"


class VisitorLink(models.Model):
    """A visitor id (from the choice cookie) joined to the account that signed in or up on that browser."""

    class Method(models.TextChoices):
        SIGNIN = "signin", "Signed in"
        SIGNUP = "signup", "Signed up"

    visitor_id = models.UUIDField(unique=True)
    subject_ref = models.UUIDField(db_index=True)
    method = models.CharField(max_length=10, choices=Method.choices)
    linked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        default_permissions = ("view",)

    def __str__(self):
        return f"visitor {self.visitor_id} → {self.subject_ref}"


class ProcessingRestriction(models.Model):
    """A restriction of processing (Art. 18) or an objection (Art. 21) by one subject (PM-IX-5).

    `purpose` empty means every purpose. Active while `starts_at <= now` and neither ended nor lifted."""

    class Kind(models.TextChoices):
        RESTRICTION = "restriction", "Restriction"
        OBJECTION = "objection", "Objection"

    subject = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="processing_restrictions")
    purpose = models.ForeignKey(
        Purpose, null=True, blank=True, on_delete=models.PROTECT, related_name="restrictions", help_text="Empty: every purpose."
    )
    kind = models.CharField(max_length=12, choices=Kind.choices)
    starts_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField()
    for_legal_claims = models.BooleanField(
        default=False, help_text="Kept for legal claims (Art. 18(1)(c)): also places a legal hold on the subject's data."
    )
    legal_hold = models.ForeignKey(
        "retention.LegalHold", null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )
    reference = models.CharField(max_length=200, blank=True, help_text="The request or letter it came from.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    lifted_at = models.DateTimeField(null=True, blank=True, editable=False)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    lift_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-starts_at"]
        constraints = [
            models.CheckConstraint(
                name="restriction_ends_after_start", condition=Q(ends_at__isnull=True) | Q(ends_at__gt=models.F("starts_at"))
            ),
            models.CheckConstraint(name="restriction_known_kind", condition=Q(kind__in=["restriction", "objection"])),
        ]
        indexes = [models.Index(fields=["subject", "lifted_at"], name="restriction_subject_idx")]
        permissions = [("lift_processingrestriction", "Can lift a restriction or objection")]

    def __str__(self):
        return f"{self.get_kind_display()} of {self.purpose or 'all processing'}"

    def is_active(self, at=None) -> bool:
        at = at or timezone.now()
        return self.lifted_at is None and self.starts_at <= at and (self.ends_at is None or self.ends_at > at)


class ApiKey(models.Model):
    """A service client of the consent API. The token is shown once; only its SHA-256 is stored (a random
    32-byte token needs no slow hash: it cannot be guessed from a dictionary)."""

    class Scope(models.TextChoices):
        READ = "read", "Read: ask whether processing is allowed"
        WRITE = "write", "Write: also record consents collected by the service"

    name = models.CharField(max_length=100, unique=True)
    prefix = models.CharField(max_length=12, editable=False, help_text="The first characters of the token, to tell keys apart.")
    token_sha256 = models.CharField(max_length=64, unique=True, editable=False)
    scope = models.CharField(max_length=5, choices=Scope.choices, default=Scope.READ)
    rate_limit_per_minute = models.PositiveIntegerField(default=6000)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
        constraints = [models.CheckConstraint(name="api_key_known_scope", condition=Q(scope__in=["read", "write"]))]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"
