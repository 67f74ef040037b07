"""Policy versions, written: drafting, publishing and recording who accepted which (section X).

Invariants:
- Publication is one-way and ordered: a published version is never unpublished or edited (the workbench
  shows it read-only), and a new version must take effect after every published one, so "the version in
  force at time t" never changes for a past t. Less than settings.POLICY_NOTICE_DAYS of notice needs a
  recorded reason (PM-X-2); the notice run is queued when the publication commits.
- A PolicyAcceptance is one row per (subject, version), written once and never changed (PM-0-1): the
  first way a subject accepted a version is the one recorded; later calls return it unchanged.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from privacyops.audit import audit_record
from privacyops.privacy.strategies import pseudonym
from privacyops.queueing import task_queue_on_commit

from .models import PolicyAcceptance, PolicyNoticeDelivery, PolicyVersion
from .selectors import policy_cache_clear, policy_notice_recipients, policy_notice_short, policy_versions_published

Reason = PolicyVersion.ShortNoticeReason


def _ua_hash(user_agent: str | None) -> str:
    """A keyed fingerprint of the user agent, never the string. Its scope is the one the consent ledger
    uses ("consents:ua"), so an acceptance and a consent event from one browser still compare equal."""
    return pseudonym(user_agent, scope="consents:ua") if user_agent else ""


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


def policy_version_publish(
    *, actor, version: PolicyVersion, short_notice_reason: str = "", short_notice_note: str = ""
) -> PolicyVersion:
    """PM-X-1, PM-X-2: publish a drafted version and queue the notices to every account holder.

    The caller checks the `policies.publish_policyversion` permission. Refused: an already published
    version; one without its summary or text; one that would not take effect after every published
    version; less than POLICY_NOTICE_DAYS of notice without a reason (and a note for "other").
    """
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
        latest = policy_versions_published().order_by("-effective_at", "-id").first()
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
        task_queue_on_commit("policies.tasks.policy_notice_batches_send")
    return version


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
                ua_hash=_ua_hash(user_agent),
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
