"""The public side until the portal issue: the privacy overview, the cookie banner's endpoint and choice
page, My consents, receipts, sign-up and sign-in (PM-0-1, PM-III, PM-VIII-1, PM-IX-6, PM-XI-3).

No view of a public page touches the session or renders a CSRF token, so an anonymous first visit gets
no cookie. The banner's endpoint is the one view exempt from the CSRF token: it checks the request's
Origin / Sec-Fetch-Site instead (`cookies.same_origin_post`), because a token would need a cookie before
the visitor has chosen. Sign-in, sign-up and every signed-in form keep Django's CSRF protection.
"""

from __future__ import annotations

import datetime
import json
import uuid

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView, LogoutView
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import HttpResponse, HttpResponseBadRequest, HttpResponseForbidden, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from policies.selectors import policy_version_in_force
from retention.periods import add_period

from . import cookies
from .forms import SignupForm
from .ledger import notice_current
from .models import ConsentEvent, ConsentPurpose, ConsentState, CookieInventory, VisitorLink
from .receipts import receipt_for, receipts_for
from .services import account_signup

SIGNIN_URL = "web:signin"
# When this service's support for the GPC signal (and so /.well-known/gpc.json) last changed.
GPC_LAST_UPDATE = datetime.date(2026, 11, 26)
# A transparent 1×1 GIF.
BEACON_GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")
BEACON_COUNT_DAYS = 40


def _safe_next(request, default: str = "/") -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return default


def _with_language(url: str, language: str) -> str:
    if language == cookies.DEFAULT_LANGUAGE or "lang=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urlencode({'lang': language})}"


# --- Public pages ---------------------------------------------------------------------------------


@require_GET
def overview(request):
    """The public privacy overview: the policy in force, who to contact, the cookie choices (PM-0-1, PM-XI-1)."""
    return render(request, "consents/overview.html", {"policy": policy_version_in_force(), "policy_url": settings.POLICY_URL})


@require_GET
def cookie_settings(request):
    """Per category: what it does, what breaks without it, its cookies; the current choice (PM-III-6, PM-III-7)."""
    categories = []
    language = cookies.consent_language(request)
    for category, purpose in cookies.cookie_purposes(request).items():
        categories.append(
            {
                "purpose": purpose,
                "necessary": category == cookies.NECESSARY or purpose.is_necessary,
                "notice": notice_current(purpose=purpose, language=language),
                "choice": cookies.current_choice(request, category),
                "refused_by_gpc": cookies.gpc_signal(request) and cookies.gpc_refuses(purpose),
            }
        )
    inventory = CookieInventory.objects.filter(is_active=True).select_related("category")
    return render(
        request, "consents/cookies.html", {"categories": categories, "inventory": inventory, "next": _safe_next(request, "/")}
    )


@csrf_exempt  # the only exempt view: Origin / Sec-Fetch-Site stand in for the token cookie (module docstring)
@require_POST
def cookie_choice(request):
    """The banner's and the cookie page's buttons: record the choice and remember it in the choice cookie."""
    if not cookies.same_origin_post(request):
        return HttpResponseForbidden(
            "This choice was not sent from one of our pages, so it was not recorded. Open the page again and choose there.",
            content_type="text/plain; charset=utf-8",
        )
    purposes = cookies.optional_purposes(request)
    decision = request.POST.get("choice")
    if decision == "accept-all":
        choices = {p.code: True for p in purposes}
    elif decision == "refuse-all":
        choices = {p.code: False for p in purposes}
    elif decision == "save":
        ticked = set(request.POST.getlist("categories"))
        choices = {p.code: p.cookie_category in ticked for p in purposes}
    else:
        return HttpResponseBadRequest("Unknown choice.", content_type="text/plain; charset=utf-8")
    language = cookies.language_valid(request, request.POST.get("lang")) or cookies.consent_language(request)
    cookies.consent_choices_record(request=request, choices=choices, method=ConsentEvent.Method.BANNER, language=language)
    return HttpResponseRedirect(_with_language(_safe_next(request), language))


@require_GET
def gpc_json(request):
    """The GPC support declaration (https://privacycg.github.io/gpc-spec/, /.well-known/gpc.json)."""
    return JsonResponse({"gpc": True, "lastUpdate": GPC_LAST_UPDATE.isoformat()})


def _count(key: str) -> None:
    cache.add(key, 0, timeout=BEACON_COUNT_DAYS * 86400)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=BEACON_COUNT_DAYS * 86400)


def beacon_counts(day: datetime.date) -> dict[str, int]:
    """Page views, new and returning visitors counted by the beacon on one (UTC) day."""
    keys = {name: f"consents:beacon:{day.isoformat()}:{name}" for name in ("views", "new", "returning")}
    values = cache.get_many(list(keys.values()))
    return {name: int(values.get(key, 0)) for name, key in keys.items()}


@never_cache
@require_GET
def beacon(request):
    """PM-III-5: the web beacon. Counts a page view only when analytics is allowed; else it is just a GIF."""
    response = HttpResponse(BEACON_GIF, content_type="image/gif")
    if not cookies.cookies_allowed(request, cookies.ANALYTICS):
        return response
    day = timezone.now().date().isoformat()
    _count(f"consents:beacon:{day}:views")
    if request.COOKIES.get(cookies.ANALYTICS_COOKIE):
        _count(f"consents:beacon:{day}:returning")
    else:
        _count(f"consents:beacon:{day}:new")
        now = timezone.now()
        expires = add_period(now, cookies.ANALYTICS_COOKIE_LIFETIME)
        response.set_cookie(
            cookies.ANALYTICS_COOKIE,
            uuid.uuid4().hex,
            max_age=int((expires - now).total_seconds()),
            secure=request.is_secure() or settings.SESSION_COOKIE_SECURE,
            httponly=True,
            samesite="Lax",
        )
    return response


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
