"""The notice run: e-mailing every account holder about a published policy version (PM-X-2).

Never twice per account and version, even across crashes and concurrent runs:
- Claim, take, send, confirm. A batch of accounts is *claimed* in one short committed transaction by
  inserting their PolicyNoticeDelivery rows as `queued` (the unique (version, user) row: an account with a
  row is never claimed again). Each message is then *taken* -- `queued` -> `sending`, a conditional UPDATE
  in its own commit that only one process can win -- sent, and *confirmed* `sent`. So a crash leaves:
  `queued` rows, never attempted, which a later run re-claims once they are CLAIM_STALE_AFTER old and
  sends (they cannot have gone out); and at most one `sending` row per crashed run, whose message may or
  may not have left. A `sending` row is never sent again automatically: once stale it is reported as
  *unconfirmed* to the DPO (audit events, the workbench's filter), who checks the mail log and marks it
  sent or sends it again (`policy_notice_confirm`, `policy_notice_resend`).
- Claims are serialised: the claiming transaction takes a transaction-scoped advisory lock on PostgreSQL
  (SQLite transactions hold the single write lock from BEGIN) and picks its accounts after taking it, so it
  sees every earlier claim. Concurrent runs share the work batch by batch; even if two ever held the same
  queued row (a re-claim racing a slow run), only one wins its take. Sending holds no lock or transaction.
- A message that fails to send is marked `failed` (reported, never retried automatically). The rest of its
  batch, not yet attempted, is released (rows deleted) so a later run sends it, and the run stops: the mail
  server is probably down.
- Batches are keyset-paginated on the account id within a run (settings.POLICY_NOTICE_BATCH_SIZE); a new run
  starts again from the lowest id and the "no delivery row" condition skips everyone done, so a killed run
  resumes where it stopped. A version's run is complete -- `notice_sent_at` set -- when nobody is left to
  claim and no queued row waits.
- One audit event per batch, with counts (never addresses).
"""

from __future__ import annotations

import datetime
import logging

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from privacyops.audit import audit_record

from .models import PolicyNoticeDelivery, PolicyVersion
from .selectors import policy_notice_recipients, policy_version_previous

logger = logging.getLogger(__name__)

Status = PolicyNoticeDelivery.Status

# Any fixed 64-bit number: serialises notice claims on PostgreSQL.
_CLAIM_LOCK_KEY = 0x50524956_4E4F5443  # "PRIV" "NOTC"

# A queued or sending row this old was left by a run that died (a batch takes seconds to minutes).
CLAIM_STALE_AFTER = datetime.timedelta(hours=1)


def _claim_lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CLAIM_LOCK_KEY])


def policy_notice_claim(*, version: PolicyVersion, after_id: int, size: int) -> tuple[int | None, list[int]]:
    """Claim the next `size` accounts (by id, after `after_id`) that have no delivery for `version`.

    Returns the last account id looked at (None: nobody left) and the ids claimed. Commits before
    returning: the claim is durable before any message is sent."""
    with transaction.atomic():
        _claim_lock()
        ids = list(
            policy_notice_recipients(version=version).filter(pk__gt=after_id).order_by("pk").values_list("pk", flat=True)[:size]
        )
        if not ids:
            return None, []
        now = timezone.now()
        PolicyNoticeDelivery.objects.bulk_create(
            [PolicyNoticeDelivery(version=version, user_id=i, status=Status.QUEUED, sent_at=now) for i in ids],
            ignore_conflicts=True,  # a subject acknowledging the banner right now has their row already
        )
        claimed = list(
            PolicyNoticeDelivery.objects.filter(version=version, user_id__in=ids, status=Status.QUEUED, sent_at=now)
            .order_by("user_id")
            .values_list("user_id", flat=True)
        )
    return ids[-1], claimed


def policy_notice_message(*, version: PolicyVersion, user, connection=None) -> EmailMultiAlternatives:
    """The notice e-mail (plain text and HTML) for one account."""
    previous = policy_version_previous(version) if version.pk else None
    context = {
        "version": version,
        "previous": previous,
        "name": user.name,
        "policy_url": version.url or settings.POLICY_URL,
        "in_force_now": version.effective_at <= timezone.now(),
        "controller": {
            "name": settings.CONTROLLER_NAME,
            "dpo_name": settings.DPO_NAME,
            "dpo_email": settings.DPO_EMAIL,
            "dpo_postal_address": settings.DPO_POSTAL_ADDRESS,
        },
    }
    subject = render_to_string("consents/email/policy_notice_subject.txt", context).strip()
    message = EmailMultiAlternatives(
        subject=" ".join(subject.split()),
        body=render_to_string("consents/email/policy_notice.txt", context),
        to=[user.email],
        connection=connection,
        headers={"Auto-Submitted": "auto-generated"},
    )
    message.attach_alternative(render_to_string("consents/email/policy_notice.html", context), "text/html")
    return message


def policy_notice_reclaim(*, version: PolicyVersion, size: int, now: datetime.datetime | None = None) -> list[int]:
    """Claim again up to `size` queued rows left by a run that died (never attempted, so safe to send)."""
    now = now or timezone.now()
    with transaction.atomic():
        _claim_lock()
        ids = list(
            PolicyNoticeDelivery.objects.filter(version=version, status=Status.QUEUED, sent_at__lt=now - CLAIM_STALE_AFTER)
            .order_by("user_id")
            .values_list("user_id", flat=True)[:size]
        )
        PolicyNoticeDelivery.objects.filter(version=version, status=Status.QUEUED, user_id__in=ids).update(sent_at=now)
    return ids


def _take(version: PolicyVersion, user_id: int) -> bool:
    """queued -> sending, committed before the message goes; False when another run took it first."""
    return bool(
        PolicyNoticeDelivery.objects.filter(version=version, user_id=user_id, status=Status.QUEUED).update(
            status=Status.SENDING, sent_at=timezone.now()
        )
    )


def _send_batch(*, version: PolicyVersion, ids: list[int]) -> tuple[int, int, int]:
    """Send a claimed batch; returns (sent, failed, released)."""
    from django.contrib.auth import get_user_model

    users = {u.pk: u for u in get_user_model().objects.filter(pk__in=ids).only("pk", "email", "name")}
    sent = failed = 0
    mail = get_connection()
    try:
        mail.open()
    except Exception:
        # Nothing was attempted: hand the whole batch back for a later run, and let the task fail loudly.
        PolicyNoticeDelivery.objects.filter(version=version, user_id__in=ids, status=Status.QUEUED).delete()
        raise
    try:
        for position, user_id in enumerate(ids):
            if not _take(version, user_id):
                continue
            rows = PolicyNoticeDelivery.objects.filter(version=version, user_id=user_id, status=Status.SENDING)
            try:
                user = users.get(user_id)
                if user is None:  # erased since the claim: nobody to tell
                    raise LookupError(f"account {user_id} no longer exists")
                policy_notice_message(version=version, user=user, connection=mail).send()
            except Exception:
                logger.exception("Policy notice %s to account %s failed; rest of batch released", version.label, user_id)
                rows.update(status=Status.FAILED)
                failed += 1
                rest = ids[position + 1 :]
                released, _ = PolicyNoticeDelivery.objects.filter(
                    version=version, user_id__in=rest, status=Status.QUEUED
                ).delete()
                return sent, failed, released
            rows.update(status=Status.SENT, sent_at=timezone.now())
            sent += 1
    finally:
        mail.close()
    return sent, failed, 0


def policy_notices_unconfirmed(*, version: PolicyVersion | None = None, now: datetime.datetime | None = None):
    """Deliveries whose sending was never confirmed by a run that died (see the module docstring)."""
    now = now or timezone.now()
    rows = PolicyNoticeDelivery.objects.filter(status=Status.SENDING, sent_at__lt=now - CLAIM_STALE_AFTER)
    return rows.filter(version=version) if version is not None else rows


def _batch_audit(version: PolicyVersion, *, claimed: int, sent: int, failed: int, released: int, reclaimed: bool) -> None:
    with transaction.atomic():
        audit_record(
            actor=None,
            action="policy.notices_sent",
            target=version,
            details={
                "version": version.label,
                "claimed": claimed,
                "reclaimed": reclaimed,
                "sent": sent,
                "failed": failed,
                "released": released,
                "unconfirmed": policy_notices_unconfirmed(version=version).count(),
            },
        )


def policy_notices_send(*, max_batches: int | None = None) -> int:
    """PM-X-2: send the next notices of every published version whose notice run is not complete.

    Returns how many e-mails were sent. Safe to run at any time, as often as wanted, concurrently."""
    size = max(1, settings.POLICY_NOTICE_BATCH_SIZE)
    total = batches = 0

    def more() -> bool:
        return max_batches is None or batches < max_batches

    versions = PolicyVersion.objects.filter(published_at__isnull=False, notice_sent_at__isnull=True)
    for version in versions.order_by("effective_at", "id"):
        while more():  # first the batches a dead run left queued
            ids = policy_notice_reclaim(version=version, size=size)
            if not ids:
                break
            batches += 1
            sent, failed, released = _send_batch(version=version, ids=ids)
            total += sent
            _batch_audit(version, claimed=len(ids), sent=sent, failed=failed, released=released, reclaimed=True)
            if failed:
                return total
        after_id = 0
        while more():
            last, ids = policy_notice_claim(version=version, after_id=after_id, size=size)
            if last is None:
                _complete(version)
                break
            after_id = last
            if not ids:  # everyone picked acknowledged the banner meanwhile
                continue
            batches += 1
            sent, failed, released = _send_batch(version=version, ids=ids)
            total += sent
            _batch_audit(version, claimed=len(ids), sent=sent, failed=failed, released=released, reclaimed=False)
            if failed:
                return total
    return total


def _complete(version: PolicyVersion) -> None:
    """Nobody left to claim: the run is complete (idempotent: a concurrent run may finish first)."""
    if PolicyNoticeDelivery.objects.filter(version=version, status=Status.QUEUED).exists():
        return  # a run that died left a batch queued: it is sent once stale (policy_notice_reclaim)
    with transaction.atomic():
        done = PolicyVersion.objects.filter(pk=version.pk, notice_sent_at__isnull=True).update(notice_sent_at=timezone.now())
        if done:
            rows = PolicyNoticeDelivery.objects.filter(version=version)
            counts = {status: rows.filter(status=status).count() for status in Status.values}
            audit_record(
                actor=None,
                action="policy.notices_complete",
                target=version,
                details={"version": version.label, **counts},
            )


def policy_notice_resend(*, actor, delivery: PolicyNoticeDelivery) -> PolicyNoticeDelivery:
    """Send one unconfirmed or failed notice again, on the DPO's decision after checking the mail log."""
    from django.core.exceptions import ValidationError

    with transaction.atomic():
        delivery = PolicyNoticeDelivery.objects.select_for_update().select_related("version", "user").get(pk=delivery.pk)
        if delivery.status not in (Status.SENDING, Status.FAILED):
            raise ValidationError(f"This notice is {delivery.get_status_display().lower()}: there is nothing to send again.")
        policy_notice_message(version=delivery.version, user=delivery.user).send()
        delivery.status = Status.SENT
        delivery.sent_at = timezone.now()
        delivery.save(update_fields=["status", "sent_at"])
        audit_record(
            actor=actor,
            action="policy.notice_resent",
            target=delivery,
            subject=delivery.user,
            details={"version": delivery.version.label},
        )
    return delivery


def policy_notice_confirm(*, actor, delivery: PolicyNoticeDelivery) -> PolicyNoticeDelivery:
    """Mark an unconfirmed notice as sent, on the DPO's word that the mail log shows it went out."""
    from django.core.exceptions import ValidationError

    with transaction.atomic():
        delivery = PolicyNoticeDelivery.objects.select_for_update().select_related("version").get(pk=delivery.pk)
        if delivery.status != Status.SENDING:
            raise ValidationError("Only an unconfirmed notice can be confirmed.")
        delivery.status = Status.SENT
        delivery.save(update_fields=["status"])
        audit_record(
            actor=actor,
            action="policy.notice_confirmed",
            target=delivery,
            subject=delivery.user,
            details={"version": delivery.version.label},
        )
    return delivery
