"""The public policy pages (version in force, history, one version) and the update banner's acknowledge button."""

from __future__ import annotations

from django.http import Http404, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from .middleware import policy_pending_forget
from .models import PolicyVersion
from .selectors import policy_history, policy_version_in_force, policy_version_upcoming
from .services import policy_acknowledge


@require_GET
def policy_index(request):
    """PM-X-1: the version in force with its "last updated" date, the next one if published, and the history."""
    return render(
        request,
        "consents/policy_index.html",
        {"in_force": policy_version_in_force(), "upcoming": policy_version_upcoming(), "history": policy_history()},
    )


@require_GET
def policy_version(request, label: str):
    """One published version: dates, summary of changes and the full text (drafts are not public)."""
    version = get_object_or_404(PolicyVersion, label=label, published_at__isnull=False)
    in_force = policy_version_in_force()
    return render(
        request,
        "consents/policy_version.html",
        {"version": version, "is_in_force": in_force is not None and in_force.pk == version.pk, "in_force": in_force},
    )


@require_POST
def policy_acknowledge_view(request, pk: int):
    """PM-X-2: "I have read this" on the update banner. A normal CSRF-protected form: the subject is signed in."""
    user = request.user
    if not user.is_authenticated:
        return HttpResponseForbidden("Sign in to acknowledge the policy update.")
    if user.is_staff:
        raise Http404("Staff accounts do not acknowledge policy updates.")
    version = get_object_or_404(PolicyVersion, pk=pk, published_at__isnull=False)
    policy_acknowledge(user=user, version=version, user_agent=request.headers.get("User-Agent"))
    policy_pending_forget(request, version.pk)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        target = "/"
    return redirect(target)
