"""Bad JSON bodies on the consent API answer a clear 4xx JSON error and write nothing (issue 15; PM-II-2,
PM-IX-6: the API through which other services record and check consents must not fall over on input).

Each body goes to both endpoints that read one, with a valid write key, through Django's full request path;
the test client re-raises any exception a view lets escape, so a 500 fails these tests loudly.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from consents.api.keys import apikey_create
from consents.models import ConsentEvent
from privacyops.jsonbody import MAX_DEPTH
from privacyops.models import AuditEvent

ENDPOINTS = ["/api/v1/consent-checks", "/api/v1/consent-events"]

BAD_BODIES = {
    "array nested 50,000 deep": b"[" * 50_000 + b"]" * 50_000,
    "object nested 50,000 deep": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "nested one level too deep": b'{"checks":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}",
    "5,000-digit integer": b'{"checks": ' + b"9" * 5_000 + b"}",
    "number beyond a double": b'{"checks": 1e999}',
    "NaN": b'{"checks": NaN}',
    "Infinity": b'{"checks": -Infinity}',
    "invalid UTF-8": b'{"subject_ref": "\xff\xfe"}',
    "duplicate keys": b'{"action": "given", "action": "withdrawn"}',
    "truncated": b'{"checks": [',
}


@pytest.fixture
def write_client(db):
    _, token = apikey_create(actor=None, name="chat-service", scope="write")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    client.raise_request_exception = True
    return client


def _post(client, url, raw: bytes):
    return client.post(url, data=raw, content_type="application/json")


@pytest.mark.parametrize("url", ENDPOINTS)
@pytest.mark.parametrize("name", BAD_BODIES)
def test_bad_json_bodies_answer_400_json_and_write_nothing(write_client, url, name):
    events, audit = ConsentEvent.objects.count(), AuditEvent.objects.count()
    response = _post(write_client, url, BAD_BODIES[name])
    assert response.status_code == 400, (name, response.content[:200])
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == "invalid" and "body" in body["fields"], body
    assert ConsentEvent.objects.count() == events and AuditEvent.objects.count() == audit


def test_the_messages_say_what_is_wrong(write_client):
    def message(raw: bytes) -> str:
        return _post(write_client, ENDPOINTS[1], raw).json()["fields"]["body"]

    assert f"deeper than {MAX_DEPTH}" in message(BAD_BODIES["array nested 50,000 deep"])
    assert "more than once" in message(BAD_BODIES["duplicate keys"])
    assert "'action'" in message(BAD_BODIES["duplicate keys"])
    assert "not UTF-8" in message(BAD_BODIES["invalid UTF-8"])
    assert "digits" in message(BAD_BODIES["5,000-digit integer"])
    assert "too large" in message(BAD_BODIES["number beyond a double"])
    assert "NaN is not a JSON value" in message(BAD_BODIES["NaN"])


@pytest.mark.parametrize("url", ENDPOINTS)
def test_a_body_over_the_stated_limit_is_413_before_it_is_read(write_client, settings, url):
    settings.API_MAX_BODY_BYTES = 2_000
    raw = json.dumps({"checks": [{"subject_ref": "x" * 100, "purpose": "analytics"}] * 30}).encode()
    assert len(raw) > 2_000
    events = ConsentEvent.objects.count()
    response = _post(write_client, url, raw)
    assert response.status_code == 413, response.content
    assert response.json()["error"] == "too_large" and "2000 bytes" in response.json()["message"]
    assert ConsentEvent.objects.count() == events


def test_a_body_at_the_depth_limit_is_read_and_judged_on_its_content(write_client):
    """The limit refuses only what is deeper: a body exactly MAX_DEPTH levels deep reaches validation."""
    raw = b'{"checks": [' + b"[" * (MAX_DEPTH - 2) + b"]" * (MAX_DEPTH - 2) + b"]}"
    response = _post(write_client, ENDPOINTS[0], raw)
    assert response.status_code == 400
    assert "checks[0]" in json.dumps(response.json()["fields"]), response.json()


def test_an_unauthenticated_bad_body_is_refused_as_unauthenticated(db):
    response = Client().post(ENDPOINTS[1], data=BAD_BODIES["array nested 50,000 deep"], content_type="application/json")
    assert response.status_code == 401
