"""PM-III-2: the cookie-notice choice is remembered. The banner's answer is kept twice: in a persistent,
strictly necessary cookie (so the browser is not asked again, even after it closes) and in the consent
ledger (the proof), under the random visitor id the cookie carries. Only the browser's side is read here:
the response's cookies, the pages a returning browser gets, and the ledger rows."""

import datetime

import pytest
from django.conf import settings
from django.test import Client

from consents.models import ConsentEvent, CookieInventory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("seeded")]

CHOICE = settings.CONSENT_COOKIE_NAME
SAME_ORIGIN = {"HTTP_ORIGIN": "http://testserver"}
BANNER = 'value="accept-all"'


def choose(client, choice, **fields):
    response = client.post("/cookies/choice", {"choice": choice, "next": "/", **fields}, **SAME_ORIGIN)
    assert response.status_code == 302
    return response


def returning_browser(value: str) -> Client:
    """A browser reopened later: its session is gone, only persistent cookies came back."""
    browser = Client()
    browser.cookies[CHOICE] = value
    return browser


def test_pm_iii_2_the_choice_is_kept_in_a_year_long_necessary_cookie_and_in_no_other(client):
    response = choose(client, "refuse-all")
    assert set(response.cookies) == {CHOICE}
    morsel = response.cookies[CHOICE]
    assert int(morsel["max-age"]) == int(datetime.timedelta(days=365).total_seconds())  # persistent, not a session cookie
    assert morsel["httponly"] and morsel["samesite"] == "Lax"
    listed = CookieInventory.objects.select_related("category").get(name=CHOICE)
    assert listed.category.cookie_category == "necessary" and listed.category.is_necessary
    assert listed.duration == "1 year"


def test_pm_iii_2_a_browser_that_comes_back_is_not_asked_again_and_a_new_one_is():
    first = Client()
    assert BANNER in first.get("/").content.decode()
    value = choose(first, "accept-all").cookies[CHOICE].value
    assert BANNER not in returning_browser(value).get("/").content.decode()
    assert BANNER in Client().get("/").content.decode()


def test_pm_iii_2_the_choice_is_recorded_in_the_ledger_under_the_visitor_id_the_cookie_carries(client):
    value = choose(client, "save", categories=["functionality"]).cookies[CHOICE].value
    first = {e.purpose.code: e for e in ConsentEvent.objects.filter(method=ConsentEvent.Method.BANNER)}
    assert {code: e.action for code, e in first.items()} == {"cookies-functionality": "given", "cookies-analytics": "refused"}
    [visitor_id] = {e.visitor_id for e in first.values()}
    assert visitor_id is not None and all(e.chain.subject_ref is None for e in first.values())

    # Reopened a month later with nothing but the cookie, the browser changes its mind: the ledger continues
    # the same visitor's history instead of starting a stranger's.
    choose(returning_browser(value), "refuse-all")
    later = ConsentEvent.objects.filter(method=ConsentEvent.Method.BANNER).exclude(pk__in=[e.pk for e in first.values()])
    assert {(e.purpose.code, e.action) for e in later} == {("cookies-functionality", "withdrawn")}
    assert {e.visitor_id for e in later} == {visitor_id}
    # The necessary category is never asked, so never recorded as refused.
    assert not ConsentEvent.objects.filter(purpose__code="cookies-necessary").exists()
