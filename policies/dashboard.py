"""The policy part of the consents tile on the staff dashboard: the version in force, the next one, and how
far the newest one's notices have gone (PM-X-1, PM-X-2).

It is a part, not a tile of its own: the consents tile shows it to staff who may view policy versions, as
it did before policy versions left the consents app. A fixed number of queries; the accounts still to be
notified are counted up to NOTICE_CAP.
"""

from __future__ import annotations

import datetime

from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from privacyops.dashboard import Flag

from .models import PolicyNoticeDelivery
from .notices import policy_notices_unconfirmed
from .selectors import policy_notice_recipients, policy_version_in_force, policy_version_previous, policy_version_upcoming

NOTICE_CAP = 10_000  # accounts still to notify are counted up to this many


def policy_status(*, now: datetime.datetime) -> tuple[list[str], list[Flag], str]:
    """PM-X-1, PM-X-2: words on the version in force and the next one, flags on how far the newest one's
    notices have gone (each a link to the deliveries in that state), and the severity they call for.

    The first published version replaces nothing and sends no notice; later ones notify every account holder.
    Account holders still to notify are not rows of any list yet, so they are told in words (up to NOTICE_CAP).
    """
    in_force = policy_version_in_force(at=now)
    upcoming = policy_version_upcoming(at=now)
    words, flags, severity = [], [], "ok"
    if in_force is None:
        words.append("no published privacy policy version is in force")
        severity = "red"
    else:
        words.append(f"policy {in_force.label} in force")
    if upcoming is not None:
        words.append(f"{upcoming.label} takes effect {timezone.localtime(upcoming.effective_at):%Y-%m-%d}")
    newest = upcoming or in_force
    if newest is None or policy_version_previous(newest) is None:
        return words, flags, severity
    Status = PolicyNoticeDelivery.Status
    deliveries = reverse("admin:policies_policynoticedelivery_changelist")
    by_status = dict(PolicyNoticeDelivery.objects.filter(version=newest).order_by().values_list("status").annotate(n=Count("pk")))
    looks = {Status.SENT: "ok", Status.IN_SERVICE: "ok", Status.FAILED: "amber"}
    for status, label in Status.choices:
        if by_status.get(status):
            url = f"{deliveries}?version__id__exact={newest.pk}&state={status}"
            flags.append(Flag(f"{newest.label} notices: {label.lower()}", by_status[status], url, looks.get(status, "info")))
    unconfirmed = policy_notices_unconfirmed(version=newest, now=now).count()
    if unconfirmed:
        url = f"{deliveries}?version__id__exact={newest.pk}&state=unconfirmed"
        flags.append(Flag(f"{newest.label} notices never confirmed sent (check the mail log)", unconfirmed, url, "red"))
    remaining = policy_notice_recipients(version=newest).order_by()[:NOTICE_CAP].count()
    if remaining:
        more = "+" if remaining >= NOTICE_CAP else ""
        words.append(f"{remaining}{more} account holders still to notify of {newest.label}")
        if newest == in_force:  # already in force while account holders are still to be told
            severity = "amber"
    return words, flags, severity
