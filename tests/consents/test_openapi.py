"""The OpenAPI 3.1 document of the consent API, validated offline against the official OAS 3.1 JSON Schema shipped
in consents/schemas/ (not openapi-spec-validator: it pulls in PyPI `requests`, which our `requests/` app shadows).
"""

from __future__ import annotations

import json
import uuid

import pytest
from django.urls import get_resolver
from jsonschema import Draft202012Validator
from jsonschema_specifications import REGISTRY as SPECIFICATIONS
from referencing import Registry
from referencing.exceptions import NoSuchResource

from consents.api import urls as api_urls
from consents.api.keys import apikey_create
from consents.api.openapi import META_SCHEMA_PATH, openapi_document
from consents.decisions import decision_cache_clear
from tests.factories.accounts import UserFactory


def _offline(uri: str):
    raise NoSuchResource(ref=uri)  # every reference must resolve from the files we ship or jsonschema bundles


REGISTRY = Registry(retrieve=_offline).combine(SPECIFICATIONS)


@pytest.fixture(scope="module")
def meta_validator() -> Draft202012Validator:
    meta = json.loads(META_SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(meta)
    return Draft202012Validator(meta, registry=REGISTRY)


def test_served_document_is_valid_openapi_3_1(client, db, meta_validator):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"] == "3.1.0"
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in meta_validator.iter_errors(document)]
    assert errors == []


def test_meta_schema_is_the_official_oas_3_1_schema():
    meta = json.loads(META_SCHEMA_PATH.read_text(encoding="utf-8"))
    assert meta["$id"].startswith("https://spec.openapis.org/oas/3.1/schema/")
    assert meta["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def _broken_documents():
    def without_info(doc):
        del doc["info"]

    def wrong_version(doc):
        doc["openapi"] = "3.0.3"

    def response_without_description(doc):
        del doc["paths"]["/api/v1/consent-checks"]["post"]["responses"]["200"]["description"]

    def unknown_security_type(doc):
        doc["components"]["securitySchemes"]["bearer"]["type"] = "magic"

    def parameter_without_location(doc):
        del doc["paths"]["/api/v1/subjects/{subject_ref}/purposes/{code}"]["get"]["parameters"][0]["in"]

    def path_not_starting_with_slash(doc):
        doc["paths"]["api/v1/x"] = {}

    return [
        without_info,
        wrong_version,
        response_without_description,
        unknown_security_type,
        parameter_without_location,
        path_not_starting_with_slash,
    ]


@pytest.mark.parametrize("breakage", _broken_documents(), ids=lambda f: f.__name__)
def test_a_broken_document_fails(meta_validator, breakage):
    document = openapi_document()
    breakage(document)
    assert list(meta_validator.iter_errors(document))


@pytest.mark.parametrize("name", sorted(openapi_document()["components"]["schemas"]))
def test_every_schema_object_is_valid_json_schema_2020_12(name):
    """The OAS meta-schema leaves Schema Objects open; check them against the JSON Schema dialect itself."""
    Draft202012Validator.check_schema(openapi_document()["components"]["schemas"][name])


def test_every_api_route_is_documented():
    documented = set(openapi_document()["paths"])
    routes = {
        "/api/v1/" + str(pattern.pattern).replace("<str:", "{").replace(">", "}")
        for pattern in api_urls.urlpatterns
        if getattr(pattern, "name", None)
    }
    assert routes == documented
    assert get_resolver().resolve("/api/v1/openapi.json").func.__name__ == "openapi_json"


def _validator_for(component: str) -> Draft202012Validator:
    document = openapi_document()
    root = {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    return Draft202012Validator(root, registry=REGISTRY, format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_real_answers_match_the_documented_schemas(client, db, seeded):
    decision_cache_clear()
    _key, read = apikey_create(actor=None, name="read", scope="read")
    _key, write = apikey_create(actor=None, name="write", scope="write")
    subject = UserFactory(country="GB", password=None)
    ref = str(subject.subject_ref)

    def auth(token):
        return {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    answers = {
        "Decision": client.get(f"/api/v1/subjects/{ref}/purposes/marketing", **auth(read)),
        "CheckResponse": client.post(
            "/api/v1/consent-checks",
            {"checks": [{"subject_ref": ref, "purpose": "marketing"}, {"subject_ref": str(uuid.uuid4()), "purpose": "x"}]},
            content_type="application/json",
            **auth(read),
        ),
        "ConsentEventResponse": client.post(
            "/api/v1/consent-events",
            {"subject_ref": ref, "purpose": "marketing-communications", "action": "given", "notice_version": "1"},
            content_type="application/json",
            **auth(write),
        ),
    }
    errors = {
        400: client.post("/api/v1/consent-events", {"action": "x"}, content_type="application/json", **auth(write)),
        401: client.get(f"/api/v1/subjects/{ref}/purposes/marketing"),
        403: client.post("/api/v1/consent-events", {}, content_type="application/json", **auth(read)),
        404: client.get(f"/api/v1/subjects/{uuid.uuid4()}/purposes/marketing", **auth(read)),
    }
    for component, response in answers.items():
        assert response.status_code in (200, 201), response.content
        assert list(_validator_for(component).iter_errors(response.json())) == [], component
    for status, response in errors.items():
        assert response.status_code == status
        assert list(_validator_for("Error").iter_errors(response.json())) == [], status
