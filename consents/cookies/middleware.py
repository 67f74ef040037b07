"""Cookie-consent enforcement on every response (PM-III-1, PM-III-6).

Invariants:
- Fail closed: every Set-Cookie leaving the service is looked up in the cookie inventory by name; a cookie
  the inventory does not list is removed (and logged), and one whose category `cookies_allowed` refuses
  is removed. The one exception is the three cookies sign-in and the banner are built on (session, CSRF,
  choice): they are strictly necessary whatever the inventory says, so a missing row is logged as an
  error instead of locking everyone out. Deleting a cookie (max-age 0) always passes: removing something
  from a device needs no consent.
- A cookie of a category that is no longer allowed (withdrawn, expired, refused by a GPC signal) that the
  browser still sends is deleted on the way out.
- The sign-in session is strictly necessary only for the visit: remembering it across browser restarts is
  the "login details" functionality of PM-III-3. Without functionality consent the session cookie is sent
  without Expires/Max-Age, so it ends when the browser closes.
- The middleware must sit outside SessionMiddleware, CsrfViewMiddleware and MessageMiddleware (first in
  MIDDLEWARE) to see the cookies they add on the way out; the check below reports any other place. It
  reads `request.user` only in `process_view` and on the response, when authentication has run.
- A first anonymous GET sets nothing: no view of a public page writes the session, and the choice cookie
  is only written after a choice.
- A response whose content or cookies depended on the Sec-GPC header (the banner, the GPC notice, a cookie
  kept or removed, a refusal recorded for a known browser or account) carries `Vary: Sec-GPC`
  (`cookies.gpc_signal` marks the request when asked; responses that never asked, like the API's, do not).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core import checks
from django.utils.cache import patch_vary_headers

from consents import cookies
from consents.models import CookieInventory

logger = logging.getLogger("consents.cookies")

MIDDLEWARE_PATH = "consents.cookies.middleware.CookieConsentMiddleware"
# Middleware that sets cookies on the way out; ours must wrap them.
COOKIE_SETTERS = (
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
)


def _is_deletion(morsel) -> bool:
    return str(morsel["max-age"]) == "0" or "1970" in str(morsel["expires"])


def _inventory(request) -> dict[str, CookieInventory]:
    """Active inventory rows by cookie name (first-party rows first: the only ones our responses set)."""

    def compute():
        rows: dict[str, CookieInventory] = {}
        for row in CookieInventory.objects.filter(is_active=True).select_related("category").order_by("party", "pk"):
            rows.setdefault(row.name, row)
        return rows

    return cookies._memo(request, "inventory", compute)


def _framework_cookies() -> set[str]:
    """The cookies sign-in and the banner cannot work without. Necessary by construction: if the inventory
    lacks their rows (before `loadpolicy`), they are kept and an error is logged, so a missing seed never
    locks everyone, the DPO included, out of the workbench. Any other unlisted cookie is removed."""
    return {settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME, settings.CONSENT_COOKIE_NAME}


def _category(row: CookieInventory) -> str:
    purpose = row.category
    return cookies.NECESSARY if purpose.is_necessary else purpose.cookie_category or ""


class CookieConsentMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        self.process_response(request, response)
        if getattr(request, cookies.GPC_READ, False):  # last: the cookie filter above may have asked too
            patch_vary_headers(response, ("Sec-GPC",))
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        # Here, unlike in __call__, authentication has run: a GPC signal is honoured for the account too.
        cookies.gpc_apply(request)
        return None

    def process_response(self, request, response):
        if getattr(request, "consent_choice_forget", False):
            # Signed out: nothing of the last account's choices may stay to act for the next person.
            for name in (settings.CONSENT_COOKIE_NAME, cookies.LANGUAGE_COOKIE, cookies.ANALYTICS_COOKIE):
                if name in request.COOKIES:
                    response.delete_cookie(name, samesite="Lax")
            return response
        pending = getattr(request, "consent_choice_pending", None)
        if pending is not None:
            cookies.choice_cookie_set(response, request, pending)
        self._remember_language(request, response)
        if response.cookies or any(name in request.COOKIES for name in (cookies.LANGUAGE_COOKIE, cookies.ANALYTICS_COOKIE)):
            self._delete_withdrawn(request, response)
            self._filter(request, response)
        return response

    def _remember_language(self, request, response) -> None:
        picked = cookies.language_valid(request, request.GET.get("lang")) if request.GET.get("lang") else None
        changed = picked and request.COOKIES.get(cookies.LANGUAGE_COOKIE) != picked
        if changed and cookies.cookies_allowed(request, cookies.FUNCTIONALITY):
            response.set_cookie(
                cookies.LANGUAGE_COOKIE,
                picked,
                max_age=int(cookies.LANGUAGE_COOKIE_AGE.total_seconds()),
                secure=request.is_secure() or settings.SESSION_COOKIE_SECURE,
                httponly=True,
                samesite="Lax",
            )

    def _delete_withdrawn(self, request, response) -> None:
        inventory = _inventory(request)
        for name in request.COOKIES:
            row = inventory.get(name)
            if row is None or name in response.cookies:
                continue
            category = _category(row)
            if category != cookies.NECESSARY and not cookies.cookies_allowed(request, category):
                response.delete_cookie(name, samesite="Lax")

    def _filter(self, request, response) -> None:
        inventory = _inventory(request)
        for name, morsel in list(response.cookies.items()):
            if _is_deletion(morsel):
                continue
            row = inventory.get(name)
            if row is not None:
                category = _category(row)
            elif name in _framework_cookies():
                logger.error("Cookie %r is missing from the cookie inventory; kept as strictly necessary: add its row.", name)
                category = cookies.NECESSARY
            else:
                logger.warning(
                    "Removed cookie %r from the response to %s: it is not in the cookie inventory.", name, request.path
                )
                del response.cookies[name]
                continue
            if not cookies.cookies_allowed(request, category):
                logger.info("Removed cookie %r (%s) from the response to %s: not consented.", name, category, request.path)
                del response.cookies[name]
                continue
            if name == settings.SESSION_COOKIE_NAME and not cookies.cookies_allowed(request, cookies.FUNCTIONALITY):
                morsel["expires"] = ""
                morsel["max-age"] = ""


@checks.register(checks.Tags.security)
def middleware_order_check(app_configs=None, **kwargs):
    """consents.E001: the cookie middleware must wrap every middleware that sets cookies."""
    stack = list(settings.MIDDLEWARE)
    if MIDDLEWARE_PATH not in stack:
        return [checks.Error(f"{MIDDLEWARE_PATH} is not in MIDDLEWARE: nothing enforces cookie consent.", id="consents.E001")]
    position = stack.index(MIDDLEWARE_PATH)
    inside = [name for name in COOKIE_SETTERS if name in stack and stack.index(name) < position]
    if inside:
        return [
            checks.Error(
                f"{MIDDLEWARE_PATH} comes after {', '.join(inside)}: it cannot see or remove the cookies they set.",
                hint="Put it first in MIDDLEWARE.",
                id="consents.E001",
            )
        ]
    return []
