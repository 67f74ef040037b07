"""Policy versions: which one is in force, publishing a new one, and recording who accepted which (section X).

Invariants:
- Only published versions count. A version is in force from its effective time until a later published
  version takes effect; `policy_version_in_force` is the only definition (the ledger, the portal, the
  banner and the acceptance middleware all ask it).
- Publication is one-way and ordered: a published version is never unpublished or edited (the workbench
  shows it read-only), and a new version must take effect after every published one, so "the version in
  force at time t" never changes for a past t. Less than settings.POLICY_NOTICE_DAYS of notice needs a
  recorded reason (PM-X-2); the notice run is queued when the publication commits.
- A PolicyAcceptance is one row per (subject, version), written once and never changed (PM-0-1): the
  first way a subject accepted a version is the one recorded; later calls return it unchanged.
- `policy_current()` is the cached view of the in-force and upcoming versions the middleware and the
  banner read on every request of a signed-in subject. It expires when the next version takes effect and
  is dropped when a publication commits, so it is never older than one publication (see `_CACHE_KEY`).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from privacyops.audit import audit_record

from .hashing import keyed_hash
from .models import PolicyAcceptance, PolicyNoticeDelivery, PolicyVersion

Reason = PolicyVersion.ShortNoticeReason

# The cache holds what every signed-in request needs; a publication deletes it on commit.
_CACHE_KEY = "consents:policy:current:v1"
_CACHE_SECONDS = 60


# --- Selectors ------------------------------------------------------------------------------------


def _published() -> QuerySet[PolicyVersion]:
    return PolicyVersion.objects.filter(published_at__isnull=False)


def policy_version_in_force(*, at: datetime.datetime | None = None) -> PolicyVersion | None:
    """PM-X-1: the published version that has taken effect most recently at `at` (now by default)."""
    at = at or timezone.now()
    return _published().filter(effective_at__lte=at).order_by("-effective_at", "-id").first()


def policy_version_upcoming(*, at: datetime.datetime | None = None) -> PolicyVersion | None:
    """PM-X-2: the next published version that has not yet taken effect, if any."""
    at = at or timezone.now()
    return _published().filter(effective_at__gt=at).order_by("effective_at", "id").first()


def policy_last_updated(*, at: datetime.datetime | None = None) -> datetime.date | None:
    """PM-X-1: the "last updated" date of the version in force."""
    version = policy_version_in_force(at=at)
    return version.last_updated if version else None


def policy_history() -> QuerySet[PolicyVersion]:
    """PM-X-1: every published version, newest first (upcoming ones included, they are public once published)."""
    return _published().order_by("-effective_at", "-id")


def policy_version_previous(version: PolicyVersion) -> PolicyVersion | None:
    """The published version this one replaces (None for the first: it changes nothing, so no notice)."""
    return _published().filter(effective_at__lt=version.effective_at).order_by("-effective_at", "-id").first()


@dataclass(frozen=True)
class VersionInfo:
    """What a request needs to know about a version, without touching the database."""

    id: int
    label: str
    effective_at: datetime.datetime
    last_updated: datetime.date
    summary: str
    url: str
    is_change: bool  # it replaces an earlier published version (the first one is no change to announce)

    @classmethod
    def of(cls, version: PolicyVersion, *, is_change: bool) -> VersionInfo:
        return cls(
            id=version.pk,
            label=version.label,
            effective_at=version.effective_at,
            last_updated=version.last_updated,
            summary=version.summary,
            url=version.url or settings.POLICY_URL,
            is_change=is_change,
        )


@dataclass(frozen=True)
class PolicyCurrent:
    in_force: VersionInfo | None
    upcoming: tuple[VersionInfo, ...]
    computed_at: datetime.datetime

    def stale(self, now: datetime.datetime) -> bool:
        """A version took effect since this was computed: the cached view no longer says what is in force."""
        return bool(self.upcoming) and self.upcoming[0].effective_at <= now


def policy_current(*, now: datetime.datetime | None = None) -> PolicyCurrent:
    """The version in force and the upcoming ones, from the cache when it is still right (see the module docstring)."""
    now = now or timezone.now()
    current = cache.get(_CACHE_KEY)
    if isinstance(current, PolicyCurrent) and not current.stale(now) and current.computed_at <= now:
        return current
    published = list(_published().order_by("effective_at", "id"))
    past = [v for v in published if v.effective_at <= now]
    in_force = past[-1] if past else None
    upcoming = tuple(VersionInfo.of(v, is_change=True) for v in published if v.effective_at > now)
    current = PolicyCurrent(
        in_force=VersionInfo.of(in_force, is_change=len(past) > 1) if in_force else None,
        upcoming=upcoming,
        computed_at=now,
    )
    timeout = _CACHE_SECONDS
    if upcoming:
        timeout = max(1, min(timeout, int((upcoming[0].effective_at - now).total_seconds()) + 1))
    cache.set(_CACHE_KEY, current, timeout)
    return current


def policy_cache_clear() -> None:
    cache.delete(_CACHE_KEY)


# --- Drafting -------------------------------------------------------------------------------------


def policy_version_save(*, actor, version: PolicyVersion, changed_fields: list[str] | None = None) -> PolicyVersion:
    """PM-X-1: create or edit a draft version. A published version never changes (add a new version)."""
    creating = version._state.adding
    with transaction.atomic():
        if not creating and PolicyVersion.objects.filter(pk=version.pk, published_at__isnull=False).exists():
            raise ValidationError(f"Policy {version.label} is published: it cannot change. Draft a new version instead.")
        version.full_clean()
        version.save()
        audit_record(
            actor=actor,
            action="policy.draft_created" if creating else "policy.draft_updated",
            target=version,
            details={"label": version.label, "fields": sorted(changed_fields or [])},
        )
    return version


def policy_version_delete(*, actor, version: PolicyVersion) -> None:
    """Delete a draft. A published version is part of the record of what subjects were told: it stays."""
    with transaction.atomic():
        version = PolicyVersion.objects.select_for_update().get(pk=version.pk)
        if version.published_at is not None:
            raise ValidationError(f"Policy {version.label} is published: it cannot be deleted.")
        target = (version._meta.label_lower, version.pk)
        label = version.label
        version.delete()
        audit_record(actor=actor, action="policy.draft_deleted", target=target, details={"label": label})


# --- Publishing -----------------------------------------------------------------------------------


def policy_notice_short(*, version: PolicyVersion, now: datetime.datetime | None = None) -> bool:
    """True when the effective date is less than POLICY_NOTICE_DAYS away: publication then needs a reason."""
    now = now or timezone.now()
    return version.effective_at < now + datetime.timedelta(days=settings.POLICY_NOTICE_DAYS)


def policy_version_publish(
    *, actor, version: PolicyVersion, short_notice_reason: str = "", short_notice_note: str = ""
) -> PolicyVersion:
    """PM-X-1, PM-X-2: publish a drafted version and queue the notices to every account holder.

    The caller checks the `consents.publish_policyversion` permission. Refused: an already published
    version; one without its summary or text; one that would not take effect after every published
    version; less than POLICY_NOTICE_DAYS of notice without a reason (and a note for "other").
    """
    from .tasks import send_policy_notices

    short_notice_note = short_notice_note.strip()
    with transaction.atomic():
        version = PolicyVersion.objects.select_for_update().get(pk=version.pk)
        now = timezone.now()
        if version.published_at is not None:
            raise ValidationError(f"Policy {version.label} was already published on {version.published_at:%Y-%m-%d %H:%M} UTC.")
        errors: dict[str, str] = {}
        if not version.summary.strip():
            errors["summary"] = "Write the summary of changes first: the notice e-mail and the banner carry it."
        if not version.text.strip():
            errors["text"] = "Paste the full text of the policy first: subjects must be able to read what they accept."
        latest = _published().order_by("-effective_at", "-id").first()
        if latest is not None and version.effective_at <= latest.effective_at:
            errors["effective_at"] = (
                f"A new version must take effect after every published one; policy {latest.label} takes effect "
                f"{latest.effective_at:%Y-%m-%d %H:%M} UTC."
            )
        short = policy_notice_short(version=version, now=now)
        if short:
            if short_notice_reason not in Reason.values or short_notice_reason == Reason.NONE:
                errors["short_notice_reason"] = (
                    f"The effective date is less than {settings.POLICY_NOTICE_DAYS} days away: give the reason for short notice."
                )
            elif short_notice_reason == Reason.OTHER and not short_notice_note:
                errors["short_notice_note"] = "Explain the reason in the note."
        if errors:
            raise ValidationError(errors)
        version.short_notice_reason = short_notice_reason if short else ""
        version.short_notice_note = short_notice_note if short else ""
        version.url = version.url or settings.POLICY_URL
        version.published_at = now
        version.published_by = actor
        version.save()
        audit_record(
            actor=actor,
            action="policy.published",
            target=version,
            details={
                "label": version.label,
                "effective_at": version.effective_at,
                "notice_days": (version.effective_at - now).days,
                "short_notice_reason": version.short_notice_reason,
                "recipients": policy_notice_recipients(version=version).count(),
            },
        )
        transaction.on_commit(policy_cache_clear)
        transaction.on_commit(send_policy_notices.delay)
    return version


def policy_notice_recipients(*, version: PolicyVersion):
    """The accounts a version's notice goes to and has not yet: active account holders (not staff, not
    closed) with no delivery for it and who did not already accept it knowingly (sign-up, banner, import)."""
    from django.contrib.auth import get_user_model
    from django.db.models import Exists, OuterRef

    User = get_user_model()
    knowingly = [PolicyAcceptance.Method.SIGNUP, PolicyAcceptance.Method.ACKNOWLEDGEMENT, PolicyAcceptance.Method.IMPORT]
    return (
        User.objects.filter(is_active=True, is_staff=False, closed_at__isnull=True)
        .exclude(Exists(PolicyNoticeDelivery.objects.filter(version=version, user=OuterRef("pk"))))
        .exclude(
            Exists(PolicyAcceptance.objects.filter(version=version, subject_ref=OuterRef("subject_ref"), method__in=knowingly))
        )
    )


# --- Accepting ------------------------------------------------------------------------------------


def policy_accept(
    *, subject, version: PolicyVersion, method: str, client: str = "web", user_agent: str | None = None
) -> PolicyAcceptance:
    """PM-0-1, PM-X-3: record that `subject` (an account) accepted `version`, and how. Idempotent: the first
    acceptance of a version is kept; a later call returns it unchanged and writes nothing."""
    if method not in PolicyAcceptance.Method.values:
        raise ValidationError({"method": f"Unknown method {method!r}; use one of {', '.join(PolicyAcceptance.Method.values)}."})
    if version.published_at is None:
        raise ValidationError({"version": f"Policy {version.label} is not published: it cannot be accepted."})
    existing = PolicyAcceptance.objects.filter(subject_ref=subject.subject_ref, version=version).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            acceptance = PolicyAcceptance.objects.create(
                subject_ref=subject.subject_ref,
                version=version,
                method=method,
                client=client[:40],
                ua_hash=keyed_hash(user_agent, scope="ua"),
            )
            audit_record(
                actor=None,
                action="policy.accepted",
                target=acceptance,
                subject=subject,
                details={"version": version.label, "method": method, "client": acceptance.client},
            )
    except IntegrityError:
        # Another request of the same subject recorded it first; theirs is the acceptance.
        return PolicyAcceptance.objects.get(subject_ref=subject.subject_ref, version=version)
    return acceptance


def policy_acknowledge(*, user, version: PolicyVersion, user_agent: str | None = None) -> PolicyNoticeDelivery:
    """PM-X-2, PM-0-1: the subject pressed "I have read this" on the update banner.

    Marks their notice delivery acknowledged (creating it, status in-service, when they saw the banner
    before any e-mail: the notice run then sends none) and records the acceptance, method acknowledgement,
    unless they had already accepted the version another way."""
    if version.published_at is None:
        raise ValidationError({"version": f"Policy {version.label} is not published."})
    now = timezone.now()
    with transaction.atomic():
        delivery, created = PolicyNoticeDelivery.objects.get_or_create(
            version=version,
            user=user,
            defaults={"status": PolicyNoticeDelivery.Status.IN_SERVICE, "sent_at": now, "acknowledged_at": now},
        )
        if not created and delivery.acknowledged_at is None:
            PolicyNoticeDelivery.objects.filter(pk=delivery.pk, acknowledged_at__isnull=True).update(acknowledged_at=now)
            delivery.acknowledged_at = now
        policy_accept(subject=user, version=version, method=PolicyAcceptance.Method.ACKNOWLEDGEMENT, user_agent=user_agent)
    return delivery


def policy_pending_for(*, user, candidates: list[VersionInfo]) -> list[int]:
    """Of `candidates`, the version ids the subject has not acknowledged nor knowingly accepted (one query each)."""
    ids = [c.id for c in candidates]
    if not ids:
        return []
    acknowledged = set(
        PolicyNoticeDelivery.objects.filter(user=user, version_id__in=ids, acknowledged_at__isnull=False).values_list(
            "version_id", flat=True
        )
    )
    accepted = set(
        PolicyAcceptance.objects.filter(subject_ref=user.subject_ref, version_id__in=ids)
        .exclude(method=PolicyAcceptance.Method.CONTINUED_USE)
        .values_list("version_id", flat=True)
    )
    return [i for i in ids if i not in acknowledged | accepted]
