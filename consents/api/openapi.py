"""The OpenAPI 3.1 description of the consent API, served at /api/v1/openapi.json.

Written by hand next to the views (`consents.api.views`) rather than generated: the API is small, and the document
is a promise to integrators. tests/consents/test_openapi.py validates it against the official OpenAPI 3.1
JSON Schema shipped in `consents/schemas/openapi-3.1.schema.json`, checks every Schema Object against JSON
Schema 2020-12, and checks the views' real answers against the response schemas.
"""

from __future__ import annotations

import copy
from pathlib import Path

from .contract import BATCH_MAX, EVENT_ACTIONS

META_SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "openapi-3.1.schema.json"

_UUID = {"type": "string", "format": "uuid", "description": "The subject's pseudonymous reference (never an e-mail)."}
_CODE = {"type": "string", "pattern": "^[-a-zA-Z0-9_]{1,64}$"}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _ok(description: str, schema: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


_AUTH_ERRORS = {
    "401": _error("Missing, unknown or revoked API key."),
    "429": {
        "description": "Over the key's per-minute limit.",
        "headers": {"Retry-After": {"description": "Seconds until the next window.", "schema": {"type": "integer"}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    },
}

_SCHEMAS = {
    "Decision": {
        "type": "object",
        "required": ["subject_ref", "purpose", "allowed", "basis", "since", "restricted", "reason", "jurisdiction"],
        "properties": {
            "subject_ref": _UUID,
            "purpose": {**_CODE, "description": "The purpose as asked: a consent-purpose or register purpose code."},
            "allowed": {"type": "boolean"},
            "basis": {
                "type": ["string", "null"],
                "description": "The lawful basis that decided (a register code such as consent, contract); null if none.",
            },
            "since": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "When the deciding consent event, expiry or restriction took effect; null if none.",
            },
            "restricted": {"type": "boolean", "description": "A restriction of processing or an objection covers it."},
            "reason": {"type": "string", "description": "Why, in one sentence (for logs and support, not for parsing)."},
            "jurisdiction": {"type": "string", "description": "The subject's jurisdiction code in the register."},
        },
        "additionalProperties": False,
    },
    "CheckError": {
        "type": "object",
        "required": ["subject_ref", "purpose", "error", "message"],
        "properties": {
            "subject_ref": _UUID,
            "purpose": _CODE,
            "error": {"enum": ["unknown_subject", "unknown_purpose"]},
            "message": {"type": "string"},
        },
        "additionalProperties": False,
    },
    "CheckRequest": {
        "type": "object",
        "required": ["checks"],
        "properties": {
            "checks": {
                "type": "array",
                "minItems": 1,
                "maxItems": BATCH_MAX,
                "items": {
                    "type": "object",
                    "required": ["subject_ref", "purpose"],
                    "properties": {"subject_ref": _UUID, "purpose": _CODE},
                    "additionalProperties": False,
                },
            }
        },
        "additionalProperties": False,
    },
    "CheckResponse": {
        "type": "object",
        "required": ["results"],
        "properties": {
            "results": {
                "type": "array",
                "description": "One result per check, in the order asked.",
                "items": {"oneOf": [{"$ref": "#/components/schemas/Decision"}, {"$ref": "#/components/schemas/CheckError"}]},
            }
        },
        "additionalProperties": False,
    },
    "ConsentEventRequest": {
        "type": "object",
        "required": ["subject_ref", "purpose", "action"],
        "properties": {
            "subject_ref": _UUID,
            "purpose": {**_CODE, "description": "A consent-purpose code, e.g. marketing-communications."},
            "action": {"enum": list(EVENT_ACTIONS)},
            "effective_at": {
                "type": "string",
                "format": "date-time",
                "description": "When the person chose, with a UTC offset; default now. At most a minute ahead of our clock.",
            },
            "language": {"type": "string", "default": "en", "description": "Language of the notice shown (en, pt-BR ...)."},
            "notice_version": {
                "type": "string",
                "description": "Version of our notice text the person saw; must exist for the purpose and language.",
            },
            "jurisdiction": {"type": "string", "description": "Register jurisdiction code; default the subject's."},
        },
        "additionalProperties": False,
    },
    "ConsentEventResponse": {
        "type": "object",
        "required": ["receipt_id", "event", "receipt"],
        "properties": {
            "receipt_id": {"type": "string", "format": "uuid"},
            "event": {
                "type": "object",
                "required": ["subject_ref", "purpose", "action", "method", "seq", "effective_at", "recorded_at"],
                "properties": {
                    "subject_ref": _UUID,
                    "purpose": _CODE,
                    "action": {"enum": list(EVENT_ACTIONS)},
                    "method": {"const": "api"},
                    "seq": {"type": "integer", "minimum": 1, "description": "Position in the subject's hash chain."},
                    "effective_at": {"type": "string", "format": "date-time"},
                    "recorded_at": {"type": "string", "format": "date-time"},
                    "notice_version": {"type": ["string", "null"]},
                    "jurisdiction": {"type": "string"},
                },
            },
            "receipt": {
                "type": "object",
                "description": "The Kantara Consent Receipt v1.1 (KI-CR-v1.1.0) for the event.",
            },
        },
        "additionalProperties": False,
    },
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {
                "type": "string",
                "description": "invalid, unauthorized, insufficient_scope, rate_limited, unknown_subject, unknown_purpose, "
                "not_found, method_not_allowed, too_large.",
            },
            "message": {"type": "string"},
            "fields": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "On 400: the offending field (checks[3].purpose for a batch item) and what is wrong.",
            },
        },
        "additionalProperties": False,
    },
}

_DOCUMENT = {
    "openapi": "3.1.0",
    "info": {
        "title": "PrivacyOps consent API",
        "version": "1",
        "summary": "Ask whether a subject's data may be processed for a purpose; record consents a service collected.",
        "description": (
            "Every answer comes from one decision function: a purpose's lawful basis in the subject's "
            "jurisdiction, the subject's consents, restrictions and objections. A check that starts after a "
            "withdrawal has committed answers allowed=false. Subjects are named only by subject_ref."
        ),
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/subjects/{subject_ref}/purposes/{code}": {
            "get": {
                "operationId": "checkPurpose",
                "summary": "May this subject's data be processed for this purpose?",
                "parameters": [
                    {"name": "subject_ref", "in": "path", "required": True, "schema": _UUID},
                    {
                        "name": "code",
                        "in": "path",
                        "required": True,
                        "description": "A consent-purpose code (looked up first) or a register purpose code.",
                        "schema": _CODE,
                    },
                ],
                "responses": {
                    "200": _ok("The decision.", "Decision"),
                    "400": _error("subject_ref or code malformed."),
                    "404": _error("Unknown subject_ref (error unknown_subject) or purpose code (unknown_purpose)."),
                    **_AUTH_ERRORS,
                },
            }
        },
        "/api/v1/consent-checks": {
            "post": {
                "operationId": "checkPurposes",
                "summary": f"Up to {BATCH_MAX} checks in one request; each counts against the rate limit.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CheckRequest"}}},
                },
                "responses": {
                    "200": _ok("One result per check, in order; unknown subjects or purposes answer per item.", "CheckResponse"),
                    "400": _error("Malformed request; fields names the first offending field."),
                    **_AUTH_ERRORS,
                },
            }
        },
        "/api/v1/consent-events": {
            "post": {
                "operationId": "recordConsentEvent",
                "summary": "Record a consent the service collected (method api). Needs a key with the write scope.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ConsentEventRequest"}}},
                },
                "responses": {
                    "201": _ok("Recorded; the receipt id and the consent receipt.", "ConsentEventResponse"),
                    "400": _error("Invalid; fields names the offending field. Nothing was written."),
                    "403": _error("The key has the read scope only."),
                    **_AUTH_ERRORS,
                },
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "security": [],
                "responses": {"200": {"description": "The OpenAPI 3.1 document.", "content": {"application/json": {}}}},
            }
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key created by the DPO in the admin (shown once), scope read or write.",
            }
        },
        "schemas": _SCHEMAS,
    },
}


def openapi_document() -> dict:
    """A fresh copy of the document (callers may change it without touching the served one)."""
    return copy.deepcopy(_DOCUMENT)
