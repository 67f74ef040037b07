"""Re-authentication before a download or an erasure (issue 5 §3, PM-IX-9): by password, or by an e-mailed
one-time code for accounts that sign in with Google or GitHub; failures throttled per account and per
address; a safe `next` only."""

import re

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.http import HttpResponse
from django.shortcuts import resolve_url
from django.test import RequestFactory
from django.urls import reverse

from accounts import reauth
from accounts.reauth import FAILURES_PER_ACCOUNT, FAILURES_PER_ADDRESS, REAUTH_SECONDS, reauth_fresh, reauth_mark, reauth_required
from privacyops.models import AuditEvent
from tests.factories.accounts import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
URL = "/account/reauth"


@pytest.fixture
def user(client):
    user = UserFactory()
    client.force_login(user)
    return user


@pytest.fixture
def social_user(client):
    """An account without a usable password (it signs in with Google or GitHub)."""
    user = UserFactory()
    user.set_unusable_password()
    user.save()
    client.force_login(user)
    return user


def _fresh(client) -> bool:
    request = RequestFactory().get("/")
    request.session = client.session
    from django.contrib.auth import get_user

    request.user = get_user(request)
    return reauth_fresh(request)


def _request(user=None):
    request = RequestFactory().get("/my/requests/1/download?x=1")
    request.session = SessionStore()
    if user is None:
        from django.contrib.auth.models import AnonymousUser

        user = AnonymousUser()
    request.user = user
    return request


def test_url_name_is_accounts_reauth():
    assert reverse("accounts:reauth") == URL


# --- Freshness and the decorator -----------------------------------------------------------------------------


def test_not_fresh_until_marked_then_fresh_for_reauth_seconds(monkeypatch):
    user = UserFactory()
    request = _request(user)
    assert reauth_fresh(request) is False
    reauth_mark(request)
    assert reauth_fresh(request) is True
    start = reauth.time.time()
    monkeypatch.setattr(reauth.time, "time", lambda: start + REAUTH_SECONDS - 1)
    assert reauth_fresh(request) is True
    monkeypatch.setattr(reauth.time, "time", lambda: start + REAUTH_SECONDS + 1)
    assert reauth_fresh(request) is False


def test_a_mark_counts_only_for_the_account_it_was_made_for():
    request = _request(UserFactory())
    reauth_mark(request)
    request.user = UserFactory()
    assert reauth_fresh(request) is False


def test_anonymous_is_never_fresh():
    assert reauth_fresh(_request()) is False


def test_reauth_mark_cycles_the_session_key():
    request = _request(UserFactory())
    request.session.save()
    before = request.session.session_key
    reauth_mark(request)
    assert request.session.session_key != before


def _view(request):
    return HttpResponse("the sensitive step")


def test_reauth_required_sends_anonymous_visitors_to_sign_in():
    response = reauth_required(_view)(_request())
    assert response.status_code == 302
    assert response["Location"].startswith(resolve_url("web:signin"))


def test_reauth_required_sends_a_stale_session_to_the_reauth_page_with_next():
    response = reauth_required(_view)(_request(UserFactory()))
    assert response.status_code == 302
    assert response["Location"] == f"{URL}?next=%2Fmy%2Frequests%2F1%2Fdownload%3Fx%3D1"


def test_reauth_required_runs_the_view_when_fresh():
    request = _request(UserFactory())
    reauth_mark(request)
    response = reauth_required(_view)(request)
    assert response.status_code == 200 and response.content == b"the sensitive step"


def test_the_page_needs_a_signed_in_account(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(resolve_url("web:signin"))


# --- By password ---------------------------------------------------------------------------------------------


def test_password_account_gets_a_password_form(client, user):
    response = client.get(URL + "?next=/my/requests/")
    assert response.status_code == 200
    assert b'type="password"' in response.content
    assert b'value="/my/requests/"' in response.content


def test_right_password_marks_the_session_audits_and_follows_next(client, user):
    response = client.post(URL, {"password": PASSWORD, "next": "/my/requests/7"})
    assert response.status_code == 302 and response["Location"] == "/my/requests/7"
    assert _fresh(client)
    event = AuditEvent.objects.get(action="account.reauthenticated")
    assert event.subject_ref == user.subject_ref
    assert event.details == {"method": "password"}
    assert user.email not in str(event.details)


def test_wrong_password_is_refused(client, user):
    response = client.post(URL, {"password": "not it", "next": "/my/requests/7"})
    assert response.status_code == 200
    assert b"That password is not right" in response.content
    assert not _fresh(client)


@pytest.mark.parametrize("target", ["https://evil.example/steal", "//evil.example/x", "javascript:alert(1)", ""])
def test_unsafe_or_missing_next_goes_to_the_default_page(client, user, target):
    response = client.post(URL, {"password": PASSWORD, "next": target})
    assert response.status_code == 302
    assert response["Location"] == resolve_url("web:my-consents")


def test_failures_lock_the_account_after_the_limit_even_for_the_right_password(client, user):
    for _ in range(FAILURES_PER_ACCOUNT - 1):
        assert client.post(URL, {"password": "wrong"}).status_code == 200
    locking = client.post(URL, {"password": "wrong"})
    assert locking.status_code == 429 and b"Too many failed attempts" in locking.content
    response = client.post(URL, {"password": PASSWORD})
    assert response.status_code == 429
    assert not _fresh(client)
    lockouts = AuditEvent.objects.filter(action="account.reauth_locked")
    assert lockouts.count() == 1  # once, when it locked; refused tries are not audited again
    assert lockouts.get().details["limits"] == ["account"]


def test_a_success_forgives_the_accounts_earlier_failures(client, user):
    for _ in range(FAILURES_PER_ACCOUNT - 1):
        client.post(URL, {"password": "wrong"})
    client.post(URL, {"password": PASSWORD})
    for _ in range(FAILURES_PER_ACCOUNT - 1):
        assert client.post(URL, {"password": "wrong"}).status_code == 200


def test_failures_from_one_address_lock_it_for_every_account(client):
    accounts_needed = -(-FAILURES_PER_ADDRESS // FAILURES_PER_ACCOUNT)
    for _ in range(accounts_needed):
        client.force_login(UserFactory())
        for _ in range(FAILURES_PER_ACCOUNT):
            client.post(URL, {"password": "wrong"})
    client.force_login(UserFactory())
    response = client.post(URL, {"password": PASSWORD})
    assert response.status_code == 429
    # The same account from another address is not locked.
    response = client.post(URL, {"password": PASSWORD}, REMOTE_ADDR="192.0.2.7")
    assert response.status_code == 302


# --- By e-mailed code ----------------------------------------------------------------------------------------


def _code(mail) -> str:
    return re.search(r"\b(\d{6})\b", mail.body).group(1)


def test_account_without_password_is_offered_an_emailed_code(client, social_user):
    response = client.get(URL)
    assert b'type="password"' not in response.content
    assert b"E-mail me a code" in response.content


def test_code_is_emailed_to_the_account_and_confirms_once(client, social_user, mailoutbox):
    response = client.post(URL, {"action": "send", "next": "/my/requests/3"})
    assert response.status_code == 200 and b"We e-mailed a code" in response.content
    assert len(mailoutbox) == 1 and mailoutbox[0].to == [social_user.email]
    code = _code(mailoutbox[0])

    response = client.post(URL, {"code": code, "next": "/my/requests/3"})
    assert response.status_code == 302 and response["Location"] == "/my/requests/3"
    assert _fresh(client)
    assert AuditEvent.objects.get(action="account.reauthenticated").details == {"method": "email_code"}

    again = client.post(URL, {"code": code})
    assert again.status_code == 200 and b"not right, or it has expired" in again.content


def test_a_password_is_no_way_in_for_an_account_without_one(client, social_user):
    response = client.post(URL, {"password": PASSWORD, "code": ""})
    assert response.status_code == 200
    assert not _fresh(client)


def test_wrong_code_is_refused_and_django_otp_throttles_the_next_guess(client, social_user, mailoutbox):
    client.post(URL, {"action": "send"})
    code = _code(mailoutbox[0])
    wrong = "000000" if code != "000000" else "111111"
    first = client.post(URL, {"code": wrong})
    assert first.status_code == 200 and b"not right, or it has expired" in first.content
    second = client.post(URL, {"code": code})  # at once: django-otp wants a pause after a failure
    assert second.status_code == 429 and b"Too many wrong codes" in second.content
    assert not _fresh(client)


def test_expired_code_is_refused(client, social_user, mailoutbox):
    from datetime import timedelta

    from django.utils import timezone

    client.post(URL, {"action": "send"})
    device = reauth.email_device_for(social_user)
    device.valid_until = timezone.now() - timedelta(seconds=1)
    device.save()
    response = client.post(URL, {"code": _code(mailoutbox[0])})
    assert response.status_code == 200 and b"expired" in response.content
    assert not _fresh(client)


def test_a_second_code_is_not_sent_within_the_cooldown(client, social_user, mailoutbox):
    client.post(URL, {"action": "send"})
    response = client.post(URL, {"action": "send"})
    assert len(mailoutbox) == 1
    assert b"wait a minute" in response.content


def test_code_failures_count_towards_the_lockout(client, social_user, mailoutbox, settings):
    settings.OTP_EMAIL_THROTTLE_FACTOR = 0  # leave django-otp's throttle aside: ours is under test
    client.post(URL, {"action": "send"})
    for _ in range(FAILURES_PER_ACCOUNT - 1):
        assert client.post(URL, {"code": "99999x"}).status_code == 200
    assert client.post(URL, {"code": "99999x"}).status_code == 429
    assert client.post(URL, {"code": _code(mailoutbox[0])}).status_code == 429
    assert AuditEvent.objects.get(action="account.reauth_locked").details["method"] == "email_code"


def test_the_device_follows_the_accounts_current_address(social_user):
    first = reauth.email_device_for(social_user)
    assert reauth.email_device_for(social_user) == first
    social_user.email = "new-address@example.org"
    social_user.save()
    second = reauth.email_device_for(social_user)
    assert second != first and second.email == "new-address@example.org"


def test_with_our_template_configured_the_code_email_names_the_dpo(client, social_user, mailoutbox, settings):
    """The settings lines the lead is asked for (docs/rights-requests-identity.md): our wording, the DPO's contact."""
    settings.OTP_EMAIL_SUBJECT = "Your confirmation code"
    settings.OTP_EMAIL_BODY_TEMPLATE_PATH = "accounts/reauth_code.txt"
    client.post(URL, {"action": "send"})
    mail = mailoutbox[0]
    assert mail.subject == "Your confirmation code"
    assert settings.DPO_EMAIL in mail.body and "works once, for 5 minutes" in mail.body
    assert client.post(URL, {"code": _code(mail)}).status_code == 302
