"""Global Privacy Control (PM-IV-3, 11 CCR §7025): `Sec-GPC: 1` refuses analytics and any sale or sharing,
per request, for anyone; for a known browser or account the refusal is recorded once; a later request
without the signal is not an opt-in."""

import json

import pytest
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from consents import cookies
from consents.models import ConsentEvent, ConsentState
from consents.services import consent_set
from tests.factories.accounts import UserFactory
from tests.factories.consents import purpose_with_notice

pytestmark = pytest.mark.django_db


CHOICE = settings.CONSENT_COOKIE_NAME
SAME_ORIGIN = {"HTTP_ORIGIN": "http://testserver"}
GPC = {"Sec-GPC": "1"}
HONOURED = "Global Privacy Control signal honoured"


def choose(client, choice, *, headers=None, **fields):
    return client.post("/cookies/choice", {"choice": choice, "next": "/cookies", **fields}, headers=headers, **SAME_ORIGIN)


def browser_choice(client) -> cookies.Choice:
    return cookies.Choice.decode(client.cookies[CHOICE].value)


def gpc_events(**lookup):
    return list(ConsentEvent.objects.filter(method=ConsentEvent.Method.GPC, **lookup).values_list("purpose__code", "action"))


def test_pm_iv_3_gpc_json_declares_support(client):
    response = client.get("/.well-known/gpc.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert body["gpc"] is True
    assert len(body["lastUpdate"]) == 10 and body["lastUpdate"][4] == "-"


@pytest.mark.parametrize("path", ["/", "/cookies", "/signin"])
def test_pm_iv_3_pages_say_the_signal_is_honoured(client, seeded, path):
    assert HONOURED in client.get(path, headers=GPC).content.decode()
    assert HONOURED not in client.get(path).content.decode()


def test_pm_iv_3_an_unknown_visitor_with_gpc_gets_nothing_and_nothing_is_stored(client, seeded):
    response = client.get("/cookies", headers=GPC)
    assert not response.cookies
    assert '<img class="beacon"' not in response.content.decode()
    assert not client.get("/beacon.gif", headers=GPC).cookies
    assert not ConsentEvent.objects.exists()
    assert not ConsentState.objects.exists()


def test_pm_iv_3_gpc_refuses_analytics_even_after_accept_all(client, seeded, rf):
    choose(client, "accept-all")
    request = rf.get("/", headers=GPC)
    request.COOKIES[CHOICE] = client.cookies[CHOICE].value
    request.user = AnonymousUser()
    assert not cookies.cookies_allowed(request, "analytics")
    assert cookies.cookies_allowed(request, "functionality")  # GPC says nothing about functionality


def test_pm_iv_3_a_known_visitors_consent_is_withdrawn_once_and_the_cookie_follows(client, seeded):
    choose(client, "accept-all")
    visitor_id = browser_choice(client).visitor_id
    response = client.get("/", headers=GPC)
    assert gpc_events(visitor_id=visitor_id) == [("cookies-analytics", "withdrawn")]
    assert set(response.cookies) == {CHOICE}
    assert browser_choice(client).categories["analytics"][0] is False
    assert browser_choice(client).categories["functionality"][0] is True
    client.get("/cookies", headers=GPC)
    client.get("/", headers=GPC)
    assert len(gpc_events(visitor_id=visitor_id)) == 1  # only when it changes the state


def test_pm_iv_3_a_later_request_without_the_signal_is_not_an_opt_in(client, seeded):
    choose(client, "accept-all")
    client.get("/", headers=GPC)
    page = client.get("/")
    assert '<img class="beacon"' not in page.content.decode()
    assert not client.get("/beacon.gif").cookies
    assert "accept-all" not in page.content.decode()  # not asked again either: the refusal is a choice


def test_pm_iv_3_a_known_visitor_who_never_chose_analytics_is_recorded_as_refusing(client, seeded):
    choose(client, "save", categories=["functionality"])  # analytics refused by the banner already
    visitor_id = browser_choice(client).visitor_id
    client.get("/", headers=GPC)
    assert gpc_events(visitor_id=visitor_id) == []  # already refused: nothing changes, nothing written


def test_pm_iv_3_accept_all_under_gpc_records_analytics_refused_by_the_signal(client, seeded):
    choose(client, "accept-all", headers=GPC)
    visitor_id = browser_choice(client).visitor_id
    events = dict(ConsentEvent.objects.filter(visitor_id=visitor_id).values_list("purpose__code", "method"))
    assert events == {"cookies-functionality": "banner", "cookies-analytics": "gpc"}
    assert ConsentState.objects.get(visitor_id=visitor_id, purpose__code="cookies-analytics").action == "refused"
    assert all(ConsentEvent.objects.filter(visitor_id=visitor_id).values_list("gpc", flat=True))
    assert browser_choice(client).categories["analytics"][0] is False


def test_pm_iv_3_a_signed_in_accounts_consent_is_withdrawn_by_the_signal(client, seeded):
    user = UserFactory()
    consent_set(choices={"cookies-analytics": True, "cookies-functionality": True}, method="portal", subject=user)
    client.force_login(user)
    client.get("/my/consents", headers=GPC)
    assert gpc_events(subject_ref=user.subject_ref) == [("cookies-analytics", "withdrawn")]
    client.get("/my/consents", headers=GPC)
    client.get("/my/consents")
    assert len(gpc_events(subject_ref=user.subject_ref)) == 1
    state = ConsentState.objects.get(subject_ref=user.subject_ref, purpose__code="cookies-analytics")
    assert state.action == "withdrawn"  # the absence of the signal gave nothing back
    assert ConsentState.objects.get(subject_ref=user.subject_ref, purpose__code="cookies-functionality").action == "given"


def test_pm_iv_3_an_account_without_a_choice_is_recorded_as_refusing_every_sale_or_sharing(client, seeded):
    user = UserFactory()
    purpose_with_notice("share-with-partners", is_sale_or_sharing=True)
    client.force_login(user)
    client.get("/", headers=GPC)
    assert sorted(gpc_events(subject_ref=user.subject_ref)) == [
        ("cookies-analytics", "refused"),
        ("share-with-partners", "refused"),
    ]


def test_pm_iv_3_a_signed_in_browser_drops_its_own_yes_too(client, seeded):
    choose(client, "accept-all")
    user = UserFactory()
    client.force_login(user)
    client.get("/", headers=GPC)
    assert browser_choice(client).categories["analytics"][0] is False


def test_pm_iv_3_my_consents_offers_no_opt_in_against_the_signal(client, seeded):
    user = UserFactory()
    client.force_login(user)
    body = client.get("/my/consents", headers=GPC).content.decode()
    assert "Off (Global Privacy Control)" in body
    response = client.post("/my/consents/cookies-analytics", {"action": "give"}, headers=GPC)
    assert response.status_code == 302
    state = ConsentState.objects.get(subject_ref=user.subject_ref, purpose__code="cookies-analytics")
    assert state.action == "refused"


def _vary(response) -> set[str]:
    return {v.strip().lower() for v in response.get("Vary", "").split(",") if v.strip()}


@pytest.mark.parametrize("path", ["/", "/cookies", "/signin"])
def test_pm_iv_3_pages_that_change_with_the_signal_say_vary_sec_gpc_with_and_without_it(client, seeded, path):
    with_signal, without = client.get(path, headers=GPC), client.get(path)
    assert with_signal.content != without.content  # they do change with it
    assert "sec-gpc" in _vary(with_signal) and "sec-gpc" in _vary(without)


def test_pm_iv_3_a_known_browsers_response_varies_with_the_signal(client, seeded):
    choose(client, "accept")
    response = client.get("/beacon.gif")
    assert "sec-gpc" in _vary(response)


def test_pm_iv_3_responses_that_never_read_the_signal_do_not_vary_on_it(client, seeded):
    assert "sec-gpc" not in _vary(client.get("/.well-known/gpc.json", headers=GPC))
    assert "sec-gpc" not in _vary(client.get("/api/v1/openapi.json", headers=GPC))
