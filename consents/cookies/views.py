"""The cookie pages: the choice page, the banner's endpoint, the GPC declaration and the beacon (PM-III, PM-IV-3).

No view here touches the session or renders a CSRF token, so an anonymous first visit gets no cookie. The
banner's endpoint is the one view exempt from the CSRF token: it checks the request's Origin /
Sec-Fetch-Site instead (`cookies.same_origin_post`), because a token would need a cookie before the
visitor has chosen.
"""

from __future__ import annotations

import datetime
import uuid

from django.conf import settings
from django.core.cache import cache
from django.http import HttpResponse, HttpResponseBadRequest, HttpResponseForbidden, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from consents import cookies
from consents.ledger import notice_current
from consents.models import ConsentEvent, CookieInventory
from retention.periods import add_period

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
