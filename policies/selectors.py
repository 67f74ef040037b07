"""Policy versions, read: which one is in force, which come next, who still has to be told (section X).

Invariants:
- Only published versions count. A version is in force from its effective time until a later published
  version takes effect; `policy_version_in_force` is the only definition (the ledger, the portal, the
  banner and the acceptance middleware all ask it).
- `policy_current()` is the cached view of the in-force and upcoming versions the middleware and the
  banner read on every request of a signed-in subject. It expires when the next version takes effect and
  is dropped when a publication commits, so it is never older than one publication (see `_CACHE_KEY`).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from .models import PolicyAcceptance, PolicyNoticeDelivery, PolicyVersion

# The cache holds what every signed-in request needs; a publication deletes it on commit. The key is the
# one it had in the consents app, so a deployment's cached entry stays the one that is cleared.
_CACHE_KEY = "consents:policy:current:v1"
_CACHE_SECONDS = 60


def policy_versions_published() -> QuerySet[PolicyVersion]:
    """Every published version (drafts are not public and count for nothing)."""
    return PolicyVersion.objects.filter(published_at__isnull=False)


def policy_version_in_force(*, at: datetime.datetime | None = None) -> PolicyVersion | None:
    """PM-X-1: the published version that has taken effect most recently at `at` (now by default)."""
    at = at or timezone.now()
    return policy_versions_published().filter(effective_at__lte=at).order_by("-effective_at", "-id").first()


def policy_version_upcoming(*, at: datetime.datetime | None = None) -> PolicyVersion | None:
    """PM-X-2: the next published version that has not yet taken effect, if any."""
    at = at or timezone.now()
    return policy_versions_published().filter(effective_at__gt=at).order_by("effective_at", "id").first()


def policy_last_updated(*, at: datetime.datetime | None = None) -> datetime.date | None:
    """PM-X-1: the "last updated" date of the version in force."""
    version = policy_version_in_force(at=at)
    return version.last_updated if version else None


def policy_history() -> QuerySet[PolicyVersion]:
    """PM-X-1: every published version, newest first (upcoming ones included, they are public once published)."""
    return policy_versions_published().order_by("-effective_at", "-id")


def policy_version_previous(version: PolicyVersion) -> PolicyVersion | None:
    """The published version this one replaces (None for the first: it changes nothing, so no notice)."""
    return policy_versions_published().filter(effective_at__lt=version.effective_at).order_by("-effective_at", "-id").first()


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
    published = list(policy_versions_published().order_by("effective_at", "id"))
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


def policy_notice_short(*, version: PolicyVersion, now: datetime.datetime | None = None) -> bool:
    """True when the effective date is less than POLICY_NOTICE_DAYS away: publication then needs a reason."""
    now = now or timezone.now()
    return version.effective_at < now + datetime.timedelta(days=settings.POLICY_NOTICE_DAYS)


def policy_notice_recipients(*, version: PolicyVersion):
    """The accounts a version's notice goes to and has not yet: active account holders (not staff, not
    closed) with no delivery for it and who did not already accept it knowingly (sign-up, banner, import)."""
    User = get_user_model()
    knowingly = [PolicyAcceptance.Method.SIGNUP, PolicyAcceptance.Method.ACKNOWLEDGEMENT, PolicyAcceptance.Method.IMPORT]
    return (
        User.objects.filter(is_active=True, is_staff=False, closed_at__isnull=True)
        .exclude(Exists(PolicyNoticeDelivery.objects.filter(version=version, user=OuterRef("pk"))))
        .exclude(
            Exists(PolicyAcceptance.objects.filter(version=version, subject_ref=OuterRef("subject_ref"), method__in=knowingly))
        )
    )


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
