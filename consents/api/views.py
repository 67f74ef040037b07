"""The consent API for other services (section 4 of the consents issue; PM-II-2, PM-III-6, PM-IX-5, PM-IX-6).

Plain Django views that speak JSON. Clients authenticate with `Authorization: Bearer <token>` (an ApiKey);
no cookie or session is read, which is why the views are exempt from CSRF checks -- a browser cannot attach
the bearer token to a forged request. Subjects appear only by `subject_ref`, never by e-mail.

- Every answer comes from `consents.decisions.is_processing_allowed` (cached; see that module for why a
  check that starts after a withdrawal has committed never says "allowed").
- Every request is charged to its key's per-minute budget in a fixed window kept in Django's cache (see
  `_Budgets`: exact for small limits, within 1% per server process for large ones); a batch costs one
  unit per check. Over budget: 429 with Retry-After. A cache that fails lets requests through: the limit
  protects capacity, not data.
- Every validation failure is a 400 whose body names the field; nothing is written. A consent event is
  written and its receipt built in one transaction, so a client never sees an error for a recorded event.
- Error bodies: {"error": <code>, "message": <text>, "fields": {<field>: <text>}} (fields on 400 only).
"""

from __future__ import annotations

import datetime
import functools
import logging
import math
import re
import threading
import time
import uuid

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.db import transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from accounts.models import User
from inventory.models import Jurisdiction
from privacyops.jsonbody import JsonBodyError, json_body_parse

from ..decisions import UnknownPurpose, UnknownSubject, is_processing_allowed, is_processing_allowed_many
from ..ledger import consent_record
from ..models import ApiKey, ConsentEvent, ConsentNotice, ConsentPurpose
from ..receipts import receipt_for
from .contract import BATCH_MAX, EVENT_ACTIONS
from .keys import apikey_authenticate
from .openapi import openapi_document

logger = logging.getLogger(__name__)

RATE_WINDOW_SECONDS = 60
EVENT_FIELDS = {"subject_ref", "purpose", "action", "effective_at", "language", "notice_version", "jurisdiction"}
_LANGUAGE = re.compile(r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{1,8})*$")
_CODE = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, fields: dict | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields = fields or {}
        self.headers = headers or {}

    def response(self) -> JsonResponse:
        body = {"error": self.code, "message": self.message}
        if self.fields:
            body["fields"] = self.fields
        return _json(body, status=self.status, headers=self.headers)


def invalid(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid", f"{field}: {message}", fields={field: message})


def _json(data, *, status: int = 200, headers: dict | None = None) -> JsonResponse:
    response = JsonResponse(data, status=status, json_dumps_params={"ensure_ascii": False})
    response["Cache-Control"] = "no-store"  # an answer can change at the next withdrawal: never keep one
    for name, value in (headers or {}).items():
        response[name] = value
    return response


# --- Authentication, scope and rate limit -------------------------------------------------------------


def _bearer(request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _authenticate(request, *, scope: str) -> ApiKey:
    key = apikey_authenticate(_bearer(request))
    if key is None:
        raise ApiError(
            401,
            "unauthorized",
            "Send a valid, unrevoked API key as 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": 'Bearer realm="consent-api"'},
        )
    if scope == ApiKey.Scope.WRITE and key.scope != ApiKey.Scope.WRITE:
        raise ApiError(
            403,
            "insufficient_scope",
            "This key may only read; recording consents needs a key with the write scope.",
            headers={"WWW-Authenticate": 'Bearer realm="consent-api", error="insufficient_scope", scope="write"'},
        )
    return key


class _Budgets:
    """Per-key request budgets in fixed one-minute windows, shared by every server process through the cache.

    Each process adds up its own requests and reports them to the shared counter in steps of 1% of the
    key's limit (every request for limits under 100), reading back the total all processes reported. So a
    request costs a cache round trip only at each step, and a key can overshoot its limit by less than one
    step per server process; small limits are exact."""

    def __init__(self):
        self.lock = threading.Lock()
        self.windows: dict[tuple, list[int]] = {}  # (key, window) -> [not yet reported, shared total seen]

    def charge(self, key: ApiKey, cost: int, now: float) -> int | None:
        """Charge `cost`; the seconds until the next window when the key is over its limit, else None."""
        window = int(now // RATE_WINDOW_SECONDS)
        ident = (key.pk, key.prefix, window)
        step = max(1, key.rate_limit_per_minute // 100)
        with self.lock:
            if ident not in self.windows:
                self.windows = {k: v for k, v in self.windows.items() if k[2] >= window}
                self.windows[ident] = [0, 0]
            entry = self.windows[ident]
            entry[0] += cost
            report = entry[0] if entry[0] >= step else 0
            entry[0] -= report
        if report:
            try:
                total = _window_add(f"consents:api:rate:{key.pk}-{key.prefix}:{window}", report)
            except Exception:
                logger.warning("rate-limit cache unavailable; request of key %s let through", key.prefix, exc_info=True)
                return None
            with self.lock:
                entry[1] = max(entry[1], total)
        with self.lock:
            used = entry[1] + entry[0]
        if used > key.rate_limit_per_minute:
            return max(1, math.ceil((window + 1) * RATE_WINDOW_SECONDS - now))
        return None

    def clear(self) -> None:
        with self.lock:
            self.windows.clear()


BUDGETS = _Budgets()


def rate_limit_charge(key: ApiKey, cost: int = 1) -> None:
    """Charge `cost` units to the key's current one-minute window; raises a 429 ApiError once over its limit."""
    retry = BUDGETS.charge(key, cost, time.time())
    if retry is not None:
        raise ApiError(
            429,
            "rate_limited",
            f"This key may make {key.rate_limit_per_minute} requests (checks) a minute; retry in {retry} s.",
            headers={"Retry-After": str(retry)},
        )


def _window_add(cache_key: str, cost: int) -> int:
    """Add `cost` to a counter that lives a little longer than its window; returns the new total.

    On Redis one round trip (INCRBY and EXPIRE pipelined; the counter's key names its window, so renewing
    the expiry is harmless). Django's own `incr` would take three (add, exists, incrby) on every request."""
    timeout = RATE_WINDOW_SECONDS + 10
    backend = caches["default"]  # `cache` is a proxy: isinstance needs the backend itself
    if isinstance(backend, RedisCache):
        key = backend.make_and_validate_key(cache_key)
        pipe = backend._cache.get_client(key, write=True).pipeline(transaction=False)
        pipe.incrby(key, cost)
        pipe.expire(key, timeout)
        used, _ = pipe.execute()
        return int(used)
    cache.add(cache_key, 0, timeout=timeout)
    try:
        return cache.incr(cache_key, cost)
    except ValueError:  # the window expired between add and incr
        cache.set(cache_key, cost, timeout=timeout)
        return cost


def api_view(*methods: str, scope: str | None = ApiKey.Scope.READ):
    """A JSON endpoint: method check, bearer authentication and scope (unless `scope` is None: public),
    one unit of rate limit, and ApiError turned into its JSON response."""

    def decorate(view):
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            try:
                if request.method not in methods:
                    raise ApiError(
                        405,
                        "method_not_allowed",
                        f"Use {' or '.join(methods)}.",
                        headers={"Allow": ", ".join(methods)},
                    )
                if scope is not None:
                    request.api_key = _authenticate(request, scope=scope)
                    rate_limit_charge(request.api_key)
                return view(request, *args, **kwargs)
            except ApiError as error:
                return error.response()

        return wrapper

    return decorate


# --- Input ------------------------------------------------------------------------------------------


def _body(request) -> dict:
    """The request's JSON object. Bad bodies are the client's error (400, or 413 over API_MAX_BODY_BYTES) and
    are refused before anything is read from the database; see privacyops.jsonbody for what is refused."""
    limit = settings.API_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise invalid("body", "The Content-Length header is not a number.") from None
    if declared > limit:  # refused before the body is read at all
        raise ApiError(413, "too_large", f"The body is larger than {limit} bytes.")
    try:
        raw = request.body
    except RequestDataTooBig:
        raise ApiError(413, "too_large", f"The body is larger than {limit} bytes.") from None
    try:
        data = json_body_parse(raw or b"null", max_bytes=limit)
    except JsonBodyError as error:
        if error.status == 413:
            raise ApiError(413, "too_large", error.message) from None
        raise invalid("body", error.message) from None
    if not isinstance(data, dict):
        raise invalid("body", "The body must be a JSON object.")
    return data


def _only(data: dict, allowed: set[str], *, where: str = "") -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise invalid(f"{where}{unknown[0]}", f"Unknown field; the fields are {', '.join(sorted(allowed))}.")


def _text(data: dict, name: str, *, where: str = "", required: bool = True, max_length: int = 64) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise invalid(f"{where}{name}", "This field is required.")
        return None
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"{where}{name}", "Give a non-empty string.")
    if len(value) > max_length:
        raise invalid(f"{where}{name}", f"At most {max_length} characters.")
    return value.strip()


def parse_subject_ref(value: str, *, field: str = "subject_ref") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        raise invalid(field, "Not a subject_ref (a UUID such as 1b4e28ba-2fa1-11d2-883f-0016d3cca427).") from None


def _code(value: str, *, field: str = "purpose") -> str:
    if not _CODE.match(value):
        raise invalid(field, "Not a purpose code (letters, digits, '-' and '_').")
    return value


def _decision_body(subject_ref: uuid.UUID, purpose: str, decision) -> dict:
    return {"subject_ref": str(subject_ref), "purpose": purpose} | decision.as_dict()


def _not_found(error: Exception) -> ApiError:
    code = "unknown_subject" if isinstance(error, UnknownSubject) else "unknown_purpose"
    return ApiError(404, code, str(error))


# --- Endpoints --------------------------------------------------------------------------------------


@api_view("GET")
def purpose_check(request, subject_ref: str, code: str):
    """GET /api/v1/subjects/<subject_ref>/purposes/<code>: may we process this subject for this purpose?"""
    ref = parse_subject_ref(subject_ref)
    code = _code(code)
    try:
        decision = is_processing_allowed(ref, code)
    except (UnknownSubject, UnknownPurpose) as error:
        raise _not_found(error) from None
    return _json(_decision_body(ref, code, decision))


@api_view("POST")
def consent_checks(request):
    """POST /api/v1/consent-checks: up to BATCH_MAX questions in one request; unknown subjects and purposes are
    answered per item, malformed input fails the whole request."""
    data = _body(request)
    _only(data, {"checks"})
    checks = data.get("checks")
    if not isinstance(checks, list) or not checks:
        raise invalid("checks", "Give a non-empty list of {subject_ref, purpose} objects.")
    if len(checks) > BATCH_MAX:
        raise invalid("checks", f"At most {BATCH_MAX} checks per request.")
    questions: list[tuple[uuid.UUID, str]] = []
    for index, item in enumerate(checks):
        where = f"checks[{index}]."
        if not isinstance(item, dict):
            raise invalid(f"checks[{index}]", "Each check is an object {subject_ref, purpose}.")
        _only(item, {"subject_ref", "purpose"}, where=where)
        ref = parse_subject_ref(_text(item, "subject_ref", where=where), field=f"{where}subject_ref")
        code = _code(_text(item, "purpose", where=where), field=f"{where}purpose")
        questions.append((ref, code))
    if len(questions) > 1:
        rate_limit_charge(request.api_key, len(questions) - 1)  # the decorator charged the first
    results = []
    for (ref, code), answer in zip(questions, is_processing_allowed_many(questions), strict=True):
        if isinstance(answer, (UnknownSubject, UnknownPurpose)):
            error = _not_found(answer)
            results.append({"subject_ref": str(ref), "purpose": code, "error": error.code, "message": error.message})
        else:
            results.append(_decision_body(ref, code, answer))
    return _json({"results": results})


@api_view("POST", scope=ApiKey.Scope.WRITE)
def consent_events(request):
    """POST /api/v1/consent-events: record a consent the client collected (method API); returns the receipt."""
    data = _body(request)
    _only(data, EVENT_FIELDS)
    ref = parse_subject_ref(_text(data, "subject_ref"))
    code = _code(_text(data, "purpose"))
    action = _text(data, "action")
    if action not in EVENT_ACTIONS:
        raise invalid("action", f"Use one of {', '.join(EVENT_ACTIONS)}.")
    language = _text(data, "language", required=False, max_length=10) or "en"
    if not _LANGUAGE.match(language):
        raise invalid("language", "A language tag such as en or pt-BR.")
    effective_at = _moment(data.get("effective_at"))
    subject = User.objects.filter(subject_ref=ref).first()
    if subject is None:
        raise invalid("subject_ref", "No account has this subject_ref.")
    purpose = ConsentPurpose.objects.filter(code=code).first()
    if purpose is None:
        raise invalid("purpose", "No consent purpose has this code (consent is recorded per consent purpose).")
    notice = None
    notice_version = _text(data, "notice_version", required=False, max_length=40)
    if notice_version is not None:
        notice = ConsentNotice.objects.filter(purpose=purpose, version=notice_version, language=language).first()
        if notice is None:
            raise invalid("notice_version", f"No notice version {notice_version!r} in {language!r} for {code}.")
    jurisdiction = _text(data, "jurisdiction", required=False, max_length=16) or ""
    if jurisdiction and not Jurisdiction.objects.filter(code=jurisdiction).exists():
        raise invalid("jurisdiction", "Not a jurisdiction of the register (EU, UK, SG, ID, CN, US-CA, DEFAULT ...).")

    try:
        with transaction.atomic():
            event = consent_record(
                purpose=purpose,
                action=action,
                method=ConsentEvent.Method.API,
                subject=subject,
                notice=notice,
                jurisdiction=jurisdiction,
                language=language,
                effective_at=effective_at,
                actor_label=f"api:{request.api_key.name}",
            )
            receipt = receipt_for(event)
    except ValidationError as error:
        raise _from_validation(error) from None
    body = {
        "receipt_id": str(event.receipt_id),
        "event": {
            "subject_ref": str(ref),
            "purpose": purpose.code,
            "action": event.action,
            "method": event.method,
            "seq": event.seq,
            "effective_at": event.effective_at.astimezone(datetime.UTC).isoformat(),
            "recorded_at": event.recorded_at.astimezone(datetime.UTC).isoformat(),
            "notice_version": event.notice_version or None,
            "jurisdiction": event.jurisdiction,
        },
        "receipt": receipt,
    }
    return _json(body, status=201)


@api_view("GET", scope=None)
def openapi_json(request):
    """GET /api/v1/openapi.json: the OpenAPI 3.1 description of this API (public)."""
    return _json(openapi_document())


@csrf_exempt
def not_found(request, path: str = ""):
    """Any other path under /api/v1/: a JSON 404, not the HTML page meant for people."""
    return ApiError(404, "not_found", "No such endpoint; see /api/v1/openapi.json.").response()


def _moment(value) -> datetime.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid("effective_at", "An ISO 8601 date-time with a UTC offset, e.g. 2025-05-01T09:30:00Z.")
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise invalid("effective_at", "An ISO 8601 date-time with a UTC offset, e.g. 2025-05-01T09:30:00Z.") from None
    if moment.tzinfo is None:
        raise invalid("effective_at", "Give a UTC offset (Z or +hh:mm): a time without one is ambiguous.")
    return moment


def _from_validation(error: ValidationError) -> ApiError:
    if hasattr(error, "error_dict"):
        fields = {name: " ".join(messages) for name, messages in error.message_dict.items()}
    else:
        fields = {"body": " ".join(error.messages)}
    field, message = next(iter(fields.items()))
    return ApiError(400, "invalid", f"{field}: {message}", fields=fields)
