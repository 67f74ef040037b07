"""Cookies: the one server-side answer to "may this browser get a non-essential cookie?" (PM-III).

Design and invariants:
- `cookies_allowed(request, category)` is the only check. The middleware, the template tags, the beacon
  and every view that sets a cookie ask it; nothing else decides. Unknown categories, categories with no
  consent purpose and unreadable lifetimes all answer "no" (fail closed).
- Who decides: a signed-in account's own state (`ConsentState`, which includes the banner choices of
  every browser linked to it) wins on any device; otherwise the signed choice cookie of this browser.
- The choice cookie (settings.CONSENT_COOKIE_NAME, strictly necessary, PM-III-2) holds a random visitor
  id and, per category, the choice and when it was made, signed with `django.core.signing` so a browser
  cannot forge a consent. It is written only after a choice has been recorded in the ledger: the ledger
  is the proof, the cookie a copy for the hot path (no database read for an anonymous page view).
  Nothing is written on a first visit.
- A consent lasts its purpose's lifetime (e.g. P13M) from when it was given (`lapse.consent_lapsed`,
  the same rule as the daily expiry job); after that there is no current choice and the banner asks
  again. A refusal stands until the person changes it or the choice cookie itself expires.
- Global Privacy Control (11 CCR §7025): `Sec-GPC: 1` refuses analytics and every purpose flagged as
  sale or sharing for that request, whatever was chosen before. For a known principal (a browser with a
  choice cookie, or an account) the refusal is written to the ledger once, when it changes the state, so
  a later request without the signal is not an opt-in. For an unknown visitor nothing is stored.
"""

from __future__ import annotations

import datetime
import logging
import re
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.conf.locale import LANG_INFO
from django.core import signing
from django.db import transaction
from django.utils import timezone

from consents.lapse import consent_lapsed
from consents.ledger import notice_current, visitor_link
from consents.models import ConsentEvent, ConsentNotice, ConsentPurpose, ConsentState, CookieCategory, VisitorLink
from consents.services import consent_set

logger = logging.getLogger("consents.cookies")

NECESSARY = CookieCategory.NECESSARY.value
FUNCTIONALITY = CookieCategory.FUNCTIONALITY.value
ANALYTICS = CookieCategory.ANALYTICS.value

# The cookies the service itself sets besides Django's session and CSRF cookies. Each has a row in the
# cookie inventory (the policy seed); the middleware removes any cookie that has none.
LANGUAGE_COOKIE = "privacyops_lang"  # functionality: the language picked for the notices
LANGUAGE_COOKIE_AGE = datetime.timedelta(days=365)
ANALYTICS_COOKIE = "privacyops_analytics"  # analytics: a random id that tells returning visitors apart
ANALYTICS_COOKIE_LIFETIME = "P13M"

CHOICE_SALT = "consents.cookie-choice"
DEFAULT_LANGUAGE = "en"
_LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})?$")

Action = ConsentEvent.Action
Method = ConsentEvent.Method


# --- The choice cookie ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """What the choice cookie says: the browser's visitor id and, per cookie category, (allowed, made at)."""

    visitor_id: uuid.UUID
    categories: dict[str, tuple[bool, datetime.datetime]] = field(default_factory=dict)

    def encode(self) -> str:
        payload = {
            "v": self.visitor_id.hex,
            "c": {category: [int(allowed), int(made_at.timestamp())] for category, (allowed, made_at) in self.categories.items()},
        }
        return signing.dumps(payload, salt=CHOICE_SALT, compress=True)

    @classmethod
    def decode(cls, value: str) -> Choice | None:
        """The choice in a cookie value, or None when it is not ours, was tampered with or is too old."""
        try:
            payload = signing.loads(value, salt=CHOICE_SALT, max_age=settings.CONSENT_COOKIE_AGE)
            visitor_id = uuid.UUID(hex=payload["v"])
            categories = {}
            for category, (allowed, made_at) in payload["c"].items():
                if category in CookieCategory.values and category != NECESSARY:
                    categories[category] = (bool(allowed), datetime.datetime.fromtimestamp(int(made_at), tz=datetime.UTC))
        except (signing.BadSignature, KeyError, TypeError, ValueError, AttributeError):
            return None
        return cls(visitor_id=visitor_id, categories=categories)

    def with_choices(self, changes: dict[str, tuple[bool, datetime.datetime]]) -> Choice:
        return Choice(visitor_id=self.visitor_id, categories={**self.categories, **changes})


def _memo(request, key: str, compute):
    memo = request.__dict__.setdefault("_consents_memo", {})
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def _forget(request, *keys: str) -> None:
    memo = request.__dict__.get("_consents_memo", {})
    for key in keys or list(memo):
        memo.pop(key, None)


def choice_from_request(request) -> Choice | None:
    """The browser's current choice cookie (or the one this response is about to write), if any."""
    pending = getattr(request, "consent_choice_pending", None)
    if pending is not None:
        return pending
    return _memo(request, "choice", lambda: Choice.decode(request.COOKIES.get(settings.CONSENT_COOKIE_NAME, "")))


def choice_remember(request, choice: Choice) -> None:
    """Make `choice` this request's choice; the middleware writes it to the cookie on the response."""
    request.consent_choice_pending = choice
    _forget(request)


def choice_forget(request) -> None:
    """Make this browser anonymous again: the middleware deletes the choice cookie and the cookies it allowed."""
    request.consent_choice_forget = True
    request.consent_choice_pending = None
    _forget(request)


def choice_cookie_set(response, request, choice: Choice) -> None:
    """Write the (strictly necessary) choice cookie. Only after a choice has been recorded in the ledger."""
    response.set_cookie(
        settings.CONSENT_COOKIE_NAME,
        choice.encode(),
        max_age=int(settings.CONSENT_COOKIE_AGE.total_seconds()),
        secure=request.is_secure() or settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )


# --- Reading the current choice -------------------------------------------------------------------


def cookie_purposes(request=None) -> dict[str, ConsentPurpose]:
    """Cookie category -> its consent purpose (active ones; the first by position if the DPO made two)."""

    def compute():
        purposes: dict[str, ConsentPurpose] = {}
        for purpose in ConsentPurpose.objects.filter(is_active=True).exclude(cookie_category="").order_by("position", "code"):
            purposes.setdefault(purpose.cookie_category, purpose)
        return purposes

    return _memo(request, "purposes", compute) if request is not None else compute()


def optional_purposes(request) -> list[ConsentPurpose]:
    """The cookie categories a visitor chooses (all but the strictly necessary), in display order."""
    return [p for c, p in cookie_purposes(request).items() if c != NECESSARY and not p.is_necessary]


def _signed_in(request):
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


def account_states(request) -> dict[int, ConsentState]:
    """purpose id -> the signed-in account's state (its own events and its linked browsers')."""
    user = _signed_in(request)
    if user is None:
        return {}
    return _memo(
        request, f"states:{user.pk}", lambda: {s.purpose_id: s for s in ConsentState.objects.filter(subject_ref=user.subject_ref)}
    )


def _current(action: str | None, made_at: datetime.datetime | None, purpose: ConsentPurpose, now=None) -> bool | None:
    """True: given and within its lifetime; False: refused or withdrawn; None: no current choice (ask)."""
    if action == Action.GIVEN:
        return None if consent_lapsed(given_at=made_at, lifetime=purpose.lifetime, at=now or timezone.now()) else True
    if action in (Action.REFUSED, Action.WITHDRAWN):
        return False
    return None  # never chosen, or expired


def state_current(state: ConsentState | None, purpose: ConsentPurpose, now=None) -> bool | None:
    """The current choice a ConsentState row holds (see `_current`)."""
    return None if state is None else _current(state.action, state.effective_at, purpose, now)


def current_choice(request, category: str) -> bool | None:
    """This request's current choice for a cookie category: True, False, or None when there is none."""
    purpose = cookie_purposes(request).get(category)
    if purpose is None:
        return None
    if _signed_in(request) is not None:
        return state_current(account_states(request).get(purpose.pk), purpose)
    choice = choice_from_request(request)
    if choice is None or category not in choice.categories:
        return None
    allowed, made_at = choice.categories[category]
    return _current(Action.GIVEN if allowed else Action.REFUSED, made_at, purpose)


# Set on a request whose answer depended on the Sec-GPC header (either way): the middleware then sends
# `Vary: Sec-GPC`, so no cache serves a response made without the signal to a request that carries it.
GPC_READ = "consents_gpc_read"


def gpc_signal(request) -> bool:
    """The request carries a Global Privacy Control signal (`Sec-GPC: 1`). Asking marks the response as
    varying with the header (`GPC_READ`): whoever asks is about to answer differently with and without it."""
    setattr(request, GPC_READ, True)
    return request.headers.get("Sec-GPC", "").strip() == "1"


def gpc_refuses(purpose: ConsentPurpose) -> bool:
    """A GPC signal refuses analytics (sharing with analytics providers, PM-IV-3) and any sale or sharing."""
    return purpose.cookie_category == ANALYTICS or purpose.is_sale_or_sharing


def cookies_allowed(request, category: str) -> bool:
    """PM-III-6: may this response set cookies, or emit beacons, of `category`?

    Necessary: always. Functionality and analytics: only with a current choice to allow them -- the
    signed-in account's, else this browser's -- and, for analytics or any sale-or-sharing purpose, never
    while the request carries a GPC signal.
    """
    if category == NECESSARY:
        return True
    purpose = cookie_purposes(request).get(category)
    if purpose is None:
        return False
    if purpose.is_necessary:
        return True
    if gpc_signal(request) and gpc_refuses(purpose):
        return False
    return current_choice(request, category) is True


def banner_needed(request) -> bool:
    """The banner shows until every optional category has a current choice (the GPC signal answers the ones it
    refuses)."""
    gpc = gpc_signal(request)
    return any(
        current_choice(request, p.cookie_category) is None for p in optional_purposes(request) if not (gpc and gpc_refuses(p))
    )


# --- Languages of the notices ---------------------------------------------------------------------


def notice_languages(request=None) -> list[tuple[str, str]]:
    """(code, name in that language) for every language the consent notices exist in; English first."""

    def compute():
        codes = set(ConsentNotice.objects.values_list("language", flat=True).distinct()) | {DEFAULT_LANGUAGE}
        ordered = [DEFAULT_LANGUAGE, *sorted(codes - {DEFAULT_LANGUAGE})]
        return [(code, LANG_INFO.get(code, {}).get("name_local", code)) for code in ordered if _LANGUAGE_CODE.match(code)]

    return _memo(request, "languages", compute) if request is not None else compute()


def language_valid(request, code: str | None) -> str | None:
    code = (code or "").strip().lower()
    return code if code in dict(notice_languages(request)) else None


def consent_language(request) -> str:
    """The language of the notices for this request: `?lang=`, else the remembered one (only read when
    functionality cookies are allowed: reading a device is covered too), else English."""
    picked = language_valid(request, request.GET.get("lang")) if request.GET.get("lang") else None
    if picked:
        return picked
    if LANGUAGE_COOKIE in request.COOKIES and cookies_allowed(request, FUNCTIONALITY):
        return language_valid(request, request.COOKIES[LANGUAGE_COOKIE]) or DEFAULT_LANGUAGE
    return DEFAULT_LANGUAGE


# --- Recording choices ----------------------------------------------------------------------------


def _client(request) -> dict:
    return {"ip": request.META.get("REMOTE_ADDR"), "user_agent": request.META.get("HTTP_USER_AGENT", "")}


def _principal(user, visitor_id) -> dict:
    return {"subject": user} if user is not None else {"visitor_id": visitor_id}


def _states(user, visitor_id, purposes) -> dict[int, ConsentState]:
    lookup = {"subject_ref": user.subject_ref} if user is not None else {"visitor_id": visitor_id}
    return {s.purpose_id: s for s in ConsentState.objects.filter(purpose__in=list(purposes), **lookup)}


def consent_choices_record(*, request, choices: dict[str, bool], method: str, language: str = DEFAULT_LANGUAGE) -> Choice | None:
    """Record a person's choices (purpose code -> allow?) from the banner, the cookie page or My consents.

    PM-0-2, PM-III-6, PM-IX-6: through `services.consent_set` (one event per purpose whose state changes,
    one transaction), for the signed-in account or else this browser's visitor (a new random visitor id on
    a first choice). Each event points at the notice text shown, in the language it was shown in. Under a
    GPC signal, a yes to a purpose the signal refuses is recorded as a refusal with method GPC.

    Returns the browser's new choice cookie content and makes it the request's choice (the middleware writes
    it); when no cookie category was chosen, the browser's cookie as it was (None if it has none).
    """
    gpc = gpc_signal(request)
    user = _signed_in(request)
    purposes = {p.code: p for p in ConsentPurpose.objects.filter(code__in=list(choices), is_active=True, is_necessary=False)}
    existing = choice_from_request(request)
    visitor_id = None if user is not None else (existing.visitor_id if existing is not None else uuid.uuid4())
    # Group the answers by how they are recorded: the method, and the language of the notice text shown.
    groups: dict[tuple[str, str], dict[str, bool]] = {}
    notices = {}
    for code, purpose in purposes.items():
        want, purpose_method = bool(choices[code]), method
        if want and gpc and gpc_refuses(purpose):
            want, purpose_method = False, Method.GPC
        shown_in = DEFAULT_LANGUAGE
        if purpose_method != Method.GPC:
            notice = notice_current(purpose=purpose, language=language)
            if notice is not None:
                notices[code], shown_in = notice, notice.language
        groups.setdefault((purpose_method, shown_in), {})[code] = want
    with transaction.atomic():
        for (group_method, shown_in), group in groups.items():
            consent_set(
                choices=group,
                method=group_method,
                **_principal(user, visitor_id),
                notices={code: notices[code] for code in group if code in notices},
                language=shown_in,
                gpc=gpc,
                **_client(request),
            )
        cookie_purposes_chosen = [p for p in purposes.values() if p.cookie_category]
        states = _states(user, visitor_id, cookie_purposes_chosen)
        cookie_changes = {
            p.cookie_category: (states[p.pk].action == Action.GIVEN, states[p.pk].effective_at)
            for p in cookie_purposes_chosen
            if p.pk in states
        }
        _forget(request)
        if not cookie_changes:
            return existing
        if user is not None:
            choice = _browser_choice_for_account(user=user, existing=existing).with_choices(cookie_changes)
        else:
            choice = (existing or Choice(visitor_id=visitor_id)).with_choices(cookie_changes)
    choice_remember(request, choice)
    return choice


def _browser_choice_for_account(*, user, existing: Choice | None) -> Choice:
    """The browser's choice cookie for a signed-in account: its visitor id if joined to this account, else a
    fresh one joined now (a browser once used by someone else never carries their id into this account)."""
    if existing is not None:
        linked = VisitorLink.objects.filter(visitor_id=existing.visitor_id).values_list("subject_ref", flat=True).first()
        if linked == user.subject_ref:
            return existing
        if linked is None and visitor_link(visitor_id=existing.visitor_id, subject=user, method=VisitorLink.Method.SIGNIN):
            return existing
    fresh = Choice(visitor_id=uuid.uuid4())
    visitor_link(visitor_id=fresh.visitor_id, subject=user, method=VisitorLink.Method.SIGNIN)
    return fresh


def gpc_apply(request) -> Choice | None:
    """Honour a GPC signal for a known principal (PM-IV-3; 11 CCR §7025(c)): a refusal or withdrawal, method
    GPC, for each purpose the signal refuses whose state it changes. Nothing is stored for an unknown visitor.

    Returns the browser's updated choice cookie when it said anything but "refused" for a refused category
    (so a later request without the signal is not an opt-in), else None.
    """
    user = _signed_in(request)
    choice = choice_from_request(request)
    if user is None and choice is None:
        return None  # nothing to honour, and this answer does not depend on the header
    if not gpc_signal(request):
        return None
    visitor_id = None if user is not None else choice.visitor_id
    if user is not None:
        purposes = [p for p in ConsentPurpose.objects.filter(is_active=True, is_necessary=False) if gpc_refuses(p)]
        states = account_states(request)
    else:
        purposes = [p for p in optional_purposes(request) if gpc_refuses(p)]
        states = _states(None, visitor_id, purposes)
    now = timezone.now()
    # Read without a lock first: on most requests the refusal is already recorded and nothing is locked.
    open_purposes = [p for p in purposes if state_current(states.get(p.pk), p, now) is not False]
    if open_purposes:
        consent_set(
            choices={p.code: False for p in open_purposes},
            method=Method.GPC,
            **_principal(user, visitor_id),
            gpc=True,
            **_client(request),
        )
        _forget(request)
    if choice is None:
        return None
    changes: dict[str, tuple[bool, datetime.datetime]] = {}
    for purpose in purposes:
        said = choice.categories.get(purpose.cookie_category) if purpose.cookie_category else None
        # A visitor's cookie copies their ledger, which now says "refused"; an account's browser only drops a yes.
        if (said is None and user is None and purpose.cookie_category) or (said is not None and said[0]):
            changes[purpose.cookie_category] = (False, now)
    if not changes:
        return None
    updated = choice.with_choices(changes)
    choice_remember(request, updated)
    return updated


# --- The banner endpoint's cross-site check -------------------------------------------------------


def _origin_trusted(request, origin: str) -> bool:
    if origin == "null":
        return False
    if origin == f"{request.scheme}://{request.get_host()}":
        return True
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        if origin == trusted:
            return True
        scheme, _, host = trusted.partition("://")
        if host.startswith("*.") and origin.startswith(f"{scheme}://") and origin.endswith(host[1:]):
            return True
    return False


def same_origin_post(request) -> bool:
    """The banner's POST came from one of our own pages (instead of a CSRF token, which needs a cookie).

    Every `Origin` and `Sec-Fetch-Site` header sent must vouch for it: Origin equal to this site's origin
    (or one in CSRF_TRUSTED_ORIGINS), Sec-Fetch-Site `same-origin`. A request with neither header is
    refused: every current browser sends Origin with a POST, so only a non-browser client lacks both.
    """
    origin = request.headers.get("Origin")
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if origin is None and fetch_site is None:
        return False
    if fetch_site is not None and fetch_site.strip().lower() != "same-origin":
        return False
    return origin is None or _origin_trusted(request, origin.strip())
