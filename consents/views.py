"""The public side until the portal issue: the privacy overview, My consents, receipts, sign-up and sign-in
(PM-0-1, PM-VIII-1, PM-IX-6, PM-XI-3). The cookie pages and the banner's endpoint are `consents.cookies.views`.

No view of a public page touches the session or renders a CSRF token, so an anonymous first visit gets
no cookie. Sign-in, sign-up and every signed-in form keep Django's CSRF protection.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView, LogoutView
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_GET, require_POST

from policies.selectors import policy_version_in_force

from . import cookies
from .forms import SignupForm
from .ledger import notice_current
from .models import ConsentEvent, ConsentPurpose, ConsentState, VisitorLink
from .receipts import receipt_for, receipts_for
from .services import account_signup

SIGNIN_URL = "web:signin"


# --- Public pages ---------------------------------------------------------------------------------


@require_GET
def overview(request):
    """The public privacy overview: the policy in force, who to contact, the cookie choices (PM-0-1, PM-XI-1)."""
    return render(request, "consents/overview.html", {"policy": policy_version_in_force(), "policy_url": settings.POLICY_URL})


# --- Signed-in pages ------------------------------------------------------------------------------


def _own_events(user):
    visitors = VisitorLink.objects.filter(subject_ref=user.subject_ref).values_list("visitor_id", flat=True)
    return ConsentEvent.objects.filter(Q(subject_ref=user.subject_ref) | Q(visitor_id__in=visitors)).select_related("purpose")


@login_required(login_url=SIGNIN_URL)
@require_GET
def my_consents(request):
    """Each purpose with its state and one button to change it (PM-IX-6); the consent events and receipts."""
    user = request.user
    language = cookies.consent_language(request)
    states = {s.purpose_id: s for s in ConsentState.objects.filter(subject_ref=user.subject_ref)}
    gpc = cookies.gpc_signal(request)
    rows = []
    for purpose in ConsentPurpose.objects.filter(is_active=True).order_by("position", "code"):
        state = states.get(purpose.pk)
        rows.append(
            {
                "purpose": purpose,
                "state": state,
                "current": True if purpose.is_necessary else cookies.state_current(state, purpose),
                "refused_by_gpc": gpc and cookies.gpc_refuses(purpose),
                "notice": notice_current(purpose=purpose, language=language),
            }
        )
    events = list(_own_events(user).order_by("-effective_at", "-id")[:200])
    return render(request, "consents/my_consents.html", {"rows": rows, "events": events})


@login_required(login_url=SIGNIN_URL)
@require_POST
def my_consent_change(request, code: str):
    """One click gives or withdraws (PM-IX-6); only where withdrawing ends a service is a confirmation with the
    consequences shown first (PM-XI-3)."""
    purpose = get_object_or_404(ConsentPurpose, code=code, is_active=True, is_necessary=False)
    action = request.POST.get("action")
    if action not in {"give", "withdraw"}:
        return HttpResponseBadRequest("Unknown action.", content_type="text/plain; charset=utf-8")
    want = action == "give"
    state = ConsentState.objects.filter(subject_ref=request.user.subject_ref, purpose=purpose).first()
    if (
        not want
        and purpose.ends_service
        and cookies.state_current(state, purpose) is True
        and request.POST.get("confirm") != "yes"
    ):
        return render(request, "consents/confirm_withdraw.html", {"purpose": purpose})
    try:
        cookies.consent_choices_record(
            request=request,
            choices={purpose.code: want},
            method=ConsentEvent.Method.PORTAL,
            language=cookies.consent_language(request),
        )
    except ValidationError as error:
        return render(request, "consents/change_failed.html", {"purpose": purpose, "errors": error.messages}, status=400)
    return redirect("web:my-consents")


def _receipt_response(payload: dict, filename: str) -> HttpResponse:
    response = HttpResponse(json.dumps(payload, indent=2, ensure_ascii=False), content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@login_required(login_url=SIGNIN_URL)
@require_GET
def receipt_download(request, receipt_id):
    """One consent receipt (Kantara CR v1.1) of the signed-in subject."""
    event = get_object_or_404(_own_events(request.user), receipt_id=receipt_id)
    return _receipt_response(receipt_for(event), f"consent-receipt-{event.receipt_id}.json")


@login_required(login_url=SIGNIN_URL)
@require_GET
def receipts_download(request):
    """Every consent receipt of the signed-in subject (with the browsers linked to the account), oldest first."""
    return _receipt_response({"receipts": receipts_for(subject_ref=request.user.subject_ref)}, "consent-receipts.json")


# --- Sign-up, sign-in ----------------------------------------------------------------------------


def signup(request):
    """PM-0-1, PM-II-2, PM-VIII-1: a plain sign-up that records what the policy needs."""
    if request.user.is_authenticated:
        return redirect("web:my-consents")
    language = cookies.consent_language(request)
    version = policy_version_in_force()
    form = SignupForm(request.POST or None, policy_version=version, language=language)
    if request.method == "POST" and form.is_valid():
        try:
            user = account_signup(
                **form.signup_arguments(), ip=request.META.get("REMOTE_ADDR"), user_agent=request.META.get("HTTP_USER_AGENT", "")
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            request.consents_signup = True  # the sign-in receiver links this browser with method "signup"
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("web:my-consents")
    return render(request, "consents/signup.html", {"form": form, "policy": version, "policy_url": settings.POLICY_URL})


class SigninView(LoginView):
    template_name = "consents/signin.html"
    redirect_authenticated_user = True
    next_page = reverse_lazy("web:my-consents")


class SignoutView(LogoutView):
    next_page = reverse_lazy("web:overview")
