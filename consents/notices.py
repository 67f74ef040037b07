"""The notice run: e-mailing every account holder about a published policy version (PM-X-2).

Never twice per account and version, even across crashes and concurrent runs:
- Claim, then send, then confirm. A batch of accounts is *claimed* in one short committed transaction by
  inserting their PolicyNoticeDelivery rows with status `claimed` (the unique (version, user) row is the
  guarantee: an account with a row is never picked again). Only then are the e-mails sent, and each row
  is marked `sent` right after its message left. A crash between the claim and the send, or between the
  send and the confirmation, leaves a `claimed` row: we cannot know whether that message went out, so it
  is never sent again automatically. Rows claimed longer than CLAIM_STALE_AFTER ago are reported as
  *unconfirmed* to the DPO (audit event, workbench filter), who checks the mail log and marks them sent or
  sends them again (`policy_notice_resend`).
- Claims are serialised: the claiming transaction takes a transaction-scoped advisory lock on PostgreSQL
  (SQLite transactions hold the single write lock from BEGIN), and picks its accounts after taking it, so
  it sees every earlier claim. Concurrent runs therefore share the work batch by batch and never claim
  the same account; sending happens outside any transaction or lock.
- A message that fails to send is marked `failed` (reported, never retried automatically). The rest of
  its batch, not yet attempted, is released (rows deleted) so a later run sends it: an unattempted message
  cannot have gone out. The run then stops; the mail server is probably down.
- Batches are keyset-paginated on the account id within a run (settings.POLICY_NOTICE_BATCH_SIZE); a new
  run starts again from the lowest id, and the "no delivery row" condition skips everyone already done, so
  a killed run resumes where it stopped. A version's run is complete -- `notice_sent_at` set -- when no
  account is left to claim.
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
from .policy import policy_notice_recipients, policy_version_previous

logger = logging.getLogger(__name__)

Status = PolicyNoticeDelivery.Status

# Any fixed 64-bit number: serialises notice claims on PostgreSQL.
_CLAIM_LOCK_KEY = 0x50524956_4E4F5443  # "PRIV" "NOTC"

# A claim this old was left by a run that died: its message may or may not have gone out.
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
            [PolicyNoticeDelivery(version=version, user_id=i, status=Status.CLAIMED, sent_at=now) for i in ids],
            ignore_conflicts=True,  # a subject acknowledging the banner right now has their row already
        )
        claimed = list(
            PolicyNoticeDelivery.objects.filter(version=version, user_id__in=ids, status=Status.CLAIMED, sent_at=now)
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


def _send_batch(*, version: PolicyVersion, ids: list[int]) -> tuple[int, int, int]:
    """Send the claimed batch; returns (sent, failed, released)."""
    from django.contrib.auth import get_user_model

    users = {u.pk: u for u in get_user_model().objects.filter(pk__in=ids).only("pk", "email", "name")}
    sent = failed = 0
    mail = get_connection()
    try:
        mail.open()
        for position, user_id in enumerate(ids):
            user = users.get(user_id)
            try:
                if user is None:  # erased between claim and send: nothing to send, nobody to tell
                    raise LookupError("account gone")
                policy_notice_message(version=version, user=user, connection=mail).send()
            except Exception:
                logger.exception(
                    "Policy notice %s to account %s failed; the rest of the batch is released", version.label, user_id
                )
                PolicyNoticeDelivery.objects.filter(version=version, user_id=user_id, status=Status.CLAIMED).update(
                    status=Status.FAILED
                )
                failed += 1
                rest = ids[position + 1 :]
                released, _ = PolicyNoticeDelivery.objects.filter(
                    version=version, user_id__in=rest, status=Status.CLAIMED
                ).delete()
                return sent, failed, released
            PolicyNoticeDelivery.objects.filter(version=version, user_id=user_id, status=Status.CLAIMED).update(
                status=Status.SENT, sent_at=timezone.now()
            )
            sent += 1
    finally:
        mail.close()
    return sent, failed, 0


def policy_notices_unconfirmed(*, version: PolicyVersion | None = None, now: datetime.datetime | None = None):
    """Deliveries claimed by a run that never confirmed them (see the module docstring)."""
    now = now or timezone.now()
    rows = PolicyNoticeDelivery.objects.filter(status=Status.CLAIMED, sent_at__lt=now - CLAIM_STALE_AFTER)
    return rows.filter(version=version) if version is not None else rows


def policy_notices_send(*, max_batches: int | None = None) -> int:
    """PM-X-2: send the next notices of every published version whose notice run is not complete.

    Returns how many e-mails were sent. Safe to run at any time, as often as wanted, concurrently."""
    size = max(1, settings.POLICY_NOTICE_BATCH_SIZE)
    total = batches = 0
    versions = PolicyVersion.objects.filter(published_at__isnull=False, notice_sent_at__isnull=True).order_by(
        "effective_at", "id"
    )
    for version in versions:
        after_id = 0
        while max_batches is None or batches < max_batches:
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
            with transaction.atomic():
                audit_record(
                    actor=None,
                    action="policy.notices_sent",
                    target=version,
                    details={
                        "version": version.label,
                        "claimed": len(ids),
                        "sent": sent,
                        "failed": failed,
                        "released": released,
                        "unconfirmed": policy_notices_unconfirmed(version=version).count(),
                    },
                )
            if failed:
                return total
    return total


def _complete(version: PolicyVersion) -> None:
    """Nobody left to claim: the run is complete (idempotent: a concurrent run may finish first)."""
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
        if delivery.status not in (Status.CLAIMED, Status.FAILED):
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
        if delivery.status != Status.CLAIMED:
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
