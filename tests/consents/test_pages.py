"""The public pages and My consents: the privacy overview (PM-0-1, PM-XI-1), one-click changes (PM-IX-6),
a confirmation only where withdrawing ends a service (PM-XI-3), receipts, notices per language."""

import json

import pytest
from django.conf import settings
from django.urls import reverse

from consents import cookies
from consents.models import ConsentEvent, ConsentPurpose, ConsentState
from consents.services import consent_set
from policies.models import PolicyVersion
from tests.factories.accounts import UserFactory
from tests.factories.consents import ConsentNoticeFactory, ConsentPurposeFactory, purpose_with_notice

pytestmark = pytest.mark.django_db


CHOICE = settings.CONSENT_COOKIE_NAME
SAME_ORIGIN = {"HTTP_ORIGIN": "http://testserver"}


def events_of(user, **filters):
    return list(
        ConsentEvent.objects.filter(subject_ref=user.subject_ref, **filters)
        .order_by("seq")
        .values_list("purpose__code", "action", "method")
    )


@pytest.fixture
def subject(client, seeded):
    user = UserFactory()
    client.force_login(user)
    return user


# --- The privacy overview -------------------------------------------------------------------------


def test_pm_0_1_overview_shows_the_policy_in_force_and_the_dpo(client, seeded):
    version = PolicyVersion.objects.filter(published_at__isnull=False).order_by("-effective_at").first()
    body = client.get("/").content.decode()
    assert version.label in body
    assert version.last_updated.strftime("%-d %B %Y") in body
    assert settings.DPO_EMAIL in body and settings.DPO_NAME in body
    assert settings.DPO_POSTAL_ADDRESS.split(",")[0] in body
    for link in ('href="/cookies"', 'href="/signin"', 'href="/signup"'):
        assert link in body


def test_pm_0_1_overview_links_a_signed_in_subject_to_my_consents(client, subject):
    body = client.get("/").content.decode()
    assert 'href="/my/consents"' in body and 'href="/signin"' not in body


def test_pm_0_1_overview_without_a_published_policy(client, db):
    response = client.get("/")
    assert response.status_code == 200
    assert "No version of the privacy policy has been published" in response.content.decode()


def test_public_pages_are_plain_and_accessible(client, seeded):
    body = client.get("/cookies").content.decode()
    assert '<html lang="en">' in body and 'href="#main"' in body and '<main id="main">' in body
    assert 'for="cat-analytics"' in body and 'id="cat-analytics"' in body
    assert "/admin/" not in body  # not the admin's templates
    assert "<script" not in body  # works without JavaScript


# --- My consents ----------------------------------------------------------------------------------


def test_pm_ix_6_my_consents_needs_a_sign_in(client, seeded):
    response = client.get("/my/consents")
    assert response.status_code == 302 and response["Location"].startswith("/signin?next=")


def test_pm_ix_6_necessary_cookies_are_shown_always_on_without_a_switch(client, subject):
    body = client.get("/my/consents").content.decode()
    assert "Always on" in body
    assert "/my/consents/cookies-necessary" not in body
    assert client.post("/my/consents/cookies-necessary", {"action": "withdraw"}).status_code == 404


def test_pm_ix_6_giving_and_withdrawing_marketing_is_one_click_each(client, subject):
    response = client.post("/my/consents/marketing-communications", {"action": "give"})
    assert response.status_code == 302 and response["Location"] == "/my/consents"
    response = client.post("/my/consents/marketing-communications", {"action": "withdraw"})
    assert response.status_code == 302
    assert events_of(subject) == [
        ("marketing-communications", "given", "portal"),
        ("marketing-communications", "withdrawn", "portal"),
    ]
    event = ConsentEvent.objects.filter(subject_ref=subject.subject_ref).first()
    assert event.notice is not None and event.notice.purpose.code == "marketing-communications"


def test_pm_ix_6_a_cookie_category_switch_changes_the_account_and_this_browser(client, subject):
    client.post("/my/consents/cookies-analytics", {"action": "give"})
    assert ConsentState.objects.get(subject_ref=subject.subject_ref, purpose__code="cookies-analytics").action == "given"
    choice = cookies.Choice.decode(client.cookies[CHOICE].value)
    assert choice.categories["analytics"][0] is True
    response = client.post("/my/consents/cookies-analytics", {"action": "withdraw"})
    assert response.status_code == 302  # one click: no confirmation for a cookie category
    assert cookies.Choice.decode(client.cookies[CHOICE].value).categories["analytics"][0] is False


def test_pm_ix_6_the_page_lists_every_event_with_its_receipt(client, subject):
    consent_set(choices={"marketing-communications": True}, method="portal", subject=subject)
    event = ConsentEvent.objects.get(subject_ref=subject.subject_ref)
    body = client.get("/my/consents").content.decode()
    assert f"/my/receipts/{event.receipt_id}.json" in body
    assert "Turn off" in body and 'href="/my/receipts.json"' in body


def test_pm_xi_3_withdrawing_a_purpose_that_ends_a_service_asks_first(client, subject):
    trial = purpose_with_notice("premium-trial", ends_service=True, consequences="Your premium trial ends at once.")
    consent_set(choices={trial.code: True}, method="portal", subject=subject)
    response = client.post(f"/my/consents/{trial.code}", {"action": "withdraw"})
    assert response.status_code == 200
    assert "Your premium trial ends at once." in response.content.decode()
    assert events_of(subject, purpose=trial) == [(trial.code, "given", "portal")]
    response = client.post(f"/my/consents/{trial.code}", {"action": "withdraw", "confirm": "yes"})
    assert response.status_code == 302
    assert events_of(subject, purpose=trial)[-1] == (trial.code, "withdrawn", "portal")


def test_pm_xi_3_giving_a_purpose_that_ends_a_service_needs_no_confirmation(client, subject):
    trial = purpose_with_notice("premium-trial", ends_service=True, consequences="Your premium trial ends at once.")
    assert client.post(f"/my/consents/{trial.code}", {"action": "give"}).status_code == 302
    assert events_of(subject, purpose=trial) == [(trial.code, "given", "portal")]


def test_pm_ix_6_a_purpose_without_a_notice_text_is_not_recorded(client, subject):
    ConsentPurposeFactory(code="unannounced")
    response = client.post("/my/consents/unannounced", {"action": "give"})
    assert response.status_code == 400
    assert "notice" in response.content.decode().lower()
    assert not ConsentEvent.objects.filter(purpose__code="unannounced").exists()


def test_pm_ix_6_unknown_action_is_a_bad_request(client, subject):
    assert client.post("/my/consents/marketing-communications", {"action": "maybe"}).status_code == 400


# --- Receipts -------------------------------------------------------------------------------------


def test_pm_0_2_a_receipt_downloads_as_json(client, subject):
    consent_set(choices={"marketing-communications": True}, method="portal", subject=subject)
    event = ConsentEvent.objects.get(subject_ref=subject.subject_ref)
    response = client.get(f"/my/receipts/{event.receipt_id}.json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"] == f'attachment; filename="consent-receipt-{event.receipt_id}.json"'
    receipt = json.loads(response.content)
    assert receipt["consentReceiptID"] == str(event.receipt_id)
    assert receipt["piiPrincipalId"] == str(subject.subject_ref)


def test_pm_0_2_all_receipts_include_the_browsers_banner_choices(client, seeded):
    client.post("/cookies/choice", {"choice": "accept-all"}, **SAME_ORIGIN)
    user = UserFactory()
    client.post("/signin", {"username": user.email, "password": "correct horse battery staple"})
    client.post("/my/consents/marketing-communications", {"action": "give"})
    response = client.get("/my/receipts.json")
    assert response["Content-Disposition"] == 'attachment; filename="consent-receipts.json"'
    receipts = json.loads(response.content)["receipts"]
    codes = [r["x-privacyops"]["purposeCode"] for r in receipts]
    assert sorted(codes) == ["cookies-analytics", "cookies-functionality", "marketing-communications"]


def test_pm_0_2_someone_elses_receipt_is_not_found(client, subject):
    other = UserFactory()
    consent_set(choices={"marketing-communications": True}, method="portal", subject=other)
    event = ConsentEvent.objects.get(subject_ref=other.subject_ref)
    assert client.get(f"/my/receipts/{event.receipt_id}.json").status_code == 404
    assert json.loads(client.get("/my/receipts.json").content) == {"receipts": []}


# --- Notices per language (PM-III-3) ---------------------------------------------------------------


def test_pm_iii_3_notices_follow_the_picked_language_and_the_ledger_says_which(client, seeded):
    functionality = ConsentPurpose.objects.get(code="cookies-functionality")
    french = ConsentNoticeFactory(purpose=functionality, version="1", language="fr", text="Retenir mes choix, comme ma langue.")
    body = client.get("/cookies?lang=fr").content.decode()
    assert french.text in body and '<option value="fr" selected>' in body
    response = client.post("/cookies/choice", {"choice": "accept-all", "lang": "fr", "next": "/cookies"}, **SAME_ORIGIN)
    assert response["Location"] == "/cookies?lang=fr"
    events = {e.purpose.code: e for e in ConsentEvent.objects.select_related("purpose")}
    assert (events["cookies-functionality"].language, events["cookies-functionality"].notice_id) == ("fr", french.pk)
    # No French text for analytics: the English one was shown, and the event says so.
    assert events["cookies-analytics"].language == "en"
    assert events["cookies-analytics"].notice.language == "en"


def test_pm_iii_3_an_unknown_language_falls_back_to_english(client, seeded):
    body = client.get("/cookies?lang=xx-evil").content.decode()
    assert '<html lang="en">' in body


def test_pm_ix_8_overview_leads_to_the_rights_pages(client, seeded):
    page = client.get(reverse("web:overview")).content.decode()
    assert reverse("requests:public_new") in page and reverse("requests:child_report") in page
    client.force_login(UserFactory())
    page = client.get(reverse("web:overview")).content.decode()
    assert reverse("requests:list") in page and reverse("requests:public_new") not in page
