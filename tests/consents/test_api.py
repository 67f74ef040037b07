"""The consent API for other services and its keys (PM-II-2, PM-III-6, PM-IX-5, PM-IX-6).

Keys: random tokens shown once, stored hashed, scoped, revocable, rate-limited. Endpoints: JSON in and out,
400 naming the field for any invalid input with nothing written, bearer authentication and no cookies.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
import uuid
from types import SimpleNamespace

import jsonschema
import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from consents.api import views as consents_api
from consents.api.keys import AUTH_MEMO_SECONDS, RECENT, apikey_authenticate, apikey_create, apikey_revoke
from consents.api.views import BUDGETS, ApiError, rate_limit_charge
from consents.decisions import decision_cache_clear
from consents.ledger import consent_record
from consents.models import ApiKey, ConsentEvent, ConsentPurpose, ConsentState
from consents.receipts import receipt_schema
from consents.services import restriction_place
from privacyops.models import AuditEvent
from tests.factories.accounts import UserFactory

URL_CHECKS = "/api/v1/consent-checks"
URL_EVENTS = "/api/v1/consent-events"


def check_url(subject_ref, code: str) -> str:
    return f"/api/v1/subjects/{subject_ref}/purposes/{code}"


@pytest.fixture(autouse=True)
def clean_cache():
    """Rate-limit windows and decisions live in the cache; ids and versions recur between tests."""
    decision_cache_clear()
    BUDGETS.clear()
    yield
    decision_cache_clear()
    BUDGETS.clear()


@pytest.fixture
def frozen_window(monkeypatch):
    """The API's clock stands still in the middle of a minute: no test straddles two rate windows."""
    moment = (time.time() // 60) * 60 + 30
    monkeypatch.setattr(consents_api, "time", SimpleNamespace(time=lambda: moment))
    return moment


@pytest.fixture
def api(db, seeded):
    """A client with a read key and a write key; `api.get(url, key="read")`, `api.post(url, body, key="write")`."""

    class Api:
        def __init__(self):
            self.client = Client(enforce_csrf_checks=True)
            self.read_key, self.read_token = apikey_create(actor=None, name="chat-read", scope="read")
            self.write_key, self.write_token = apikey_create(actor=None, name="chat-service", scope="write")

        def headers(self, key):
            token = {"read": self.read_token, "write": self.write_token}.get(key, key)
            return {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}

        def get(self, url, *, key="read"):
            return self.client.get(url, **self.headers(key))

        def post(self, url, body, *, key="write"):
            data = body if isinstance(body, (str, bytes)) else json.dumps(body)
            return self.client.post(url, data=data, content_type="application/json", **self.headers(key))

    return Api()


@pytest.fixture
def subject(db):
    return UserFactory(country="FR", password=None)


def events_written() -> int:
    return ConsentEvent.objects.count()


# --- Keys ---------------------------------------------------------------------------------------------------


def test_apikey_token_is_32_random_bytes_stored_only_as_sha256(db):
    key, token = apikey_create(actor=None, name="svc", scope="read")
    assert len(token) == 43  # base64url of 32 bytes, unpadded
    assert key.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert key.prefix == token[:8]
    stored = ApiKey.objects.filter(pk=key.pk).values()[0]
    assert token not in json.dumps(stored, default=str)
    event = AuditEvent.objects.get(action="consent.api_key_created")
    assert token not in json.dumps(event.details)
    assert event.details["prefix"] == key.prefix and event.details["scope"] == "read"


def test_apikey_create_validates_name_scope_and_limit(db):
    apikey_create(actor=None, name="svc", scope="read")
    for kwargs, field in (
        ({"name": "svc", "scope": "read"}, "name"),
        ({"name": " ", "scope": "read"}, "name"),
        ({"name": "other", "scope": "admin"}, "scope"),
        ({"name": "other", "scope": "read", "rate_limit_per_minute": 0}, "rate_limit_per_minute"),
        ({"name": "other", "scope": "read", "rate_limit_per_minute": 2**31}, "rate_limit_per_minute"),
    ):
        with pytest.raises(ValidationError) as error:
            apikey_create(actor=None, **kwargs)
        assert field in error.value.message_dict
    assert ApiKey.objects.count() == 1


def test_apikey_revoke_is_audited_once_and_stops_the_token(db):
    key, token = apikey_create(actor=None, name="svc", scope="read")
    assert apikey_authenticate(token) == key
    apikey_revoke(actor=None, key=key)
    apikey_revoke(actor=None, key=key)
    assert apikey_authenticate(token) is None
    assert AuditEvent.objects.filter(action="consent.api_key_revoked").count() == 1


@pytest.mark.parametrize("token", ["", None, "x" * 500, "not-a-token"])
def test_apikey_authenticate_refuses_what_is_not_a_live_token(db, token):
    assert apikey_authenticate(token) is None


def test_apikey_last_used_is_written_at_most_once_a_minute(db, django_assert_num_queries):
    key, token = apikey_create(actor=None, name="svc", scope="read")
    with django_assert_num_queries(2):  # the lookup, and the first use
        apikey_authenticate(token)
    first = ApiKey.objects.get(pk=key.pk).last_used_at
    with django_assert_num_queries(0):  # remembered by this process for a few seconds
        apikey_authenticate(token)
    RECENT.clear()
    with django_assert_num_queries(1):  # looked up again; used within the minute: no write
        apikey_authenticate(token)
    assert ApiKey.objects.get(pk=key.pk).last_used_at == first
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=first - datetime.timedelta(minutes=2))
    RECENT.clear()
    apikey_authenticate(token)
    assert ApiKey.objects.get(pk=key.pk).last_used_at > first - datetime.timedelta(minutes=2)


def test_apikey_revoked_elsewhere_is_refused_within_the_memo_time(db, monkeypatch):
    """Another process revoking: this one trusts its memo for at most AUTH_MEMO_SECONDS."""
    key, token = apikey_create(actor=None, name="svc", scope="read")
    assert apikey_authenticate(token) is not None
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())  # as the other process's commit leaves it
    assert apikey_authenticate(token) is not None
    later = time.monotonic() + AUTH_MEMO_SECONDS + 0.001
    monkeypatch.setattr("consents.api.keys.time.monotonic", lambda: later)
    assert apikey_authenticate(token) is None


# --- Authentication, scope, rate limit --------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer nope", "Basic dXNlcjpwYXNz", "Token abc"])
def test_missing_or_bad_token_is_401_json(api, subject, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    response = api.client.get(check_url(subject.subject_ref, "marketing"), **headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_revoked_key_is_401_at_once(api, subject):
    assert api.get(check_url(subject.subject_ref, "marketing")).status_code == 200
    apikey_revoke(actor=None, key=api.read_key)
    assert api.get(check_url(subject.subject_ref, "marketing")).status_code == 401


def test_read_key_cannot_record_and_nothing_is_written(api, subject):
    response = api.post(
        URL_EVENTS,
        {"subject_ref": str(subject.subject_ref), "purpose": "marketing-communications", "action": "given"},
        key="read",
    )
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert events_written() == 0


def test_rate_limit_is_429_with_retry_after(api, subject, frozen_window):
    ApiKey.objects.filter(pk=api.read_key.pk).update(rate_limit_per_minute=2)
    url = check_url(subject.subject_ref, "marketing")
    assert [api.get(url).status_code for _ in range(2)] == [200, 200]
    response = api.get(url)
    assert response.status_code == 429
    assert response.json()["error"] == "rate_limited"
    assert response["Retry-After"] == "30"
    assert api.get(url, key="write").status_code == 200  # budgets are per key


def test_a_batch_costs_one_unit_per_check(api, subject, frozen_window):
    ApiKey.objects.filter(pk=api.read_key.pk).update(rate_limit_per_minute=3)
    checks = [{"subject_ref": str(subject.subject_ref), "purpose": "marketing"}] * 4
    assert api.post(URL_CHECKS, {"checks": checks}, key="read").status_code == 429


def test_large_limits_are_reported_to_the_shared_counter_in_steps_of_one_percent(db, frozen_window):
    key, _token = apikey_create(actor=None, name="svc", scope="read", rate_limit_per_minute=1000)
    shared = f"consents:api:rate:{key.pk}-{key.prefix}:{int(frozen_window // 60)}"
    for _ in range(25):
        rate_limit_charge(key)
    assert cache.get(shared) == 20  # two steps of 10 reported; 5 still counted here only
    for _ in range(975):
        rate_limit_charge(key)
    with pytest.raises(ApiError) as over:
        rate_limit_charge(key)
    assert over.value.status == 429


def test_api_is_csrf_exempt_and_sets_no_cookie(api, subject):
    """Bearer auth, no cookie read: the client enforces CSRF checks and the POSTs still go through."""
    body = {"subject_ref": str(subject.subject_ref), "purpose": "marketing-communications", "action": "given"}
    for response in (
        api.get(check_url(subject.subject_ref, "marketing")),
        api.post(URL_CHECKS, {"checks": [{"subject_ref": str(subject.subject_ref), "purpose": "marketing"}]}, key="read"),
        api.post(URL_EVENTS, body),
    ):
        assert response.status_code in (200, 201), response.content
        assert not response.cookies
        assert response["Cache-Control"] == "no-store"


# --- GET one check ------------------------------------------------------------------------------------------


def test_pm_ii_2_check_answers_allowed_basis_since_restricted(api, subject):
    response = api.get(check_url(subject.subject_ref, "marketing-communications"))
    assert response.status_code == 200
    body = response.json()
    assert body["allowed"] is False and body["basis"] == "consent" and body["since"] is None and body["restricted"] is False
    assert set(body) == {"subject_ref", "purpose", "allowed", "basis", "since", "restricted", "reason", "jurisdiction"}
    given = consent_record(
        purpose=ConsentPurpose.objects.get(code="marketing-communications"), action="given", method="portal", subject=subject
    )
    body = api.get(check_url(subject.subject_ref, "marketing")).json()
    assert body["allowed"] is True
    assert datetime.datetime.fromisoformat(body["since"]) == given.effective_at


def test_pm_ix_5_check_after_a_restriction_says_restricted(api, subject):
    url = check_url(subject.subject_ref, "model-improvement")
    assert api.get(url).json()["allowed"] is True
    restriction_place(actor=None, subject=subject, kind="objection", reason="Asked by letter", purpose="model-improvement")
    body = api.get(url).json()
    assert body["allowed"] is False and body["restricted"] is True


def test_unknown_subject_and_unknown_purpose_are_404(api, subject):
    missing = api.get(check_url(uuid.uuid4(), "marketing"))
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_subject"
    unknown = api.get(check_url(subject.subject_ref, "no-such-purpose"))
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_purpose"


@pytest.mark.parametrize("ref", ["not-a-uuid", "someone@example.org", "12345"])
def test_subjects_only_by_subject_ref(api, ref):
    response = api.get(check_url(ref, "marketing"))
    assert response.status_code == 400
    assert response.json()["fields"] == {"subject_ref": response.json()["fields"]["subject_ref"]}


def test_cached_check_through_the_api_is_two_queries(api, subject, django_assert_num_queries):
    url = check_url(subject.subject_ref, "marketing")
    api.get(url)
    with django_assert_num_queries(1):  # the subject with its chain version (the key is remembered)
        assert api.get(url).status_code == 200


def test_wrong_method_and_unknown_path_answer_json(api, subject):
    response = api.client.post(check_url(subject.subject_ref, "marketing"))
    assert response.status_code == 405 and response["Allow"] == "GET"
    assert response.json()["error"] == "method_not_allowed"
    response = api.get("/api/v1/nothing-here")
    assert response.status_code == 404 and response.json()["error"] == "not_found"


# --- POST consent-checks ----------------------------------------------------------------------------------------


def test_batch_answers_in_order_with_per_item_errors(api, subject):
    ref = str(subject.subject_ref)
    checks = [
        {"subject_ref": ref, "purpose": "provide-service"},
        {"subject_ref": str(uuid.uuid4()), "purpose": "marketing"},
        {"subject_ref": ref, "purpose": "no-such-purpose"},
        {"subject_ref": ref, "purpose": "marketing"},
    ]
    response = api.post(URL_CHECKS, {"checks": checks}, key="read")
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["purpose"] for r in results] == [c["purpose"] for c in checks]
    assert results[0]["allowed"] is True and results[3]["allowed"] is False
    assert results[1]["error"] == "unknown_subject" and results[2]["error"] == "unknown_purpose"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("not json", "body"),
        ([], "body"),
        ({}, "checks"),
        ({"checks": []}, "checks"),
        ({"checks": "x"}, "checks"),
        ({"checks": [{"subject_ref": "a"}] * 1001}, "checks"),
        ({"checks": [], "extra": 1}, "extra"),
        ({"checks": ["x"]}, "checks[0]"),
        ({"checks": [{"purpose": "marketing"}]}, "checks[0].subject_ref"),
        ({"checks": [{"subject_ref": "nope", "purpose": "marketing"}]}, "checks[0].subject_ref"),
        ({"checks": [{"subject_ref": str(uuid.UUID(int=1))}]}, "checks[0].purpose"),
        ({"checks": [{"subject_ref": str(uuid.UUID(int=1)), "purpose": "a b"}]}, "checks[0].purpose"),
        ({"checks": [{"subject_ref": str(uuid.UUID(int=1)), "purpose": "x", "email": "a@b.c"}]}, "checks[0].email"),
    ],
)
def test_batch_validation_names_the_field(api, body, field):
    response = api.post(URL_CHECKS, body, key="read")
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]


# --- POST consent-events ----------------------------------------------------------------------------------------


def test_pm_ii_2_recording_through_the_api_returns_the_receipt(api, subject):
    response = api.post(
        URL_EVENTS,
        {
            "subject_ref": str(subject.subject_ref),
            "purpose": "marketing-communications",
            "action": "given",
            "language": "en",
            "notice_version": "1",
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    event = ConsentEvent.objects.get()
    assert body["receipt_id"] == str(event.receipt_id)
    assert (event.method, event.actor_label, event.notice_version) == ("api", "api:chat-service", "1")
    assert body["event"]["seq"] == event.seq and body["event"]["method"] == "api"
    jsonschema.validate(body["receipt"], receipt_schema())
    assert body["receipt"]["consentReceiptID"] == str(event.receipt_id)
    assert api.get(check_url(subject.subject_ref, "marketing")).json()["allowed"] is True


def test_pm_iii_6_withdrawal_through_the_api_is_seen_by_the_next_check(api, subject):
    ref = str(subject.subject_ref)
    api.post(URL_EVENTS, {"subject_ref": ref, "purpose": "marketing-communications", "action": "given"})
    assert api.get(check_url(ref, "marketing")).json()["allowed"] is True  # now cached
    api.post(URL_EVENTS, {"subject_ref": ref, "purpose": "marketing-communications", "action": "withdrawn"})
    assert api.get(check_url(ref, "marketing")).json()["allowed"] is False


def test_effective_at_is_kept(api, subject):
    moment = "2025-05-01T09:30:00+02:00"
    response = api.post(
        URL_EVENTS,
        {"subject_ref": str(subject.subject_ref), "purpose": "cookies-analytics", "action": "refused", "effective_at": moment},
    )
    assert response.status_code == 201, response.content
    assert ConsentEvent.objects.get().effective_at == datetime.datetime.fromisoformat(moment)
    assert ConsentState.objects.get(subject_ref=subject.subject_ref).action == "refused"


def _event_cases():
    future = (timezone.now() + datetime.timedelta(days=1)).isoformat()
    return [
        ({"subject_ref": None}, "subject_ref"),
        ({"subject_ref": "someone@example.org"}, "subject_ref"),
        ({"subject_ref": str(uuid.UUID(int=3))}, "subject_ref"),
        ({"purpose": None}, "purpose"),
        ({"purpose": "marketing"}, "purpose"),  # a register purpose: consent is given per consent purpose
        ({"purpose": "no-such"}, "purpose"),
        ({"purpose": "cookies-necessary", "action": "refused"}, "purpose"),
        ({"action": "expired"}, "action"),
        ({"action": None}, "action"),
        ({"action": 1}, "action"),
        ({"effective_at": "yesterday"}, "effective_at"),
        ({"effective_at": "2025-05-01T09:30:00"}, "effective_at"),
        ({"effective_at": 1714555800}, "effective_at"),
        ({"effective_at": future}, "effective_at"),
        ({"language": "english!"}, "language"),
        ({"notice_version": "99"}, "notice_version"),
        ({"notice_version": "1", "language": "fr"}, "notice_version"),
        ({"jurisdiction": "XX"}, "jurisdiction"),
        ({"email": "someone@example.org"}, "email"),
    ]


@pytest.mark.parametrize(("change", "field"), _event_cases(), ids=[c[1] + "-" + str(i) for i, c in enumerate(_event_cases())])
def test_event_validation_names_the_field_and_writes_nothing(api, subject, change, field):
    body = {"subject_ref": str(subject.subject_ref), "purpose": "marketing-communications", "action": "given"} | change
    body = {name: value for name, value in body.items() if value is not None}
    audit_before = AuditEvent.objects.count()
    response = api.post(URL_EVENTS, body)
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"], response.json()
    assert events_written() == 0
    assert AuditEvent.objects.count() == audit_before


@pytest.mark.parametrize("raw", ["", "not json", "[]", '"text"', "{"])
def test_event_body_must_be_a_json_object(api, raw):
    response = api.post(URL_EVENTS, raw)
    assert response.status_code == 400 and "body" in response.json()["fields"]
    assert events_written() == 0


def test_openapi_document_is_public(client, db):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.1")
