"""Cookies are set only as chosen (PM-III-1..7): the one check, the fail-closed middleware, the banner and
its endpoint, which checks Origin / Sec-Fetch-Site instead of a CSRF cookie."""

import datetime
import logging
import uuid
from html.parser import HTMLParser

import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponse
from django.template import Context, Template
from django.test import Client
from django.utils import timezone

from consents import cookies
from consents.cookies.middleware import CookieConsentMiddleware, middleware_order_check
from consents.cookies.views import beacon_counts
from consents.models import ConsentEvent, ConsentPurpose, ConsentState
from consents.services import consent_set
from tests.factories.accounts import UserFactory
from tests.factories.consents import ConsentNoticeFactory

pytestmark = pytest.mark.django_db


CHOICE = settings.CONSENT_COOKIE_NAME
SAME_ORIGIN = {"HTTP_ORIGIN": "http://testserver"}
PASSWORD = "correct horse battery staple"

# Every page a visitor reaches without signing in; none may answer a first visit with a cookie.
PUBLIC_PAGES = [
    "/",
    "/?lang=en",
    "/cookies",
    "/cookies?next=/my/consents",
    "/.well-known/gpc.json",
    "/beacon.gif",
    "/my/consents",  # a redirect to sign in
    "/my/receipts.json",  # a redirect to sign in
    "/no-such-page",
    "/healthz",
]
# Pages whose form needs Django's CSRF cookie: they set that strictly necessary cookie and nothing else.
FORM_PAGES = ["/signin", "/signup"]


def choose(client, choice, *, next_url="/cookies", headers=SAME_ORIGIN, **fields):
    return client.post("/cookies/choice", {"choice": choice, "next": next_url, **fields}, **headers)


def set_names(response) -> set[str]:
    """Cookies a response sets (deletions left out)."""
    return {name for name, morsel in response.cookies.items() if str(morsel["max-age"]) != "0"}


def deleted_names(response) -> set[str]:
    return {name for name, morsel in response.cookies.items() if str(morsel["max-age"]) == "0"}


def purpose(code) -> ConsentPurpose:
    return ConsentPurpose.objects.get(code=code)


def request_for(rf, *, user=None, choice: cookies.Choice | None = None, headers=None, path="/"):
    request = rf.get(path, headers=headers or {})
    request.user = user or AnonymousUser()
    if choice is not None:
        request.COOKIES[CHOICE] = choice.encode()
    return request


def months_ago(months: int) -> datetime.datetime:
    return timezone.now() - datetime.timedelta(days=31 * months)


# --- A first visit sets nothing -------------------------------------------------------------------


# One test walks every page (loading the register per test would cost more than the pages themselves).


def test_pm_iii_6_first_visit_sets_no_cookie(seeded):
    for path in PUBLIC_PAGES:
        response = Client().get(path)
        assert response.status_code in {200, 302, 404}, (path, response.status_code)
        assert not response.cookies, f"{path} set {list(response.cookies)} on a first visit"
        assert not response.has_header("Set-Cookie"), path


def test_pm_iii_6_first_visit_with_a_gpc_signal_sets_no_cookie_and_stores_nothing(seeded):
    for path in PUBLIC_PAGES:
        response = Client().get(path, headers={"Sec-GPC": "1"})
        assert not response.cookies, f"{path} set {list(response.cookies)} on a first visit with GPC"
    assert not ConsentEvent.objects.exists()


def test_pm_iii_1_sign_in_and_sign_up_forms_set_only_the_csrf_cookie(seeded):
    for path in FORM_PAGES:
        response = Client().get(path)
        assert response.status_code == 200, path
        assert set_names(response) == {settings.CSRF_COOKIE_NAME}, path


# --- The banner -----------------------------------------------------------------------------------


class _Buttons(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.buttons, self.in_banner, self.links = [], {}, False, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section" and "cookie-banner" in (attrs.get("class") or ""):
            self.in_banner = True
        if self.in_banner and attrs.get("name") == "choice":
            self.buttons[attrs["value"]] = (tag, attrs.get("type"), attrs.get("class"), attrs.get("style"))
        if tag == "a":
            self.links.append(attrs.get("href", ""))


def parse(response) -> _Buttons:
    parser = _Buttons()
    parser.feed(response.content.decode())
    return parser


def test_pm_iii_6_banner_on_every_page_until_the_visitor_chooses(seeded):
    for path in ["/", "/cookies", "/signin", "/signup"]:
        client = Client()
        page = parse(client.get(path))
        assert {"accept-all", "refuse-all"} <= set(page.buttons), path
        assert any(link.startswith("/cookies") for link in page.links), f"{path}: the footer links to the cookie settings"
        choose(client, "refuse-all")
        page = parse(client.get(path))
        assert not page.buttons, path
        assert any(link.startswith("/cookies") for link in page.links), f"{path}: changing later is one click away"


def test_pm_iii_6_accept_all_and_refuse_all_are_equally_prominent(client, seeded):
    buttons = parse(client.get("/cookies?next=/")).buttons
    page = parse(client.get("/signin")).buttons
    assert page["accept-all"] == page["refuse-all"] == buttons["accept-all"] == buttons["refuse-all"]
    assert page["accept-all"][0] == "button"


def test_pm_iii_7_banner_shows_each_categorys_notice_text(client, seeded):
    body = client.get("/cookies").content.decode()
    for code in ("cookies-functionality", "cookies-analytics"):
        notice = purpose(code).notices.get(language="en")
        assert notice.text in body
        assert purpose(code).consequences in body  # the choose page says what breaks


def test_pm_iii_6_choose_page_lists_the_cookie_inventory(client, seeded):
    body = client.get("/cookies").content.decode()
    for name in ("sessionid", "csrftoken", CHOICE, cookies.LANGUAGE_COOKIE, cookies.ANALYTICS_COOKIE, "/beacon.gif"):
        assert f"<code>{name}</code>" in body
    assert "13 months" in body and "First party" in body


# --- A choice sets exactly what was chosen --------------------------------------------------------


def test_pm_iii_6_accept_all_sets_only_the_choice_cookie_then_what_was_accepted(client, seeded):
    ConsentNoticeFactory(purpose=purpose("cookies-functionality"), version="1", language="fr", text="Retenir mes choix.")
    response = choose(client, "accept-all", next_url="/")
    assert response.status_code == 302 and response["Location"] == "/"
    assert set_names(response) == {CHOICE}
    page = client.get("/")
    assert not page.cookies
    assert 'src="/beacon.gif?p=%2F"' in page.content.decode()
    assert set_names(client.get("/beacon.gif")) == {cookies.ANALYTICS_COOKIE}
    assert set_names(client.get("/cookies?lang=fr")) == {cookies.LANGUAGE_COOKIE}
    assert not client.get("/cookies").cookies  # the language is remembered; nothing is set again
    assert 'lang="fr"' in client.get("/cookies").content.decode()


def test_pm_iii_6_refuse_all_sets_only_the_choice_cookie(client, seeded):
    ConsentNoticeFactory(purpose=purpose("cookies-functionality"), version="1", language="fr", text="Retenir mes choix.")
    response = choose(client, "refuse-all")
    assert set_names(response) == {CHOICE}
    page = client.get("/")
    assert "beacon.gif" not in page.content.decode()
    assert not page.cookies
    assert not client.get("/beacon.gif").cookies
    response = client.get("/cookies?lang=fr")
    assert not response.cookies
    assert "Retenir mes choix." in response.content.decode()  # the language works for the page, unremembered
    assert 'lang="en"' in client.get("/cookies").content.decode()


def test_pm_iii_6_choose_saves_each_category(client, seeded):
    response = choose(client, "save", categories=["functionality"])
    choice = cookies.Choice.decode(response.cookies[CHOICE].value)
    assert {category: allowed for category, (allowed, _) in choice.categories.items()} == {
        "functionality": True,
        "analytics": False,
    }
    assert not client.get("/beacon.gif").cookies


def test_pm_iii_6_a_choice_is_recorded_in_the_visitors_ledger(client, seeded):
    response = choose(client, "save", categories=["analytics"], headers={**SAME_ORIGIN, "HTTP_USER_AGENT": "Browser/1"})
    visitor_id = cookies.Choice.decode(response.cookies[CHOICE].value).visitor_id
    events = {e.purpose.code: e for e in ConsentEvent.objects.filter(visitor_id=visitor_id)}
    assert {code: e.action for code, e in events.items()} == {"cookies-analytics": "given", "cookies-functionality": "refused"}
    for code, event in events.items():
        assert event.method == ConsentEvent.Method.BANNER
        assert event.notice_sha256 == purpose(code).notices.get(language="en").sha256
        assert event.ip_hash and event.ip_hash != "127.0.0.1"
        assert event.ua_hash and "Browser" not in event.ua_hash
    assert "cookies-necessary" not in events


def test_pm_iii_6_the_same_choice_again_writes_nothing(client, seeded):
    choose(client, "accept-all")
    count = ConsentEvent.objects.count()
    choose(client, "accept-all")
    assert ConsentEvent.objects.count() == count


def test_pm_iii_6_refusing_after_accepting_withdraws_and_deletes_the_cookies(client, seeded):
    choose(client, "accept-all")
    client.get("/beacon.gif")
    client.get("/cookies?lang=en")
    response = choose(client, "refuse-all")
    assert cookies.ANALYTICS_COOKIE in deleted_names(response)
    assert set_names(response) == {CHOICE}
    assert set(ConsentState.objects.values_list("action", flat=True)) == {"withdrawn"}


def test_pm_iii_6_unsafe_next_goes_home(client, seeded):
    response = choose(client, "refuse-all", next_url="https://evil.example/")
    assert response["Location"] == "/"


def test_pm_iii_6_unknown_choice_is_a_bad_request(client, seeded):
    response = choose(client, "maybe")
    assert response.status_code == 400
    assert not response.cookies and not ConsentEvent.objects.exists()


# --- The banner endpoint refuses cross-site posts --------------------------------------------------


FORGED = {
    "evil origin": {"HTTP_ORIGIN": "https://evil.example"},
    "null origin": {"HTTP_ORIGIN": "null"},
    "cross-site": {"HTTP_SEC_FETCH_SITE": "cross-site"},
    "same-site": {"HTTP_SEC_FETCH_SITE": "same-site"},
    "our origin, cross-site fetch": {"HTTP_ORIGIN": "http://testserver", "HTTP_SEC_FETCH_SITE": "cross-site"},
    "evil origin, same-origin fetch": {"HTTP_ORIGIN": "https://evil.example", "HTTP_SEC_FETCH_SITE": "same-origin"},
    "neither header": {},  # refused (docs/cookies.md)
}
GENUINE = {
    "origin": {"HTTP_ORIGIN": "http://testserver"},
    "fetch metadata": {"HTTP_SEC_FETCH_SITE": "same-origin"},
    "both": {"HTTP_ORIGIN": "http://testserver", "HTTP_SEC_FETCH_SITE": "same-origin"},
}


def test_pm_iii_6_forged_cross_site_post_is_refused(seeded):
    for case, headers in FORGED.items():
        response = choose(Client(), "accept-all", headers=headers)
        assert response.status_code == 403, case
        assert not response.cookies, case
    assert not ConsentEvent.objects.exists()


def test_pm_iii_6_same_origin_post_is_accepted(seeded):
    for case, headers in GENUINE.items():
        response = choose(Client(), "accept-all", headers=headers)
        assert response.status_code == 302, case
        assert set_names(response) == {CHOICE}, case


def test_pm_iii_6_a_trusted_origin_is_accepted(client, seeded, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.privacy.example"]
    assert choose(client, "accept-all", headers={"HTTP_ORIGIN": "https://www.privacy.example"}).status_code == 302
    assert choose(client, "accept-all", headers={"HTTP_ORIGIN": "https://privacy.example.evil"}).status_code == 403


def test_pm_iii_6_the_banner_endpoint_needs_no_csrf_cookie(seeded):
    strict = Client(enforce_csrf_checks=True)
    assert choose(strict, "refuse-all").status_code == 302


def test_pm_iii_6_other_forms_still_need_the_csrf_token(seeded):
    strict = Client(enforce_csrf_checks=True)
    user = UserFactory()
    assert strict.post("/signin", {"username": user.email, "password": PASSWORD}, **SAME_ORIGIN).status_code == 403
    assert strict.post("/signup", {"email": "x@example.org"}, **SAME_ORIGIN).status_code == 403
    strict.force_login(user)
    response = strict.post("/my/consents/marketing-communications", {"action": "give"}, **SAME_ORIGIN)
    assert response.status_code == 403
    assert strict.post("/signout", **SAME_ORIGIN).status_code == 403


# --- cookies_allowed ------------------------------------------------------------------------------


def test_pm_iii_1_necessary_is_always_allowed_and_unknown_never(rf, seeded):
    request = request_for(rf)
    assert cookies.cookies_allowed(request, "necessary")
    assert not cookies.cookies_allowed(request, "functionality")
    assert not cookies.cookies_allowed(request, "analytics")
    assert not cookies.cookies_allowed(request, "advertising")


def test_pm_iii_6_a_tampered_choice_cookie_counts_for_nothing(rf, seeded):
    request = request_for(rf)
    forged = cookies.Choice(visitor_id=uuid.uuid4(), categories={"analytics": (True, timezone.now())}).encode()
    request.COOKIES[CHOICE] = forged[:-2] + ("AA" if not forged.endswith("AA") else "BB")
    assert not cookies.cookies_allowed(request, "analytics")
    assert cookies.banner_needed(request)


def test_pm_iii_4_a_consent_past_its_lifetime_is_asked_again(rf, seeded):
    old = cookies.Choice(
        visitor_id=uuid.uuid4(), categories={"analytics": (True, months_ago(14)), "functionality": (True, months_ago(2))}
    )
    request = request_for(rf, choice=old)
    assert not cookies.cookies_allowed(request, "analytics")
    assert cookies.cookies_allowed(request, "functionality")
    assert cookies.banner_needed(request)


def test_pm_iii_6_an_accounts_choice_wins_over_the_browsers(rf, seeded):
    user = UserFactory()
    consent_set(choices={"cookies-analytics": False, "cookies-functionality": True}, method="portal", subject=user)
    browser = cookies.Choice(
        visitor_id=uuid.uuid4(), categories={"analytics": (True, timezone.now()), "functionality": (False, timezone.now())}
    )
    request = request_for(rf, user=user, choice=browser)
    assert not cookies.cookies_allowed(request, "analytics")
    assert cookies.cookies_allowed(request, "functionality")
    assert not cookies.banner_needed(request)


def test_pm_iii_6_a_signed_in_account_without_a_choice_is_asked(rf, seeded):
    request = request_for(rf, user=UserFactory())
    assert not cookies.cookies_allowed(request, "functionality")
    assert cookies.banner_needed(request)


def test_pm_iii_6_cookies_allowed_template_tag(rf, seeded):
    template = Template(
        '{% load consent_tags %}{% cookies_allowed "analytics" as ok %}{{ ok|yesno:"on,off" }}|{% analytics_beacon %}'
    )
    assert template.render(Context({"request": request_for(rf)})) == "off|"
    given = cookies.Choice(visitor_id=uuid.uuid4(), categories={"analytics": (True, timezone.now())})
    rendered = template.render(Context({"request": request_for(rf, choice=given, path="/x")}))
    assert rendered.startswith("on|<img") and "/beacon.gif?p=%2Fx" in rendered and 'alt=""' in rendered


# --- The middleware fails closed -----------------------------------------------------------------


def run_middleware(request, *names):
    def view(req):
        response = HttpResponse("ok")
        for name in names:
            response.set_cookie(name, "x")
        return response

    middleware = CookieConsentMiddleware(view)
    middleware.process_view(request, view, (), {})
    return middleware(request)


def test_pm_iii_6_middleware_strips_a_cookie_that_is_not_consented(rf, seeded):
    response = run_middleware(request_for(rf), cookies.ANALYTICS_COOKIE, cookies.LANGUAGE_COOKIE, settings.CSRF_COOKIE_NAME)
    assert set(response.cookies) == {settings.CSRF_COOKIE_NAME}


def test_pm_iii_6_middleware_keeps_a_consented_cookie(rf, seeded):
    given = cookies.Choice(visitor_id=uuid.uuid4(), categories={"analytics": (True, timezone.now())})
    response = run_middleware(request_for(rf, choice=given), cookies.ANALYTICS_COOKIE, cookies.LANGUAGE_COOKIE)
    assert set(response.cookies) == {cookies.ANALYTICS_COOKIE}


def test_pm_iii_6_middleware_strips_and_logs_a_cookie_missing_from_the_inventory(rf, seeded, caplog):
    everything = cookies.Choice(
        visitor_id=uuid.uuid4(), categories={"analytics": (True, timezone.now()), "functionality": (True, timezone.now())}
    )
    with caplog.at_level(logging.WARNING, logger="consents.cookies"):
        response = run_middleware(request_for(rf, choice=everything), "_ga", cookies.ANALYTICS_COOKIE)
    assert set(response.cookies) == {cookies.ANALYTICS_COOKIE}
    assert "'_ga'" in caplog.text and "not in the cookie inventory" in caplog.text


def test_pm_iii_6_middleware_fails_closed_when_the_inventory_is_empty(rf, seeded, caplog):
    from consents.models import CookieInventory

    CookieInventory.objects.update(is_active=False)
    everything = cookies.Choice(
        visitor_id=uuid.uuid4(), categories={"analytics": (True, timezone.now()), "functionality": (True, timezone.now())}
    )
    with caplog.at_level(logging.WARNING, logger="consents.cookies"):
        response = run_middleware(request_for(rf, choice=everything), cookies.ANALYTICS_COOKIE, cookies.LANGUAGE_COOKIE, "_ga")
    assert not response.cookies  # consented, but unlisted: removed


def test_pm_iii_1_sign_in_survives_a_missing_inventory_row_and_says_so(rf, db, caplog):
    """Session, CSRF and choice cookies are necessary by construction: before `loadpolicy` the DPO can still sign in."""
    with caplog.at_level(logging.ERROR, logger="consents.cookies"):
        response = run_middleware(request_for(rf), settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME, CHOICE, "_ga")
    assert set(response.cookies) == {settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME, CHOICE}
    assert "missing from the cookie inventory" in caplog.text


def test_pm_iii_6_middleware_lets_a_deletion_through(rf, seeded):
    def view(req):
        response = HttpResponse("ok")
        response.delete_cookie("_ga")
        return response

    response = CookieConsentMiddleware(view)(request_for(rf))
    assert "_ga" in deleted_names(response)


def test_pm_iii_6_middleware_deletes_a_cookie_whose_consent_is_gone(rf, seeded):
    lapsed = cookies.Choice(visitor_id=uuid.uuid4(), categories={"analytics": (True, months_ago(14))})
    request = request_for(rf, choice=lapsed)
    request.COOKIES[cookies.ANALYTICS_COOKIE] = "abc"
    response = run_middleware(request)
    assert deleted_names(response) == {cookies.ANALYTICS_COOKIE}


def test_pm_iii_6_the_middleware_wraps_every_cookie_setter():
    """consents.E001: in MIDDLEWARE the cookie middleware comes before the session, CSRF and messages ones."""
    assert middleware_order_check() == []


def test_pm_iii_6_the_order_check_reports_a_middleware_that_cannot_see_the_session_cookie(settings):
    settings.MIDDLEWARE = [
        "django.contrib.sessions.middleware.SessionMiddleware",
        "consents.cookies.middleware.CookieConsentMiddleware",
    ]
    assert [error.id for error in middleware_order_check()] == ["consents.E001"]
    settings.MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware"]
    assert [error.id for error in middleware_order_check()] == ["consents.E001"]


# --- Session cookie lifetime (PM-III-3) ------------------------------------------------------------


def session_morsel(client, user):
    response = client.post("/signin", {"username": user.email, "password": PASSWORD})
    assert response.status_code == 302, response.content
    return response.cookies[settings.SESSION_COOKIE_NAME]


def test_pm_iii_3_without_functionality_the_session_ends_with_the_browser(client, seeded):
    morsel = session_morsel(client, UserFactory())
    assert morsel.value and not morsel["max-age"] and not morsel["expires"]


def test_pm_iii_3_with_functionality_the_sign_in_is_remembered(client, seeded):
    user = UserFactory()
    consent_set(choices={"cookies-functionality": True}, method="portal", subject=user)
    morsel = session_morsel(client, user)
    assert int(morsel["max-age"]) == settings.SESSION_COOKIE_AGE


def test_pm_iii_3_signing_out_deletes_the_session_cookie(client, seeded):
    user = UserFactory()
    session_morsel(client, user)
    response = client.post("/signout")
    assert settings.SESSION_COOKIE_NAME in deleted_names(response)


# --- The web beacon (PM-III-5) ---------------------------------------------------------------------


def test_pm_iii_5_the_beacon_counts_only_with_analytics_consent(client, seeded):
    today = timezone.now().date()
    response = client.get("/beacon.gif")
    assert response["Content-Type"] == "image/gif" and response.content.startswith(b"GIF89a")
    assert beacon_counts(today) == {"views": 0, "new": 0, "returning": 0}
    choose(client, "accept-all")
    client.get("/beacon.gif")
    client.get("/beacon.gif")
    assert beacon_counts(today) == {"views": 2, "new": 1, "returning": 1}
    choose(client, "refuse-all")
    client.get("/beacon.gif")
    assert beacon_counts(today)["views"] == 2


def test_pm_iii_5_no_beacon_in_pages_without_analytics(client, seeded):
    choose(client, "save", categories=["functionality"])
    assert '<img class="beacon"' not in client.get("/cookies").content.decode()
