"""Acceptance by continued use (PM-X-3) and the policy-update banner (PM-X-2) for signed-in subjects.

Cost per request, which matters because both run on every page:
- Anonymous requests: neither touches the session, the database or a cookie (a first visit must answer
  without Set-Cookie, PM-III-6). Staff are not subjects: they are left alone too.
- Which versions are in force and upcoming comes from `policy_current()` (cached; no query while fresh).
- The middleware remembers in the session which version it has recorded for this subject
  (`SESSION_ACCEPTED`): once recorded, it makes no query of its own for the rest of the session; a new
  version taking effect makes it look once more.
- The banner remembers in the session, per version, whether the subject still has to acknowledge it
  (`SESSION_PENDING`); it queries once per session and version, and the acknowledge view updates it.
"""

from __future__ import annotations

from django.urls import reverse

from .models import PolicyAcceptance, PolicyVersion
from .selectors import policy_cache_clear, policy_current, policy_pending_for
from .services import policy_accept

SESSION_ACCEPTED = "policy_accepted_version"
SESSION_PENDING = "policy_pending"


def _subject(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or user.is_staff:
        return None
    return user


class PolicyAcceptanceMiddleware:
    """PM-X-3, PM-0-1: a subject who uses the service after a version took effect has accepted it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = _subject(request)
        if user is not None:
            self._record(request, user)
        return self.get_response(request)

    def _record(self, request, user) -> None:
        in_force = policy_current().in_force
        if in_force is None or request.session.get(SESSION_ACCEPTED) == in_force.id:
            return
        version = PolicyVersion.objects.filter(pk=in_force.id, published_at__isnull=False).first()
        if version is None:  # the cached view outlived its row (a test database rolled back): look again next time
            policy_cache_clear()
            return
        policy_accept(
            subject=user,
            version=version,
            method=PolicyAcceptance.Method.CONTINUED_USE,
            client="web",
            user_agent=request.headers.get("User-Agent"),
        )
        request.session[SESSION_ACCEPTED] = in_force.id


def policy_notice(request) -> dict:
    """Context for `consents/_policy_banner.html`: the version a signed-in subject should acknowledge, if any.

    Candidates are the version in force (when it replaced an earlier one) and every upcoming version, in
    the order they take effect; the first one the subject has neither acknowledged nor knowingly accepted
    (sign-up, banner) is shown until they press "I have read this"."""
    user = _subject(request)
    if user is None:
        return {}
    current = policy_current()
    candidates = list(current.upcoming)
    if current.in_force is not None and current.in_force.is_change:
        candidates.insert(0, current.in_force)
    if not candidates:
        return {}
    known: dict = dict(request.session.get(SESSION_PENDING) or {})
    unknown = [c for c in candidates if str(c.id) not in known]
    if unknown:
        pending = set(policy_pending_for(user=user, candidates=unknown))
        known.update({str(c.id): c.id in pending for c in unknown})
        request.session[SESSION_PENDING] = known
    for candidate in candidates:
        if known.get(str(candidate.id)):
            return {
                "policy_update": {
                    "version": candidate,
                    "in_force": current.in_force is not None and candidate.id == current.in_force.id,
                    "acknowledge_url": reverse("policy:acknowledge", args=[candidate.id]),
                    "read_url": reverse("policy:version", args=[candidate.label]),
                }
            }
    return {}


def policy_pending_forget(request, version_id: int) -> None:
    """The subject acknowledged `version_id`: the banner stops showing it in this session at once."""
    known = dict(request.session.get(SESSION_PENDING) or {})
    known[str(version_id)] = False
    request.session[SESSION_PENDING] = known
