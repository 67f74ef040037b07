"""API keys of the consent API's service clients.

A token is `secrets.token_urlsafe(32)`: 32 random bytes, shown once at creation and never stored. The
database keeps its SHA-256 (unique, indexed) and the first characters, so staff can tell keys apart in the
admin and in the audit trail without holding anything that opens the API.

A fast hash is right here, unlike for passwords: the token is random, so there is no dictionary to try, and
a brute force over 256 bits is out of reach whatever the hash costs. Authentication looks the hash up in an
index; that needs no constant-time comparison, because the only thing a timing difference could reveal is
how much of a stored *hash* a guess's hash shares, and turning that into a token means inverting SHA-256.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import secrets
import threading
import time

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from privacyops.audit import audit_record

from ..models import ApiKey

TOKEN_BYTES = 32
PREFIX_LENGTH = 8
# How long a process trusts a key it authenticated before it reads the key again (revocations elsewhere).
AUTH_MEMO_SECONDS = 5
# `last_used_at` is written at most this often per key, so a busy client does not write on every request.
LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)
# token_urlsafe(32) is 43 characters; anything much longer is not one of ours and is not even hashed.
MAX_TOKEN_LENGTH = 128
# What authentication loads of a key (the rest stays deferred).
KEY_FIELDS = ("id", "name", "prefix", "scope", "rate_limit_per_minute", "last_used_at")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# The largest value the column (a PositiveIntegerField) holds on every database we run on; beyond it the
# insert fails in PostgreSQL instead of the form saying so.
RATE_LIMIT_MAX = 2**31 - 1


def apikey_create(*, actor, name: str, scope: str, rate_limit_per_minute: int | None = None) -> tuple[ApiKey, str]:
    """Create a key for a service client; returns the key and its token, which is shown once and never again."""
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the key a name that says which service uses it."})
    if scope not in ApiKey.Scope.values:
        raise ValidationError({"scope": f"Unknown scope {scope!r}; use one of {', '.join(ApiKey.Scope.values)}."})
    if rate_limit_per_minute is not None and not 1 <= rate_limit_per_minute <= RATE_LIMIT_MAX:
        raise ValidationError({"rate_limit_per_minute": f"The rate limit is from 1 to {RATE_LIMIT_MAX:,} requests a minute."})
    token = secrets.token_urlsafe(TOKEN_BYTES)
    fields = {"rate_limit_per_minute": rate_limit_per_minute} if rate_limit_per_minute is not None else {}
    try:
        with transaction.atomic():
            key = ApiKey.objects.create(
                name=name,
                scope=scope,
                prefix=token[:PREFIX_LENGTH],
                token_sha256=token_digest(token),
                created_by=actor,
                **fields,
            )
            audit_record(
                actor=actor,
                action="consent.api_key_created",
                target=key,
                details={"name": name, "scope": scope, "prefix": key.prefix, "rate_limit_per_minute": key.rate_limit_per_minute},
            )
    except IntegrityError:
        if ApiKey.objects.filter(name=name).exists():
            raise ValidationError({"name": f"A key named {name!r} exists already."}) from None
        raise
    return key, token


def apikey_revoke(*, actor, key: ApiKey) -> ApiKey:
    """Revoke a key: every request with its token is refused from the moment this commits. Revoking a revoked
    key changes nothing and records nothing."""
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        if key.revoked_at is not None:
            return key
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        # Forget it now (this process, from here on) and again at commit (a request that read the key just
        # before the commit may have remembered it meanwhile).
        digest = key.token_sha256
        RECENT.forget(digest)
        transaction.on_commit(lambda: RECENT.forget(digest))
        audit_record(
            actor=actor,
            action="consent.api_key_revoked",
            target=key,
            details={"name": key.name, "prefix": key.prefix},
        )
    return key


@functools.cache
def _key_sql() -> str:
    meta, quote = ApiKey._meta, connection.ops.quote_name
    columns = ", ".join(quote(meta.get_field(name).column) for name in KEY_FIELDS)
    token, revoked = quote(meta.get_field("token_sha256").column), quote(meta.get_field("revoked_at").column)
    return f"SELECT {columns} FROM {quote(meta.db_table)} WHERE {token} = %s AND {revoked} IS NULL"  # noqa: S608 -- model names only


def _live_key(digest: str) -> ApiKey | None:
    """The unrevoked key with this token hash. Every API request runs this: plain SQL, because building the
    ORM query costs several times what the indexed lookup does."""
    with connection.cursor() as cursor:
        cursor.execute(_key_sql(), [digest])
        row = cursor.fetchone()
    if row is None:
        return None
    values = dict(zip(KEY_FIELDS, row, strict=True))
    values["last_used_at"] = _moment(values["last_used_at"])
    return ApiKey.from_db(connection.alias, list(KEY_FIELDS), list(values.values()))


def _moment(value) -> datetime.datetime | None:
    """A datetime as the backend returns it (SQLite: naive UTC text), aware."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and timezone.is_naive(value):
        value = timezone.make_aware(value, datetime.UTC)
    return value


class _Recent:
    """Keys this process authenticated in the last AUTH_MEMO_SECONDS, by token hash: every API request
    authenticates, and this saves it a database round trip. Only live keys are kept (an unknown token is
    looked up every time); revoking clears this process's memo when the revocation commits, and other
    processes forget the key within AUTH_MEMO_SECONDS."""

    def __init__(self, size: int):
        self.size = size
        self.entries: dict[str, tuple[tuple, float]] = {}
        self.lock = threading.Lock()

    def get(self, digest: str) -> tuple | None:
        with self.lock:
            entry = self.entries.get(digest)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    def put(self, digest: str, values: tuple) -> None:
        with self.lock:
            if len(self.entries) >= self.size:
                self.entries.clear()  # a handful of keys in practice; a flood of them just starts over
            self.entries[digest] = (values, time.monotonic() + AUTH_MEMO_SECONDS)

    def forget(self, digest: str) -> None:
        with self.lock:
            self.entries.pop(digest, None)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


RECENT = _Recent(size=1000)


def apikey_authenticate(token: str | None) -> ApiKey | None:
    """The live key a bearer token belongs to, or None (unknown, malformed or revoked).

    Revocation is immediate in the revoking process and takes at most AUTH_MEMO_SECONDS elsewhere."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    digest = token_digest(token)
    values = RECENT.get(digest)
    if values is not None:
        key = ApiKey.from_db(connection.alias, list(KEY_FIELDS), list(values))
    else:
        key = _live_key(digest)
        if key is None:
            return None
    now = timezone.now()
    if key.last_used_at is None or key.last_used_at <= now - LAST_USED_RESOLUTION:
        # Conditional, so concurrent requests in the same minute write once between them.
        stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_RESOLUTION)
        ApiKey.objects.filter(stale, pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
        values = None
    if values is None:
        RECENT.put(digest, tuple(getattr(key, name) for name in KEY_FIELDS))
    return key
