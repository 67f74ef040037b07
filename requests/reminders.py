"""Deadline reminders for staff (PM-IX-9): run hourly by `requests.tasks.deadline_reminders_send`.

An open request's period runs from `received_at` to its deadline in force (`effective_due_at`: the
extended one when it was extended, clock-stopping pauses included). Staff are e-mailed when half of it has
passed, when four fifths have, and when it is overdue: the assignee, or every active DPO when nobody is
assigned (the DPO's published address when there is no DPO account). Hourly, because Indonesia's 3x24-hour
periods pass a mark every few hours.

Invariants:
- Each mark at most once per request: the marks sent are kept on the request (`reminders_sent`), written
  in the same transaction as the timeline entry and the audit event, with the request row locked, so two
  runs at once cannot both send one. The e-mail leaves after that transaction commits.
- A run that finds several marks passed at once (a request logged late, a beat that did not run) sends
  one e-mail, for the latest mark, and records the earlier ones as passed: nobody needs "half time" and
  "overdue" in the same minute.
- A request whose clock is stopped (an open clock-stopping pause) gets no reminder: its deadline moves
  with the pause, and nothing is due from us while we wait for the requester. Internal holds do not stop
  the clock, so their requests are reminded as usual.
- Staff e-mails name the request by reference only: no requester's name, address or request content.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.roles import ROLE_DPO

from . import deadlines
from .models import OPEN_STATUSES, RequestEvent, RequestPause, RightsRequest
from .timeline import request_event_record

logger = logging.getLogger(__name__)

HALF, FOUR_FIFTHS, OVERDUE = "half", "four_fifths", "overdue"
MARKS = (HALF, FOUR_FIFTHS, OVERDUE)  # in the order they pass
FRACTIONS = {HALF: Fraction(1, 2), FOUR_FIFTHS: Fraction(4, 5)}
AUDIT_ACTION = "rights_request.reminder_sent"


@dataclass
class ReminderReport:
    sent: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MARKS, 0))
    checked: int = 0

    @property
    def total(self) -> int:
        return sum(self.sent.values())


def marks_passed(rights_request: RightsRequest, now) -> list[str]:
    """The marks `rights_request`'s period has passed at `now`, in order (sent or not)."""
    start, due = rights_request.received_at, rights_request.effective_due_at
    period = (due - start).total_seconds()
    elapsed = (now - start).total_seconds()
    passed = [mark for mark, fraction in FRACTIONS.items() if elapsed >= period * fraction]
    if now > due:
        passed.append(OVERDUE)
    return passed


def marks_to_send(rights_request: RightsRequest, now) -> list[str]:
    return [m for m in marks_passed(rights_request, now) if m not in (rights_request.reminders_sent or [])]


def reminder_marks_for_new_due(rights_request: RightsRequest, *, now=None) -> list[str]:
    """The marks to keep in `reminders_sent` after the deadline in force moved (an extension, a resume
    after a clock-stopping pause): those the new period has passed too. The caller stores the result, so
    the new period's half, four fifths and overdue are reminded again when they come."""
    passed = marks_passed(rights_request, now or timezone.now())
    return [m for m in (rights_request.reminders_sent or []) if m in passed]


def reminder_recipients(rights_request: RightsRequest) -> tuple[list[str], list[int]]:
    """(addresses, staff user ids): the assignee when one is assigned and active, else every active DPO,
    else the DPO's published address (no user id)."""
    assignee = rights_request.assignee
    if assignee is not None and assignee.is_active and assignee.email:
        return [assignee.email], [assignee.pk]
    dpos = list(
        get_user_model()
        .objects.filter(groups__name=ROLE_DPO, is_active=True, is_staff=True)
        .exclude(email="")
        .order_by("pk")
        .distinct()
        .values_list("pk", "email")
    )
    if dpos:
        return [email for _, email in dpos], [pk for pk, _ in dpos]
    return [settings.DPO_EMAIL], []


def _clock_running():
    return ~Exists(RequestPause.objects.filter(request=OuterRef("pk"), ended_at__isnull=True, stops_clock=True))


def _when(moment) -> str:
    # Formatted here, in the deadline zone: the template filters would show it in TIME_ZONE (UTC), where
    # the end of a due day can fall on another date.
    return f"{moment.day} {moment:%B %Y, %H:%M}"


def _duration(span) -> str:
    # Whole days from two days up; below that, hours (an hour-based period is counted in hours).
    hours = max(int(span.total_seconds() // 3600), 0)
    if hours >= 48:
        return f"{hours // 24} days"
    return f"{hours} hour" + ("" if hours == 1 else "s")


def _render(rights_request: RightsRequest, mark: str, now, *, to_assignee: bool) -> tuple[str, str]:
    zone = deadlines.deadline_zone()
    due = rights_request.effective_due_at.astimezone(zone)
    left = rights_request.effective_due_at - now
    context = {
        "reference": rights_request.reference,
        "right": rights_request.get_right_display(),
        "jurisdiction": rights_request.jurisdiction.code,
        "status": rights_request.get_status_display(),
        "received_at": _when(rights_request.received_at.astimezone(zone)),
        "due_at": _when(due),
        "zone": zone.key,
        "left": _duration(left),
        "over": _duration(-left),
        "to_assignee": to_assignee,
    }
    text = render_to_string(f"requests/email/reminder_{mark}.txt", context).lstrip("\n")
    subject, _, body = text.partition("\n")
    return " ".join(subject.split()), body.strip() + "\n"


def reminder_send(rights_request_id: int, *, now=None) -> str | None:
    """Send the reminder `rights_request_id` is due for, if any; the mark sent, or None. One transaction,
    the request row locked (see the module docstring)."""
    now = now or timezone.now()
    with transaction.atomic():
        rights_request = (
            RightsRequest.objects.select_for_update(of=("self",))
            .select_related("assignee", "jurisdiction")
            .filter(pk=rights_request_id, status__in=OPEN_STATUSES)
            .filter(_clock_running())
            .first()
        )
        if rights_request is None:
            return None
        new = marks_to_send(rights_request, now)
        if not new:
            return None
        mark = new[-1]
        addresses, recipient_ids = reminder_recipients(rights_request)
        to_assignee = bool(recipient_ids) and recipient_ids == [rights_request.assignee_id]
        subject, body = _render(rights_request, mark, now, to_assignee=to_assignee)
        rights_request.reminders_sent = [m for m in MARKS if m in {*(rights_request.reminders_sent or []), *new}]
        rights_request.save(update_fields=["reminders_sent", "updated_at"])
        details = {"mark": mark, "marks": new, "recipients": recipient_ids, "due_at": rights_request.effective_due_at.isoformat()}
        request_event_record(
            rights_request=rights_request,
            action=AUDIT_ACTION,
            kind=RequestEvent.Kind.REMINDER,
            at=now,
            message=f"Reminder sent: {subject}",
            details=details,
        )
        message = EmailMessage(subject=subject, body=body, to=addresses, headers={"Auto-Submitted": "auto-generated"})
        reference = rights_request.reference

        def send():
            message.send()
            logger.info("rights request %s: %s reminder sent to %d recipient(s)", reference, mark, len(addresses))

        transaction.on_commit(send, robust=True)
    return mark


def reminders_send(*, now=None) -> ReminderReport:
    """The hourly run: every open request whose clock runs and that passed a mark it was not reminded of.

    Reads the open requests' clocks in one query and locks only those that need a reminder, each in its
    own transaction (one failure does not hold back the others' reminders)."""
    now = now or timezone.now()
    report = ReminderReport()
    candidates = (
        RightsRequest.objects.filter(status__in=OPEN_STATUSES)
        .filter(_clock_running())
        .only("pk", "received_at", "due_at", "extended_due_at", "reminders_sent")
    )
    for rights_request in candidates.iterator(chunk_size=1000):
        report.checked += 1
        if not marks_to_send(rights_request, now):
            continue
        try:
            mark = reminder_send(rights_request.pk, now=now)
        except Exception:  # one request's bad row must not stop the others' reminders
            logger.exception("rights request %s: reminder failed", rights_request.pk)
            continue
        if mark:
            report.sent[mark] += 1
    return report
