"""The two records of what happened to a rights request, written together by one function.

- The timeline (`RequestEvent`): what staff read on the request's page, and the requester the kinds meant
  for them (`views.SUBJECT_EVENT_KINDS`). Its message may quote what staff typed (a note, an extension's
  reason) because it lives and dies with the request.
- The audit trail (`privacyops.audit`, hash-chained, outliving the request): the action (a code of
  `requests/audit_actions.py`), aimed at the request, naming the subject only by `subject_ref`, its
  details the request's reference, the timeline event's id and other ids, codes and statuses, never
  names, addresses or free text.

Every change a service makes writes both, inside the service's transaction, through `request_event_record`,
so a change is never on one record and missing from the other. A few entries are one of the two only, each
for a stated reason at its caller: staff viewing a subject's data or a verification link being sent is
audited but not on the timeline (`kind=None`), a note that only points at another request is not audited.
"""

from __future__ import annotations

from privacyops.audit import audit_record

from .models import RequestEvent, RightsRequest


def request_event_record(
    *,
    rights_request: RightsRequest,
    action: str,
    actor=None,
    kind: str | None = RequestEvent.Kind.NOTE,
    message: str = "",
    from_status: str = "",
    to_status: str = "",
    details: dict | None = None,
    audit_details: dict | None = None,
    audited: bool = True,
    at=None,
) -> RequestEvent | None:
    """Write the request's timeline event (unless `kind` is None) and its audit event (unless not `audited`).

    `details` go on the timeline (a note's carry the action's last part as well: notes of every kind share
    the one event kind). The audit event takes `audit_details` when given, else the statuses moved between
    and `details`; it always names the request's reference and the timeline event it goes with. Returns
    the timeline event, or None without one."""
    details = dict(details or {})
    event = None
    if kind is not None:
        note = kind == RequestEvent.Kind.NOTE
        event_details = {"action": action.rsplit(".", 1)[-1], **details} if note else details
        values = {"at": at} if at is not None else {}
        event = RequestEvent.objects.create(
            request=rights_request,
            kind=kind,
            actor=actor,
            from_status=from_status,
            to_status=to_status,
            message=message,
            details=event_details,
            **values,
        )
    if audited:
        if audit_details is None:
            statuses = {"from_status": from_status} if from_status else {}
            statuses |= {"to_status": to_status} if to_status else {}
            audit_details = {**statuses, **details}
        linked = {"event": event.pk} if event is not None else {}
        audit_record(
            actor=actor,
            action=action,
            target=rights_request,
            subject=rights_request.subject_ref,
            details={"reference": rights_request.reference, **linked, **audit_details},
        )
    return event
