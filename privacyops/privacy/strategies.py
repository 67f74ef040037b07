"""Erasure strategies as values and database expressions: what anonymising and erasing write to a row.

Design:
- `anonymise_updates(declaration)` returns the keyword arguments of ONE `QuerySet.update()` that anonymises
  every row of a batch at once. Each value is a constant or a database expression over the row's own
  column (an IP's network, a timestamp's day, a region's country), so a batch of any size is one UPDATE
  statement and no row is ever loaded into Python. The same expressions run on PostgreSQL (inet functions)
  and SQLite (a deterministic SQL function registered on each connection).
- `erase_updates(declaration, subject=...)` is the per-subject form used by erasure: the same values, except
  that PSEUDONYMISE writes the subject's keyed pseudonym, and fields whose strategy is DELETE or RETAIN are
  left to the caller (a DELETE field means the row goes; RETAIN means it stays as it is).

Invariants:
- Anonymised is not pseudonymised. An anonymised row keeps no value from which the subject can be
  identified: every personal field is deleted, nulled, generalised or redacted, and the row's link to the
  account (its direct subject foreign key) is cut. A pseudonym is derived from the subject (a keyed hash
  of their reference), so whoever holds the key, or sees the same pseudonym elsewhere, can link the row
  back: pseudonymised data is still personal data (the form PM-II-5's de-identified datasets use), and
  anonymise therefore never writes one — a PSEUDONYMISE field is cleared like a NULL one.
- A model can be anonymised in place only if it points at the account by a nullable foreign key of its own
  and keeps no field under a legal duty (`Declaration.anonymisable`); otherwise `anonymise_updates`
  refuses rather than produce a row that still leads to the person.
- Generalising is deterministic and depends only on the value itself (never on the subject), so running
  an anonymise batch twice gives the same row.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress

from django.conf import settings
from django.db import NotSupportedError, models
from django.db.backends.signals import connection_created
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Now, Substr, TruncDay

from .registry import Declaration, Erase, RegistryError

REDACTED = "[redacted]"
IPV4_PREFIX = 24
IPV6_PREFIX = 48
_SQLITE_IP_FUNCTION = "privacyops_generalise_ip"


# --- Values ---------------------------------------------------------------------------------------


def generalise_ip(value: str | None) -> str | None:
    """The network an address belongs to, as an address: /24 for IPv4, /48 for IPv6 (`10.1.2.3` -> `10.1.2.0`).

    Unparseable text becomes None: a value we cannot generalise is not kept.
    """
    if value in (None, ""):
        return None
    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = IPV4_PREFIX if address.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def pseudonym(subject_ref, *, scope: str = "") -> str:
    """A keyed HMAC-SHA256 of the subject's reference (hex): the same for one subject and scope, always.

    `scope` separates uses (one dataset's pseudonyms cannot be joined with another's). Without
    settings.PSEUDONYM_KEY nobody can compute it from the reference, but with the key anyone can: the
    result is pseudonymised, still personal data.
    """
    key = settings.PSEUDONYM_KEY
    if not key:
        raise RegistryError("settings.PSEUDONYM_KEY is empty: pseudonyms need a secret key from the environment.")
    message = f"{scope}\x00{subject_ref}".encode()
    return hmac.new(str(key).encode(), message, hashlib.sha256).hexdigest()


# --- Database expressions -------------------------------------------------------------------------


def _register_sqlite_functions(raw_connection) -> None:
    raw_connection.create_function(_SQLITE_IP_FUNCTION, 1, generalise_ip, deterministic=True)


def _on_connection_created(sender, connection, **kwargs):
    if connection.vendor == "sqlite":
        _register_sqlite_functions(connection.connection)


connection_created.connect(_on_connection_created, dispatch_uid="privacyops.privacy.strategies.sqlite_functions")


class GeneraliseIP(models.Func):
    """An IP address column reduced to its /24 (IPv4) or /48 (IPv6) network address, inside the database."""

    output_field = models.GenericIPAddressField()

    def as_postgresql(self, compiler, connection, **extra_context):
        column, params = compiler.compile(self.source_expressions[0])
        sql = (
            f"(CASE WHEN family({column}) = 4 "
            f"THEN set_masklen(network(set_masklen({column}, {IPV4_PREFIX}))::inet, 32) "
            f"ELSE set_masklen(network(set_masklen({column}, {IPV6_PREFIX}))::inet, 128) END)"
        )
        return sql, (*params, *params, *params)

    def as_sqlite(self, compiler, connection, **extra_context):
        # The connection_created hook registers the function; this covers a connection opened before it.
        connection.ensure_connection()
        _register_sqlite_functions(connection.connection)
        column, params = compiler.compile(self.source_expressions[0])
        return f"{_SQLITE_IP_FUNCTION}({column})", params

    def as_sql(self, compiler, connection, **extra_context):
        # Only the two databases the project supports have the SQL; anything else must fail loudly rather
        # than leave the full address in a row that is called anonymised.
        raise NotSupportedError(f"Generalising IP addresses in the database is not available on {connection.vendor}.")


# --- Per-field values -----------------------------------------------------------------------------


def _empty(field: models.Field):
    """What "no value" is for a column: NULL where allowed, else its default, else the empty string."""
    if field.null:
        return None
    if field.has_default():
        default = field.get_default()
        if default in (None, "", [], {}):
            return default
    if isinstance(field, models.CharField | models.TextField | models.FileField):
        return ""
    if isinstance(field, models.JSONField):
        return {}
    raise RegistryError(
        f"{field.model._meta.label}.{field.name} cannot be cleared: it is not nullable and has no empty value. "
        "Make it nullable or choose another strategy."
    )


def _redacted(name: str, field: models.Field):
    """A fixed marker in place of text; an empty value stays empty (there was nothing to hide)."""
    if not isinstance(field, models.CharField | models.TextField):
        return _empty(field)
    marker = REDACTED[: field.max_length] if getattr(field, "max_length", None) else REDACTED
    empty = Q(**{name: ""})
    if field.null:
        empty |= Q(**{f"{name}__isnull": True})
    return Case(When(empty, then=F(name)), default=Value(marker), output_field=field)


def _generalised(name: str, field: models.Field, erase: Erase):
    if erase == Erase.GENERALISE_IP:
        if not isinstance(field, models.GenericIPAddressField):
            raise RegistryError(f"{field.model._meta.label}.{name}: GENERALISE_IP needs an IP address field.")
        return GeneraliseIP(F(name))
    if erase == Erase.GENERALISE_DAY:
        if isinstance(field, models.DateTimeField):
            return TruncDay(F(name), tzinfo=datetime.UTC, output_field=field)
        if isinstance(field, models.DateField):
            return F(name)  # already a day
        raise RegistryError(f"{field.model._meta.label}.{name}: GENERALISE_DAY needs a date or date-time field.")
    if erase == Erase.GENERALISE_COUNTRY:
        if not isinstance(field, models.CharField):
            raise RegistryError(f"{field.model._meta.label}.{name}: GENERALISE_COUNTRY needs a text field.")
        # ISO 3166-2 "US-CA" -> "US"; a country code stays as it is.
        return Substr(F(name), 1, 2, output_field=field)
    raise AssertionError(erase)


def _anonymised_value(name: str, field: models.Field, erase: Erase):
    if erase in (Erase.DELETE, Erase.NULL, Erase.PSEUDONYMISE):
        return _empty(field)
    if erase == Erase.REDACT:
        return _redacted(name, field)
    if erase in (Erase.GENERALISE_IP, Erase.GENERALISE_DAY, Erase.GENERALISE_COUNTRY):
        return _generalised(name, field, erase)
    raise RegistryError(f"{field.model._meta.label}.{name} is kept under a legal duty (RETAIN); it cannot be anonymised.")


def _has_field(model, name: str) -> bool:
    try:
        model._meta.get_field(name)
    except Exception:  # FieldDoesNotExist
        return False
    return True


def anonymise_updates(declaration: Declaration) -> dict:
    """The kwargs of one `QuerySet.update()` that anonymises a batch of rows (PM-VI-2, POLICY-MAP I).

    Each personal field gets the anonymising form of its strategy (DELETE, NULL and PSEUDONYMISE clear
    it; REDACT writes a marker; GENERALISE_* keep the network, the day, the country), the direct subject
    foreign key becomes NULL, and `anonymised_at` (when the model has it) is stamped with the database's now.
    Raises RegistryError for a model that cannot be anonymised in place (see Declaration.anonymisable).
    """
    if not declaration.personal:
        raise RegistryError(f"{declaration.label} holds no personal data; there is nothing to anonymise.")
    if not declaration.anonymisable:
        raise RegistryError(
            f"{declaration.label} cannot be anonymised in place: only rows with a nullable foreign key of their own "
            "to the account and no field kept under a legal duty can be; delete them instead."
        )
    meta = declaration.model._meta
    updates: dict = {}
    for name, spec in declaration.fields.items():
        field = meta.get_field(name)
        updates[field.attname if field.is_relation else name] = _anonymised_value(name, field, spec.erase)
    updates[declaration.subject_fk] = None
    if _has_field(declaration.model, "anonymised_at"):
        updates["anonymised_at"] = Now()
    return updates


def erase_updates(declaration: Declaration, *, subject) -> dict:
    """The kwargs of one `QuerySet.update()` that erases one subject's rows of a model that keeps its rows.

    `subject` is the account (or its subject_ref). PSEUDONYMISE writes the subject's pseudonym (scoped to
    the model and field, so two columns never share one); DELETE and RETAIN fields are not in the result
    (a DELETE field means the caller deletes the row, see `Declaration.erasure_deletes_row`; RETAIN stays).
    When the model points at the account by a nullable key, the link is cut; when nothing pseudonymised
    remains, the row is also stamped `anonymised_at`.
    """
    if not declaration.personal:
        return {}
    subject_ref = getattr(subject, "subject_ref", subject)
    meta = declaration.model._meta
    updates: dict = {}
    pseudonymised = False
    for name, spec in declaration.fields.items():
        if spec.erase in (Erase.DELETE, Erase.RETAIN):
            continue
        field = meta.get_field(name)
        key = field.attname if field.is_relation else name
        if spec.erase == Erase.PSEUDONYMISE:
            value = pseudonym(subject_ref, scope=f"{declaration.label}.{name}")
            updates[key] = value[: field.max_length] if getattr(field, "max_length", None) else value
            pseudonymised = True
        else:
            updates[key] = _anonymised_value(name, field, spec.erase)
    if declaration.subject_is_direct and meta.get_field(declaration.subject_fk).null:
        updates[declaration.subject_fk] = None
        retained = any(f.erase == Erase.RETAIN for f in declaration.fields.values())
        if not pseudonymised and not retained and _has_field(declaration.model, "anonymised_at"):
            updates["anonymised_at"] = Now()
    return updates
