"""The vocabulary of the audit trail: every action an event may carry, and how staff read it.

Each app names its own actions in `<app>/audit_actions.py` (discovered at start-up, as `privacy.py` and
`dashboard.py` are), so the core knows no app and `grep` finds every action in one module per app:

    HOLD_PLACED = action("retention.hold_placed", "Legal hold placed")

`action()` registers the code with its label and returns the code, so callers write
`audit_record(action=actions.HOLD_PLACED, ...)`. `audit_record` refuses an unregistered code while
AUDIT_ACTIONS_STRICT is on (the default under DEBUG and in the tests), so a typo or a new action without
its entry fails a test instead of scattering near-duplicate names through a trail that can never be
edited. In production an unknown code is logged as an error and still recorded: losing the evidence of
an action would be worse than an unlabelled one.
"""

from __future__ import annotations

import logging
import re

from django.conf import settings
from django.utils.module_loading import autodiscover_modules

logger = logging.getLogger(__name__)

_CODE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_LABELS: dict[str, str] = {}
_NAMESPACES: dict[str, str] = {}


class UnknownAuditAction(ValueError):
    pass


def action(code: str, label: str) -> str:
    """Register `code` ("area.what_happened") with the label staff read; returns the code."""
    if not _CODE.match(code):
        raise ValueError(f"Audit action {code!r} is not dotted lower_snake_case (e.g. 'retention.hold_placed').")
    if _LABELS.get(code, label) != label:
        raise ValueError(f"Audit action {code!r} is registered twice with different labels.")
    _LABELS[code] = label
    return code


def namespace(prefix: str, label: str) -> None:
    """Accept every code under `prefix.` (the test suite's and the benchmarks' made-up actions); never for
    the apps' own actions, which are listed one by one."""
    _NAMESPACES[prefix] = label


def audit_action_label(code: str) -> str:
    """The label staff read for `code`; an unregistered code (older events, a removed action) reads as is."""
    return _LABELS.get(code) or _NAMESPACES.get(code.split(".", 1)[0], code)


def audit_actions() -> dict[str, str]:
    """Every registered code and its label, sorted by code."""
    return dict(sorted(_LABELS.items()))


def audit_action_check(code: str) -> None:
    """Called by `audit_record` before it writes: see the module docstring for strict and lenient modes."""
    if code in _LABELS or code.split(".", 1)[0] in _NAMESPACES:
        return
    if getattr(settings, "AUDIT_ACTIONS_STRICT", settings.DEBUG):
        raise UnknownAuditAction(f"Audit action {code!r} is not in any app's audit_actions.py vocabulary.")
    logger.error("audit action %r is not in the vocabulary; recorded anyway", code)


def autodiscover() -> None:
    autodiscover_modules("audit_actions")


# --- The core's own actions -------------------------------------------------------------------------
AUDIT_HEAD_ANCHORED = action("audit.head_anchored", "Audit trail head recorded outside the database")
SCHEDULES_SYNCED = action("schedules.synced", "Job schedules synchronised")
# Staff opened a screen that shows one person's data; details.what names the screen (privacyops.audit).
PERSONAL_DATA_VIEWED = action("personal_data.viewed", "Staff viewed a person's data")
