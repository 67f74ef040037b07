"""Knowing who asked before anything is done (issue 5 §3, PM-IX-9, PM-XI-2).

A subject signed in on the web is verified by the session (`rights_request_submit(verified=True)`). Every
other request (logged by staff from an e-mail or a letter, or made without an account) is verified by a
link sent by e-mail:

- Verification links: `secrets.token_urlsafe(32)`, of which only the SHA-256 is stored (`VerificationLink`),
  so a copy of the database holds no working link. The link goes to the account's address when the
  request is about an account (only its holder can confirm, whatever address the request came from),
  else to the contact address given. It works once, for REQUEST_VERIFICATION_DAYS; sending a new one
  ends every earlier unused link of the request, so only the latest e-mail works.
- Status links: `django.core.signing` with their own salt, holding the request's pk and reference. No
  database row and no expiry of their own: the link shows only the request's status and timeline, it
  works as long as the request's record exists (its retention rule deletes it 24 months after closure,
  and the link with it), and a requester without an account has no other way to follow the request. The
  reference in the token keeps a link from ever naming another request should a pk be reused (SQLite
  reuses the highest pk after a delete). Rotating SECRET_KEY (without SECRET_KEY_FALLBACKS) ends them all.
- A request still unverified REQUEST_UNVERIFIED_CLOSE_DAYS after it was recorded, and after the last
  verification link was sent, closes itself as unverified and the requester is told
  (`requests_close_unverified`, a daily beat job; idempotent: a closed request is not picked again).
- `require_verified` is the gate before data leaves or is erased: the export and erasure code calls it.
  For a request by an agent it also needs the agent's proof of authority verified by staff (PM-XI-2).

Locks: the request row first, then its links (send, consume and close all take them in that order).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import F, Max, Q
from django.urls import reverse
from django.utils import timezone

from . import services
from .emails import request_email_send, site_url
from .models import Requester, Right, RightsRequest, Status, VerificationLink
from .timeline import request_event_record

logger = logging.getLogger(__name__)

STATUS_SALT = "requests.verification.status-link"
TOKEN_BYTES = 32
UNVERIFIED_STATUSES = (Status.RECEIVED, Status.AWAITING_VERIFICATION)


class VerificationError(Exception):
    """A link that does not work (unknown, used, expired or replaced, its request closed), or a request not
    verified where it must be. The message is meant for the person who followed the link."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _lock(rights_request_id: int) -> RightsRequest:
    return RightsRequest.objects.locked(rights_request_id)


# --- E-mail -----------------------------------------------------------------------------------------------


# --- Verification links -----------------------------------------------------------------------------------


def verification_link_send(*, rights_request: RightsRequest, actor=None) -> VerificationLink:
    """E-mail a single-use verification link (valid REQUEST_VERIFICATION_DAYS) and end the earlier unused
    ones; a request still "received" moves to "awaiting verification". The raw token is on the returned
    link as `.token` (never stored)."""
    with transaction.atomic():
        locked = _lock(rights_request.pk)
        if not locked.is_open:
            raise VerificationError(f"Request {locked.reference} is closed ({locked.get_status_display().lower()}).")
        if locked.verified_at is not None:
            raise VerificationError(f"Request {locked.reference} is already verified.")
        if locked.status == Status.RECEIVED:
            services.rights_request_move(
                rights_request=locked, to_status=Status.AWAITING_VERIFICATION, actor=actor, note="Verification link sent."
            )
        now = timezone.now()
        unused = VerificationLink.objects.filter(request=locked, used_at__isnull=True, expires_at__gt=now)
        # Ended, not deleted: the rows stay as the record of what was sent. (A link created in this very
        # microsecond cannot expire at `now` without breaking expires > created; it gets one microsecond.)
        replaced = unused.filter(created_at__lt=now).update(expires_at=now) + unused.filter(created_at__gte=now).update(
            expires_at=F("created_at") + timedelta(microseconds=1)
        )
        token = secrets.token_urlsafe(TOKEN_BYTES)
        to = locked.subject.email if locked.subject is not None else locked.contact_email
        link = VerificationLink.objects.create(
            request=locked,
            token_sha256=_digest(token),
            sent_to=to,
            created_at=now,
            expires_at=now + timedelta(days=settings.REQUEST_VERIFICATION_DAYS),
        )
        details = {"link": link.pk, "expires_at": link.expires_at.isoformat(), "replaced": replaced}
        # Audited only: the e-mail that carries the link is the timeline's entry.
        request_event_record(
            rights_request=locked,
            action="rights_request.verification_link_sent",
            actor=actor,
            kind=None,
            details={"to_account": locked.subject is not None, **details},
        )
        request_email_send(
            rights_request=locked,
            template="verification",
            to=to,
            actor=actor,
            details=details,
            verify_url=site_url(reverse("requests:verify", kwargs={"token": token})),
            status_url=site_url(reverse("requests:status", kwargs={"token": status_token(locked)})),
            expires_at=link.expires_at,
            replaced=replaced,
            for_account=locked.subject is not None,
            close_days=settings.REQUEST_UNVERIFIED_CLOSE_DAYS,
        )
    rights_request.refresh_from_db()
    link.token = token
    return link


def verification_link_consume(*, token: str) -> RightsRequest:
    """Use a verification link: the request is verified (method "email_link") and, if it was waiting for
    that, moves to in progress. Raises VerificationError for an unknown, used, expired or replaced link,
    or when its request is closed."""
    digest = _digest(token or "")
    request_id = VerificationLink.objects.filter(token_sha256=digest).values_list("request_id", flat=True).first()
    if request_id is None:
        raise VerificationError("This link is not valid. Check that it was copied whole, or ask for a new one.")
    with transaction.atomic():
        locked = _lock(request_id)
        link = VerificationLink.objects.select_for_update().get(token_sha256=digest)
        now = timezone.now()
        if link.used_at is not None:
            raise VerificationError("This link was already used: each link works once.")
        if link.expires_at <= now:
            raise VerificationError(
                "This link no longer works: it has expired, or we sent a newer one. "
                "Use the latest e-mail, or ask us for a new link."
            )
        if not locked.is_open:
            raise VerificationError(f"Request {locked.reference} is closed ({locked.get_status_display().lower()}).")
        link.used_at = now
        link.save(update_fields=["used_at"])
        if locked.verified_at is None:
            services.rights_request_verify(rights_request=locked, actor=None, method="email_link")
        # else staff verified it meanwhile (a document, a call): the link is used up, nothing more to do.
    return locked


# --- Status links -----------------------------------------------------------------------------------------


def status_token(rights_request: RightsRequest) -> str:
    """A signed token naming the request (pk and reference), for a status link; no database row. Without a
    timestamp: the same request always has the same link, whichever e-mail carried it."""
    return signing.Signer(salt=STATUS_SALT).sign_object({"r": rights_request.pk, "ref": rights_request.reference})


def request_for_status_token(token: str) -> RightsRequest:
    """The request a status token names; VerificationError when it is not ours, was altered, or its request
    no longer exists."""
    try:
        data = signing.Signer(salt=STATUS_SALT).unsign_object(token)
    except (signing.BadSignature, ValueError) as exc:  # ValueError: signed by us, but not a status token's payload
        raise VerificationError("This status link is not valid. Check that it was copied whole.") from exc
    if not isinstance(data, dict):
        raise VerificationError("This status link is not valid.")
    rights_request = (
        RightsRequest.objects.select_related("jurisdiction").filter(pk=data.get("r"), reference=data.get("ref")).first()
    )
    if rights_request is None:
        raise VerificationError("This request no longer exists: its record was deleted at the end of its retention period.")
    return rights_request


# --- The gate ---------------------------------------------------------------------------------------------


def require_verified(rights_request: RightsRequest) -> None:
    """PM-IX-9: no data leaves and nothing is erased before we know who asked (and, for an agent, that the
    agent's authority was checked, PM-XI-2). Raises VerificationError otherwise."""
    if rights_request.verified_at is None:
        raise VerificationError(f"Request {rights_request.reference} is not verified: nothing leaves or is erased before it is.")
    if rights_request.requester == Requester.AGENT and rights_request.agent_verified_at is None:
        raise VerificationError(
            f"Request {rights_request.reference} was made by an agent whose proof of authority is not verified yet."
        )


# --- Closing unverified requests --------------------------------------------------------------------------


def _unverified_since(cutoff):
    """Open, unverified requests recorded before `cutoff` whose last verification link (if any) was also sent
    before it: a link sent again on day 13 gets its full time. Reports of a child's account are not the
    reporter's own data and get no link: the DPO investigates them whoever made them (PM-VIII-2)."""
    return (
        RightsRequest.objects.filter(status__in=UNVERIFIED_STATUSES, verified_at__isnull=True, created_at__lt=cutoff)
        .exclude(right=Right.CHILD_REPORT)
        .annotate(last_asked=Max("verification_links__created_at"))
        .filter(Q(last_asked__isnull=True) | Q(last_asked__lt=cutoff))
    )


def requests_close_unverified(*, now=None) -> int:
    """Close, as "unverified", the requests nobody verified within REQUEST_UNVERIFIED_CLOSE_DAYS, and e-mail
    each requester; returns how many were closed. Each request in its own transaction, checked again
    under its lock (a link used a second ago wins); running it again closes nothing more."""
    days = settings.REQUEST_UNVERIFIED_CLOSE_DAYS
    cutoff = (now or timezone.now()) - timedelta(days=days)
    closed = 0
    for pk in list(_unverified_since(cutoff).order_by("pk").values_list("pk", flat=True)):
        try:
            with transaction.atomic():
                locked = _lock(pk)
                if not _unverified_since(cutoff).filter(pk=pk).exists():
                    continue
                note = f"Closed unverified: nobody confirmed who made the request within {days} days."
                if locked.status == Status.RECEIVED:
                    # The table goes to "unverified" only from "awaiting verification" (no link was ever sent).
                    services.rights_request_move(
                        rights_request=locked, to_status=Status.AWAITING_VERIFICATION, actor=None, note=note
                    )
                services.rights_request_move(rights_request=locked, to_status=Status.UNVERIFIED, actor=None, note=note)
                request_email_send(
                    rights_request=locked,
                    template="unverified",
                    to=locked.contact_email,
                    actor=None,
                    close_days=days,
                    new_request_url=site_url(reverse("requests:public_new")),
                )
            closed += 1
        except services.RequestActionError:
            # Moved by someone else between the query and the lock: nothing to close.
            logger.info("rights request %s: not closed as unverified, its status changed", pk)
    return closed
