"""Access and portability packages (issue 5 §4, PM-IX-1, PM-IX-4): one ZIP of everything we hold on a subject,
built in bounded memory, stored encrypted, downloaded through single-use links.

The package:
    index.html               a readable overview (what each file is, what was left out and why, the processing)
    data/<app>/<model>.json  every registered model holding the subject's rows (a JSON array of objects) ...
    data/<app>/<model>.csv   ... and the same rows as CSV with a header line
    files/<app>/<model>/<pk>/<name>   the files the subject uploaded (chat attachments)
    schema.json              each column: its data category and meaning (from the registry), or why it was withheld
    processing.json          purposes and bases for the subject's jurisdiction, recipients, transfers, retention,
                             sources of the categories we hold on them, and their disclosures (PM-IV-5)
    manifest.json            SHA-256 and size of every other member, when it was generated, the request reference

Which rows: the registry decides (`Declaration.subject_q`): a subject path, the account itself, and rows
found by an identifier (support e-mails sent before signing up, the audit trail's subject_ref). A model
that cannot find a subject's rows (staff-only records) is not in the package.

A request without an account (someone who only wrote to support, whose request came through the public
form or was logged by staff; `NoAccount`): the rows with no account whose identifier equals the address
the request gives (`Declaration.identifier_q`, the same case-insensitive match as for an account's own
address; support e-mails), and the request's own record (the request, its timeline, links and packages).
Everything found by the account or by its subject_ref (consents, the audit trail, disclosures) has no row
for them. The package keeps the same tables as an account's, empty where there is nothing, and index.html
says why. Nothing is built before the request is verified (`require_verified`), and the package leaves
only through a link e-mailed to that same address when its holder asks for it (`download_link_send`).

Other people's data stays out (GDPR Art. 15(4)):
- a foreign key to an account other than the subject path names a person: it is written as "you" when it is
  the subject, "staff" otherwise (the assignee, who approved, who recorded a hold), never as an account id;
  the audit trail's and consent ledger's actor columns likewise ("you", "staff", "system", an API key's name);
- a field the registry marks `third_party=True` may describe other people. When the subject wrote it (their
  chat messages, support e-mails, feedback, what their request said: `SUBJECT_WRITTEN`) it is theirs and is
  included, as giving someone back their own words harms nobody; when staff wrote it (timeline messages,
  hold notes, disclosure notes) the column is withheld and schema.json and the overview say so and that the
  DPO reviews it on request, so nothing is silently missing;
- secrets (password hash, one-time codes, token digests) are withheld: a leaked package must not let
  anyone act as the subject.

Bounded memory: on PostgreSQL every member comes out of `COPY (SELECT ...) TO STDOUT`: CSV as COPY writes it,
JSON as one `row_to_json` per row (COPY in csv format with a delimiter and quote character that JSON text
cannot contain, so each line is the JSON verbatim), buffered a megabyte at a time into the ZIP member and its
SHA-256. On SQLite the ORM's iterator(chunk_size). Either way a result set is never held. All of it reads
one snapshot (a REPEATABLE READ transaction on PostgreSQL), so the CSV, the JSON and the counts agree.

The ZIP goes to a temporary file, is encrypted chunk by chunk (`requests.crypto`) into default storage, and
the plaintext is never stored. A package lives EXPORT_PACKAGE_DAYS; then the beat task deletes its file.

One builder at a time (the job's owned lease, `requests.jobs`): the build renews the lease at most every
REQUEST_JOB_HEARTBEAT_SECONDS, per table and per megabyte written (`_beat`; from inside the read-only
snapshot over a connection of its own), and while encrypting. Every write to the package's row (created,
its file's name, ready) happens in a transaction that renews the lease first, so a builder that lost the
lease (it paused longer than the lease and another worker took the job) gets `LeaseLost` and stops: it
deletes only its own scratch directory and the file it stored itself. Only the claim that holds the lease
removes what a dead claim left (packages still `building`, with the file name each recorded before
storing), before it creates its own; a worker that finds the lease live backs off without touching them.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import logging
import os
import secrets
import tempfile
import zipfile
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.files.storage import default_storage
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.db.models import Case, F, Value, When
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from privacyops.audit import audit_record
from privacyops.leases import LeaseLost
from privacyops.privacy import registry

from . import crypto, emails, jobs, services
from .disclosures import disclosures_for
from .models import DownloadLink, ExportPackage, RequestEvent, RightsRequest
from .timeline import request_event_record
from .verification import VerificationError, require_verified

logger = logging.getLogger(__name__)

MAX_DOWNLOADS = 5  # the database's own limit too (constraint export_package_at_most_5_downloads)
DEFLATE_LEVEL = 6  # zlib's default: the usual size/speed balance; bench/export.py compares at the same level
CHUNK_ROWS = 2000  # rows per fetch on SQLite
FLUSH_BYTES = 1024 * 1024  # COPY output gathered before it is hashed and compressed
DEFLATE_THREADS = 2  # the workers' machines have two cores
DEFLATE_PENDING = 4  # buffers being compressed at once, per member

# Third-party-marked fields the subject wrote themselves: theirs to have back (see the module docstring).
SUBJECT_WRITTEN = frozenset(
    {
        "chat.Conversation.title",
        "chat.Message.content",
        "chat.Attachment.file",
        "chat.Feedback.comment",
        "chat.Feedback.conversation_snapshot",
        "chat.SupportMessage.body",
        "requests.RightsRequest.details",
    }
)
SECRET_COLUMNS = frozenset({"password", "token", "token_sha256", "session_key", "session_data"})
NO_FILE_COPY = frozenset({"requests.ExportPackage.file"})  # older packages are listed, never nested

WITHHELD_THIRD_PARTY = (
    "Written by our staff and may name other people (GDPR Art. 15(4)); the Data Protection Officer reviews "
    "it and sends it to you on request."
)
WITHHELD_SIGN_IN = "A secret that would let someone sign in or act as you; it is in no copy we send."
SELF, STAFF, SYSTEM = "you", "staff", "system"


class ExportError(Exception):
    """The package cannot be built for this request (not verified, not an access or portability request)."""


class DownloadError(Exception):
    """A download link cannot be issued or used; the message can be shown to the subject."""


# --- What goes in ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoAccount:
    """The subject of a request without an account, known only by the request's contact address.

    It stands where an account stands in this module: `email` is what the account model's field of the
    same name would hold, so `Declaration.identifier_q` finds their rows as it finds an account's rows
    found by address; nothing else identifies them (no pk, no subject_ref)."""

    email: str
    rights_request: RightsRequest
    pk = None
    subject_ref = None


@dataclass(frozen=True)
class Column:
    name: str
    expression: Any
    kind: str  # the model field's type, for schema.json
    category: str | None
    meaning: str
    note: str = ""


@dataclass(frozen=True)
class Withheld:
    name: str
    category: str | None
    meaning: str
    reason: str


@dataclass
class Table:
    declaration: Any
    queryset: models.QuerySet
    columns: list[Column]
    withheld: list[Withheld]
    file_fields: list[str]
    rows: int = 0

    @property
    def label(self) -> str:
        return self.declaration.label

    @property
    def member(self) -> str:
        meta = self.declaration.model._meta
        return f"data/{meta.app_label}/{meta.model_name}"


def _user_label(attname: str, subject) -> Case:
    # Without an account (pk None) no account is "you": a filled one is staff.
    mine = [When(**{attname: subject.pk}, then=Value(SELF))] if subject.pk is not None else []
    return Case(
        *mine,
        When(**{f"{attname}__isnull": False}, then=Value(STAFF)),
        default=Value(None),
        output_field=models.CharField(),
    )


def _actor_expression(model, name: str, subject):
    """The actor columns of the audit trail and the consent ledger, which name staff by id or e-mail."""
    names = {f.name for f in model._meta.concrete_fields}
    if "actor_id" in names and not model._meta.get_field("actor_id").is_relation:
        mine = [When(actor_id=subject.pk, then=Value(SELF))] if subject.pk is not None else []
        return Case(
            *mine,
            When(actor_id__isnull=True, then=Value(SYSTEM)),
            default=Value(STAFF),
            output_field=models.CharField(),
        )
    if name == "actor_label":
        return Case(
            When(actor_label="", then=Value("")),
            When(actor_label__startswith="api:", then=F("actor_label")),  # a service's key name, not a person
            When(actor_label__iexact=subject.email or "\x00", then=Value(SELF)),
            default=Value(STAFF),
            output_field=models.CharField(),
        )
    return None


def _columns(declaration, subject) -> tuple[list[Column], list[Withheld], list[str]]:
    model = declaration.model
    user_model = get_user_model()
    columns, withheld, files = [], [], []
    for model_field in model._meta.concrete_fields:
        name = model_field.name
        spec = declaration.fields.get(name)
        category, meaning = (spec.category, spec.meaning) if spec else (None, "")
        label = f"{declaration.label}.{name}"
        if name in SECRET_COLUMNS:
            withheld.append(Withheld(name, category, meaning, WITHHELD_SIGN_IN))
            continue
        if spec is not None and spec.third_party and label not in SUBJECT_WRITTEN:
            withheld.append(Withheld(name, category, meaning, WITHHELD_THIRD_PARTY))
            continue
        kind = model_field.get_internal_type()
        note = ""
        if model_field.is_relation and model_field.related_model is user_model and name != declaration.subject_fk:
            expression, kind = _user_label(model_field.attname, subject), "Label"
            note = '"you" when it was you, "staff" for a member of our staff (their identity is left out)'
        elif name in ("actor_id", "actor_label") and (actor := _actor_expression(model, name, subject)) is not None:
            expression, kind = actor, "Label"
            note = '"you", "staff", "system", or the name of the service that recorded it'
        elif model_field.is_relation:
            expression = F(model_field.attname)
            note = f"the number of the related {model_field.related_model._meta.verbose_name}"
        else:
            expression = F(name)
        if isinstance(model_field, models.FileField) and label not in NO_FILE_COPY:
            files.append(name)
        columns.append(Column(name, expression, kind, category, meaning, note))
    return columns, withheld, files


def _request_lookup(declaration) -> str | None:
    """The lookup from the declaration's model to the rights request its subject path passes through ("pk"
    for the request itself, "request" for its timeline, "package__request" for a package's links), or None."""
    model, path = declaration.model, []
    for hop in (declaration.subject or "").split("__"):
        if model is RightsRequest:
            return "__".join(path) or "pk"
        model_field = model._meta.get_field(hop) if hop else None
        if model_field is None or not model_field.is_relation:
            return None
        model = model_field.related_model
        path.append(hop)
    return None


def _no_account_q(declaration, subject: NoAccount) -> models.Q | None:
    """A request without an account: the same models as for an account (so the package has the same
    tables), with the rows found by the address and the request's own record; none matches nothing."""
    if not declaration.personal or not (declaration.subject or declaration.is_account_model or declaration.identifier):
        return None
    q = declaration.identifier_q(getattr(subject, declaration.identifier, None)) if declaration.identifier else None
    lookup = _request_lookup(declaration)
    if lookup is not None:
        own = models.Q(**{lookup: subject.rights_request.pk})
        q = own if q is None else q | own
    # A condition that compiles (COPY needs SQL; an empty IN list would not) and matches no row.
    return q if q is not None else models.Q(pk__isnull=True)


def subject_tables(subject) -> list[Table]:
    """Every registered model that can find the subject's rows, with the columns the package shows.
    `subject` is an account, or a `NoAccount` for a request without one."""
    tables = []
    for declaration in registry.personal():
        condition = _no_account_q(declaration, subject) if isinstance(subject, NoAccount) else declaration.subject_q(subject)
        if condition is None:
            continue
        columns, withheld, files = _columns(declaration, subject)
        queryset = declaration.model._default_manager.filter(condition)
        tables.append(Table(declaration, queryset, columns, withheld, files))
    return tables


# --- Writing members ------------------------------------------------------------------------------------


class _ParallelDeflate:
    """A deflate compressor that spreads the work over threads, as pigz does: each buffer is compressed on its
    own, primed with the 32 KiB before it as the preset dictionary (what an inflater's window holds there,
    so the ratio barely changes) and ended with a sync flush (byte-aligned, not final); an empty final block
    ends the member. The result is one ordinary deflate stream. zlib releases the GIL, so on two cores the
    JSON and CSV of a table compress while the next rows arrive. zipfile calls `compress` and `flush` only,
    on the member's writer (`_ZipWriteFile._compressor`); at most DEFLATE_PENDING buffers are in flight."""

    def __init__(self, level: int, pool: ThreadPoolExecutor):
        self._level = level
        self._pool = pool
        self._pending: deque = deque()
        self._window = b""

    def _one(self, data: bytes, window: bytes) -> bytes:
        compressor = zlib.compressobj(self._level, zlib.DEFLATED, -zlib.MAX_WBITS, **({"zdict": window} if window else {}))
        return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)

    def compress(self, data) -> bytes:
        data = bytes(data)
        if not data:
            return b""
        self._pending.append(self._pool.submit(self._one, data, self._window))
        self._window = (self._window + data)[-32768:] if len(data) < 32768 else data[-32768:]
        done = []
        while self._pending and (self._pending[0].done() or len(self._pending) > DEFLATE_PENDING):
            done.append(self._pending.popleft().result())
        return b"".join(done)

    def flush(self) -> bytes:
        done = [future.result() for future in self._pending]
        self._pending.clear()
        done.append(zlib.compressobj(self._level, zlib.DEFLATED, -zlib.MAX_WBITS).flush())  # the final, empty block
        return b"".join(done)


_deflate_pool: ContextVar[ThreadPoolExecutor | None] = ContextVar("export_deflate_pool", default=None)
# The job being built (None for `package_write_plain`), and whether the build reads inside the read-only
# snapshot it opened itself (then the lease is renewed over another connection).
_building: ContextVar[jobs.JobClaim | None] = ContextVar("export_building", default=None)
_in_snapshot: ContextVar[bool] = ContextVar("export_in_snapshot", default=False)


def _beat() -> None:
    """Renew the build's lease when the heartbeat interval has passed; raises LeaseLost when it was lost."""
    claim = _building.get()
    if claim is not None:
        jobs.job_heartbeat(claim, separate_connection=_in_snapshot.get())


class _Member:
    """One ZIP member being written, hashed as it goes (compressed in parallel while a build's pool is set)."""

    def __init__(self, archive: zipfile.ZipFile, name: str, manifest: list[dict]):
        self.name = name
        self.sha = hashlib.sha256()
        self.size = 0
        self._fp = archive.open(name, "w", force_zip64=True)
        pool = _deflate_pool.get()
        if pool is not None and archive.compression == zipfile.ZIP_DEFLATED:
            self._fp._compressor = _ParallelDeflate(archive.compresslevel, pool)
        self._manifest = manifest

    def write(self, data) -> None:
        _beat()
        self.sha.update(data)
        self.size += len(data)
        self._fp.write(data)

    def close(self) -> None:
        self._fp.close()
        self._manifest.append({"name": self.name, "bytes": self.size, "sha256": self.sha.hexdigest()})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _aliased(table: Table) -> tuple[models.QuerySet, list[str]]:
    aliases = [f"c{i}" for i in range(len(table.columns))]
    expressions = {alias: col.expression for alias, col in zip(aliases, table.columns, strict=True)}
    queryset = table.queryset.order_by().values(**expressions)
    return queryset, aliases


def _copy_sql(table: Table) -> tuple[str, tuple]:
    """The table's SELECT with the package's column names, in primary-key order, for COPY."""
    queryset, aliases = _aliased(table)
    inner, params = queryset.query.sql_with_params()
    quote = connection.ops.quote_name
    pk_alias = aliases[[c.name for c in table.columns].index(table.declaration.model._meta.pk.name)]
    select = ", ".join(f"t.{alias} AS {quote(col.name)}" for alias, col in zip(aliases, table.columns, strict=True))
    # Names from the model's own fields (quoted) and the ORM's compiled SQL; values stay parameters.
    return f"SELECT {select} FROM ({inner}) t ORDER BY t.{pk_alias}", params  # noqa: S608


def _copy_into(member: _Member, statement: str, params, *, json_array: bool) -> int:
    """Stream one COPY into a member; returns the rows COPY reported."""
    buffer = bytearray()
    first = True
    if json_array:
        member.write(b"[")

    def flush():
        nonlocal first
        if not buffer:
            return
        if json_array:
            # One JSON value per line (JSON text has no raw newline): the newlines become the array's commas.
            member.write((b"\n" if first else b",\n") + bytes(buffer[:-1]).replace(b"\n", b",\n"))
            first = False
        else:
            member.write(buffer)
        buffer.clear()

    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        with cursor.copy(statement, params) as copy:
            for data in copy:
                buffer += data
                if len(buffer) >= FLUSH_BYTES:
                    flush()
        flush()
        rows = cursor.rowcount
    if json_array:
        member.write(b"]\n" if first else b"\n]\n")
    return rows


def _write_table_postgresql(archive, table: Table, manifest: list[dict]) -> None:
    select, params = _copy_sql(table)
    with _Member(archive, table.member + ".csv", manifest) as member:
        table.rows = _copy_into(member, f"COPY ({select}) TO STDOUT (FORMAT csv, HEADER)", params, json_array=False)
    # JSON text never holds the bytes 0x01 and 0x02 raw (they are escaped as \u0001), so COPY never quotes it.
    json_copy = f"COPY (SELECT row_to_json(x) FROM ({select}) x) TO STDOUT (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02')"  # noqa: S608
    with _Member(archive, table.member + ".json", manifest) as member:
        _copy_into(member, json_copy, params, json_array=True)


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "t" if value else "f"  # as PostgreSQL's COPY writes them
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (dict, list)):
        return json.dumps(value, cls=DjangoJSONEncoder)
    return value


def _iter_rows(table: Table) -> Iterator[tuple]:
    queryset, aliases = _aliased(table)
    queryset = queryset.order_by("pk").values_list(*aliases)
    yield from queryset.iterator(chunk_size=CHUNK_ROWS)


def _write_table_orm(archive, table: Table, manifest: list[dict]) -> None:
    names = [c.name for c in table.columns]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    with _Member(archive, table.member + ".csv", manifest) as member:
        writer.writerow(names)
        rows = 0
        for row in _iter_rows(table):
            writer.writerow([_csv_value(v) for v in row])
            rows += 1
            if text.tell() >= FLUSH_BYTES:
                member.write(text.getvalue().encode())
                text.seek(0)
                text.truncate()
        member.write(text.getvalue().encode())
    table.rows = rows
    encoder = DjangoJSONEncoder(ensure_ascii=False, separators=(",", ":"))
    parts: list[str] = []
    size = 0
    with _Member(archive, table.member + ".json", manifest) as member:
        member.write(b"[")
        separator = "\n"
        for row in _iter_rows(table):
            parts.append(separator + encoder.encode(dict(zip(names, row, strict=True))))
            separator = ",\n"
            size += len(parts[-1])
            if size >= FLUSH_BYTES:
                member.write("".join(parts).encode())
                parts, size = [], 0
        parts.append("\n]\n" if rows else "]\n")
        member.write("".join(parts).encode())


def _write_files(archive, table: Table, manifest: list[dict]) -> tuple[int, list[str]]:
    """Copy the subject's uploaded files into files/<app>/<model>/<pk>/<name>, streamed from storage."""
    written, missing = 0, []
    meta = table.declaration.model._meta
    for name in table.file_fields:
        pairs = table.queryset.order_by("pk").exclude(**{name: ""}).values_list("pk", name)
        for pk, path in pairs.iterator(chunk_size=CHUNK_ROWS):
            member_name = f"files/{meta.app_label}/{meta.model_name}/{pk}/{os.path.basename(path)}"
            try:
                source = default_storage.open(path, "rb")
            except (FileNotFoundError, OSError):
                missing.append(member_name)
                continue
            with source, _Member(archive, member_name, manifest) as member:
                while chunk := source.read(FLUSH_BYTES):
                    member.write(chunk)
            written += 1
    return written, missing


# --- Describing it --------------------------------------------------------------------------------------


def _category_names(codes) -> dict[str, str]:
    from inventory.models import DataCategory

    return dict(DataCategory.objects.filter(code__in=codes).values_list("code", "name"))


def _schema(tables: list[Table], names: dict[str, str]) -> dict:
    return {
        "formats": {
            "csv": "UTF-8, comma-separated, a header line; empty means no value; t/f are true/false; times in UTC.",
            "json": "UTF-8, one array of objects per file, one object per row; times in ISO 8601, UTC.",
        },
        "labels": {SELF: "you", STAFF: "a member of our staff", SYSTEM: "the system itself (a scheduled job)"},
        "tables": [
            {
                "files": [table.member + ".json", table.member + ".csv"],
                "model": table.label,
                "name": str(table.declaration.model._meta.verbose_name_plural),
                "category": table.declaration.category,
                "category_name": names.get(table.declaration.category, ""),
                "rows": table.rows,
                "fields": [
                    {
                        "name": col.name,
                        "type": col.kind,
                        "personal": col.category is not None,
                        "category": col.category,
                        "category_name": names.get(col.category or "", ""),
                        "meaning": col.meaning or _not_personal_meaning(table, col.name),
                        **({"note": col.note} if col.note else {}),
                    }
                    for col in table.columns
                ],
                "withheld": [
                    {"name": w.name, "category": w.category, "meaning": w.meaning, "reason": w.reason} for w in table.withheld
                ],
            }
            for table in tables
        ],
    }


def _not_personal_meaning(table: Table, name: str) -> str:
    model_field = table.declaration.model._meta.get_field(name)
    text = str(getattr(model_field, "verbose_name", name))
    help_text = str(getattr(model_field, "help_text", "") or "")
    return f"{text}: {help_text}" if help_text else text


def _disclosures(subject) -> list[dict]:
    if subject.subject_ref is None:  # disclosures name a subject by subject_ref: none without an account
        return []
    rows = disclosures_for(subject_ref=subject.subject_ref)
    return [
        {
            "authority": d.authority,
            "legal_ground": d.legal_ground,
            "reference": d.reference,
            "categories": sorted(c.code for c in d.categories.all()),
            "disclosed_at": d.disclosed_at.isoformat(),
        }
        for d in rows
    ]


def processing_for(subject, categories: set[str], jurisdiction=None) -> dict:
    """The register's processing information that applies to this subject (PM-IX-1): only the purposes that
    use a category we hold on them, with the lawful bases of their jurisdiction (the override rule of
    `inventory.selectors`), and the recipients, transfers, retention and sources of those categories."""
    from inventory.models import CollectionSource
    from inventory.ropa import record_of_processing
    from inventory.selectors import jurisdiction_for_subject

    record = record_of_processing()
    if jurisdiction is None:
        try:
            jurisdiction = jurisdiction_for_subject(subject=subject)
        except Exception:  # a register without DEFAULT: list the general bases
            jurisdiction = None
    code = getattr(jurisdiction, "code", None)
    purposes = []
    for purpose in record["purposes"]:
        used = [c for c in purpose["categories"] if c["code"] in categories]
        if not used:
            continue
        specific = [b for b in purpose["bases"] if code and b["jurisdiction"] == code]
        bases = specific or [b for b in purpose["bases"] if b["jurisdiction"] is None]
        purposes.append(
            {
                "code": purpose["code"],
                "name": purpose["name"],
                "description": purpose["description"],
                "lawful_bases": [
                    {k: b[k] for k in ("code", "name", "legal_reference", "jurisdiction", "condition")} for b in bases
                ],
                "categories": [c["code"] for c in used],
                "recipients": purpose["recipients"],
            }
        )
    data_categories = [c for c in record["data_categories"] if c["code"] in categories]
    source_codes = sorted({s for c in data_categories for s in c["sources"]})
    sources = [
        {"code": s.code, "name": s.name, "description": s.description}
        for s in CollectionSource.objects.filter(code__in=source_codes).order_by("code")
    ]
    return {
        "controller": record["controller"],
        "jurisdiction": code,
        "purposes": purposes,
        "recipients": sorted({r["code"]: r for p in purposes for r in p["recipients"]}.values(), key=lambda r: r["code"]),
        "transfers": [
            {k: t[k] for k in ("code", "from_country", "to_country", "recipient_name", "data_categories", "mechanism_label")}
            for t in record["transfers"]
            if categories & set(t["data_categories"])
        ],
        "retention": [r for r in record["retention"] if r["category"] in categories],
        "categories": [
            {"code": c["code"], "name": c["name"], "description": c["description"], "sources": c["sources"]}
            for c in data_categories
        ],
        "sources": sources,
        "disclosures": _disclosures(subject),
    }


def _json_member(archive, name: str, value, manifest: list[dict]) -> None:
    with _Member(archive, name, manifest) as member:
        member.write(json.dumps(value, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False).encode() + b"\n")


# --- The package ----------------------------------------------------------------------------------------


@dataclass
class BuildResult:
    files: int = 0
    rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    members: list[dict] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)


@contextmanager
def _snapshot():
    """One consistent read of everything the package holds (see the module docstring). Inside a caller's
    transaction the caller's isolation stands (it can no longer be changed)."""
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            token = _in_snapshot.set(True)
            try:
                yield
            finally:
                _in_snapshot.reset(token)
    else:
        yield


def _build(archive: zipfile.ZipFile, *, subject, rights_request=None) -> BuildResult:
    with ThreadPoolExecutor(DEFLATE_THREADS, thread_name_prefix="deflate") as pool:
        token = _deflate_pool.set(pool)
        try:
            return _build_members(archive, subject=subject, rights_request=rights_request)
        finally:
            _deflate_pool.reset(token)


def _build_members(archive: zipfile.ZipFile, *, subject, rights_request=None) -> BuildResult:
    result = BuildResult()
    manifest = result.members
    generated_at = timezone.now()
    with _snapshot():
        tables = subject_tables(subject)
        writer = _write_table_postgresql if connection.vendor == "postgresql" else _write_table_orm
        for table in tables:
            _beat()
            writer(archive, table, manifest)
            result.counts[table.label] = table.rows
            result.rows += table.rows
            if table.file_fields:
                _, missing = _write_files(archive, table, manifest)
                result.missing_files += missing
        categories = {t.declaration.category for t in tables if t.rows} | {
            c.category for t in tables if t.rows for c in t.columns if c.category
        }
        names = _category_names({t.declaration.category for t in tables} | {c.category for t in tables for c in t.columns})
        schema = _schema(tables, names)
        processing = processing_for(subject, categories, getattr(rights_request, "jurisdiction", None))
    reference = rights_request.reference if rights_request is not None else None
    _json_member(archive, "schema.json", schema, manifest)
    _json_member(archive, "processing.json", processing, manifest)
    index = render_to_string(
        "requests/export/index.html",
        {
            "reference": reference,
            "generated_at": generated_at,
            "subject": subject,
            "no_account": isinstance(subject, NoAccount),
            "tables": tables,
            "schema": schema,
            "processing": processing,
            "missing_files": result.missing_files,
            "controller": emails.controller_contact(),
        },
    )
    with _Member(archive, "index.html", manifest) as member:
        member.write(index.encode())
    listed = list(manifest)
    manifest_doc = {
        "request": reference,
        "generated_at": generated_at.isoformat(),
        "algorithm": "sha256",
        "rows": result.counts,
        "files": listed,
    }
    with _Member(archive, "manifest.json", []) as member:
        member.write(json.dumps(manifest_doc, indent=2).encode() + b"\n")
    result.files = len(listed) + 1
    return result


def package_write_plain(*, subject, out, rights_request=None) -> dict:
    """An unencrypted package to a path or a binary file object (`manage.py dsr export`, postal delivery).
    The caller audits. Returns {"files", "rows", "counts", "missing_files"}."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=DEFLATE_LEVEL) as archive:
        result = _build(archive, subject=subject, rights_request=rights_request)
    return {"files": result.files, "rows": result.rows, "counts": result.counts, "missing_files": result.missing_files}


def _require_verified(rights_request: RightsRequest) -> None:
    """No data leaves before verification (PM-IX-9): the one gate, `verification.require_verified`."""
    try:
        require_verified(rights_request)
    except VerificationError as error:
        raise ExportError(str(error)) from None


def _portal_url(rights_request: RightsRequest) -> str:
    """Where the requester downloads: their request's page when signed in, else its signed status page."""
    if rights_request.subject_id is None:
        from .verification import status_token

        return emails.site_url(reverse("requests:status", kwargs={"token": status_token(rights_request)}))
    return emails.site_url(reverse("requests:detail", kwargs={"reference": rights_request.reference}))


def export_package_work(*, request_id: int) -> ExportPackage | None:
    """The `exports` queue's job: build, encrypt and store the package of an approved access or portability
    request, tell the subject, close the request (PM-IX-1, PM-IX-4). Returns None when the job is not
    claimable (a live lease: another worker builds it; this one backs off) or the lease was lost mid-way.
    A worker that stopped leaves the job to `jobs_resume_stalled`; the next claim starts the package over
    (a half-built ZIP is worth nothing), after removing what the stopped claim left."""
    claim = jobs.job_claim(request_id)
    if claim is None:
        return None
    rights_request = claim.rights_request
    package = None
    stored: list[str] = []  # the file this claim put in storage, the only one it may delete on LeaseLost
    try:
        _require_verified(rights_request)
        subject = rights_request.subject
        if subject is None:
            # Verified by a link to this address (or by staff): what we hold under it, and the request itself.
            subject = NoAccount(email=rights_request.contact_email, rights_request=rights_request)
        if rights_request.right not in jobs.EXPORT_RIGHTS:
            raise ExportError(f"Request {rights_request.reference} is not an access or portability request.")
        package = _package_start(claim)
        token = _building.set(claim)
        try:
            result, encrypted = _build_encrypted(package, claim=claim, subject=subject, stored=stored)
        finally:
            _building.reset(token)
        _package_ready(claim, package, result, encrypted)
    except LeaseLost:
        logger.warning("Export of request %s: this worker lost the job's lease; stopping without writing", request_id)
        for name in stored:
            default_storage.delete(name)
        return None
    except Exception as error:
        logger.exception("export package of request %s failed", request_id)
        with transaction.atomic():
            if jobs.job_fail(claim, error=str(error)[:2000]):
                if package is not None:
                    ExportPackage.objects.filter(pk=package.pk).update(status=ExportPackage.Status.FAILED)
                request_event_record(
                    rights_request=rights_request,
                    action="rights_request.package_failed",
                    kind=RequestEvent.Kind.JOB,
                    message="Export package failed.",
                    details={"error": type(error).__name__},
                )
        if isinstance(error, ExportError):
            return package
        raise
    return package


def _package_start(claim: jobs.JobClaim) -> ExportPackage:
    """Under the lease (renewed first, so the request's row is locked till commit): remove what earlier,
    dead claims left (packages still building and the files they recorded), then create this claim's."""
    rights_request = claim.rights_request
    now = timezone.now()
    with transaction.atomic():
        jobs.job_progress(claim, done=0, total=1)
        stale = list(rights_request.packages.filter(status=ExportPackage.Status.BUILDING).values_list("pk", "file"))
        if stale:
            logger.info("Export of request %s: removing %s package(s) a stopped claim left", rights_request.pk, len(stale))
            ExportPackage.objects.filter(pk__in=[pk for pk, _ in stale]).delete()
            for name in (name for _, name in stale if name):
                transaction.on_commit(lambda name=name: default_storage.delete(name), robust=True)
        package = ExportPackage.objects.create(
            request=rights_request, created_at=now, expires_at=now + datetime.timedelta(days=settings.EXPORT_PACKAGE_DAYS)
        )
    return package


def _build_encrypted(package: ExportPackage, *, claim: jobs.JobClaim, subject, stored: list[str]) -> tuple[BuildResult, dict]:
    rights_request = claim.rights_request
    with tempfile.TemporaryDirectory(prefix="export-") as scratch:
        plain = Path(scratch) / "package.zip"
        with zipfile.ZipFile(plain, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=DEFLATE_LEVEL) as archive:
            result = _build(archive, subject=subject, rights_request=rights_request)
        sealed = Path(scratch) / "package.bin"
        with open(sealed, "wb") as out:
            encrypted = crypto.encrypt_file(plain, out, on_chunk=_beat)
        plain.unlink()  # the plaintext ZIP goes as soon as its encrypted copy exists
        name = package.file.field.generate_filename(
            package, f"{rights_request.reference}-{package.pk}-{secrets.token_hex(8)}.zip.enc"
        )
        # The name is on the row before the file is in storage: should this worker die in between, the
        # next claim knows which file the dead claim's package would have had.
        with transaction.atomic():
            jobs.job_progress(claim, done=0)
            ExportPackage.objects.filter(pk=package.pk).update(file=name)
        with open(sealed, "rb") as source:
            package.file.name = default_storage.save(name, File(source), max_length=package.file.field.max_length)
        stored.append(package.file.name)
    return result, encrypted


def _package_ready(claim: jobs.JobClaim, package: ExportPackage, result: BuildResult, encrypted: dict) -> None:
    rights_request = claim.rights_request
    outcome = (
        f"We prepared a copy of your data: {result.rows} records in {len(result.counts)} tables "
        f"({result.files} files). Download it from your request's page until "
        f"{timezone.localtime(package.expires_at):%d %B %Y}."
    )
    with transaction.atomic():
        jobs.job_progress(claim, done=1, total=1)  # first: still ours, and the request locked till commit
        package.status = ExportPackage.Status.READY
        package.size_bytes = encrypted["plain_bytes"]
        package.sha256 = encrypted["plain_sha256"]
        package.files = result.files
        package.rows = result.rows
        package.ready_at = timezone.now()
        package.save()
        summary = {"package": package.pk, "files": result.files, "rows": result.rows, "tables": len(result.counts)}
        request_event_record(
            rights_request=rights_request,
            action="rights_request.package_ready",
            kind=RequestEvent.Kind.JOB,
            message="Export package ready.",
            details=summary,
            audit_details={**summary, "sha256": package.sha256},
        )
        emails.request_email_send(
            rights_request=rights_request,
            template="package_ready",
            expires_at=package.expires_at,
            url=_portal_url(rights_request),
            max_downloads=MAX_DOWNLOADS,
            for_account=rights_request.subject_id is not None,
            link_minutes=settings.EXPORT_LINK_MINUTES,
        )
        jobs.job_finish(claim, result={**summary, "counts": result.counts})
        try:
            with transaction.atomic():
                services.rights_request_close(rights_request=rights_request, actor=None, outcome=outcome)
        except services.RequestActionError as error:
            # Someone put the request on hold meanwhile: the package stays ready; staff close it.
            # On the timeline only: staff must act, and the package's audit event is already written.
            request_event_record(
                rights_request=rights_request,
                action="rights_request.package_not_closed",
                message=f"Package ready; not closed automatically: {error.message}",
                audited=False,
            )


def latest_package(rights_request: RightsRequest) -> ExportPackage | None:
    return rights_request.packages.order_by("-created_at", "-pk").first()


# --- Downloads ------------------------------------------------------------------------------------------


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _refusal(package: ExportPackage, subject, now) -> str | None:
    """Why this package cannot be downloaded by `subject` (an account; None: the requester without an
    account, through a link e-mailed to the request's address), or None."""
    owner = package.request.subject_id
    if owner != getattr(subject, "pk", None) or (subject is not None and owner is None):
        return "This package is not yours."
    try:
        _require_verified(package.request)
    except ExportError as error:  # packages exist only for verified requests; checked again as data leaves
        return str(error)
    if package.status != ExportPackage.Status.READY or package.expires_at <= now:
        return "This package has expired or is not ready; you can make a new request."
    if package.downloads >= MAX_DOWNLOADS:
        return f"This package was downloaded {MAX_DOWNLOADS} times, the most we allow; you can make a new request."
    return None


def _link_create(package: ExportPackage, subject, now, *, by_email: bool) -> tuple[DownloadLink, str]:
    """Under the package's lock: refuse or create a link, retiring the package's unused ones."""
    refusal = _refusal(package, subject, now)
    if refusal:
        raise DownloadError(refusal)
    package.links.filter(used_at__isnull=True, expires_at__gt=now).update(expires_at=now)
    token = secrets.token_urlsafe(32)
    link = DownloadLink.objects.create(
        package=package,
        token_sha256=_token_digest(token),
        created_at=now,
        expires_at=now + datetime.timedelta(minutes=settings.EXPORT_LINK_MINUTES),
    )
    audit_record(
        actor=None,
        action="rights_request.download_link_issued",
        target=package,
        subject=package.request.subject_ref,
        details={"reference": package.request.reference, "package": package.pk, "by_email": by_email},
    )
    return link, token


def download_link_issue(*, package: ExportPackage, subject) -> str:
    """A new single-use link to the package for its subject (after re-authentication, which the view checks).
    Earlier unused links of the package stop working: one live link at a time. A request without an account
    gets its links by e-mail only (`download_link_send`)."""
    if subject is None:
        raise DownloadError("This package is sent by e-mail link only: ask for one on the request's status page.")
    now = timezone.now()
    with transaction.atomic():
        package = ExportPackage.objects.select_for_update().select_related("request").get(pk=package.pk)
        _, token = _link_create(package, subject, now, by_email=False)
    return token


def download_link_send(*, package: ExportPackage) -> DownloadLink:
    """For a request without an account: a new single-use link, valid EXPORT_LINK_MINUTES, e-mailed to the
    request's contact address (the address its rows were found by) and nowhere else. The token is in the
    e-mail only: whoever downloads has shown, minutes before, that they read that mailbox, as an account
    holder does by re-authenticating. Refused like `download_link_issue` (also for a package with an
    account, whose holder signs in); earlier unused links stop working."""
    now = timezone.now()
    with transaction.atomic():
        package = ExportPackage.objects.select_for_update().select_related("request").get(pk=package.pk)
        link, token = _link_create(package, None, now, by_email=True)
        rights_request = package.request
        emails.request_email_send(
            rights_request=rights_request,
            template="download_link",
            details={"package": package.pk},
            url=emails.site_url(reverse("requests:public_download", kwargs={"token": token})),
            link_expires_at=link.expires_at,
            link_minutes=settings.EXPORT_LINK_MINUTES,
            downloads_left=MAX_DOWNLOADS - package.downloads,
        )
    return link


LINK_SPENT = "This download link is used up or has expired; ask for a new one on your request's page."


def download_link_package(*, token: str) -> ExportPackage:
    """The package behind a link that would still work for a requester without an account, without using it
    (the page that asks to confirm: mail scanners open links). Raises DownloadError otherwise."""
    link = DownloadLink.objects.select_related("package__request").filter(token_sha256=_token_digest(token or "")).first()
    if link is None or link.used_at is not None or link.expires_at <= timezone.now():
        raise DownloadError(LINK_SPENT)
    refusal = _refusal(link.package, None, timezone.now())
    if refusal:
        raise DownloadError(refusal)
    return link.package


def download_open(*, token: str, subject) -> tuple[ExportPackage, Iterator[bytes]]:
    """Use a link: in one transaction, before the first byte, the link is used up, the package's download
    count goes up (the database refuses a sixth), an audit event "personal data downloaded" and the
    "your data was downloaded" e-mail are recorded. Returns the package and its decrypted bytes.
    `subject` None: a request without an account, whose links only go out by e-mail (`download_link_send`);
    it never opens an account's package, nor an account a package without one."""
    now = timezone.now()
    with transaction.atomic():
        link = DownloadLink.objects.select_for_update().filter(token_sha256=_token_digest(token or "")).first()
        if link is None or link.used_at is not None or link.expires_at <= now:
            raise DownloadError(LINK_SPENT)
        package = ExportPackage.objects.select_for_update().select_related("request").get(pk=link.package_id)
        refusal = _refusal(package, subject, now)
        if refusal:
            raise DownloadError(refusal)
        try:
            source = package.file.open("rb")
        except (FileNotFoundError, OSError, ValueError):
            raise DownloadError("The package's file is missing; the Data Protection Officer has been told.") from None
        link.used_at = now
        link.save(update_fields=["used_at"])
        ExportPackage.objects.filter(pk=package.pk).update(downloads=F("downloads") + 1)
        package.downloads += 1
        rights_request = package.request
        audit_record(
            actor=subject,
            action="personal_data.downloaded",
            target=package,
            subject=rights_request.subject_ref,
            details={"reference": rights_request.reference, "package": package.pk, "download": package.downloads},
        )
        emails.request_email_send(
            rights_request=rights_request,
            template="downloaded",
            downloaded_at=now,
            downloads=package.downloads,
            downloads_left=MAX_DOWNLOADS - package.downloads,
            for_account=rights_request.subject_id is not None,
        )
    return package, _stream(source)


def _stream(source) -> Iterator[bytes]:
    try:
        yield from crypto.decrypt_chunks(source)
    finally:
        source.close()


def export_packages_expire(*, now: datetime.datetime | None = None) -> int:
    """Delete the files of packages past their expiry; the rows stay as the record (status expired,
    deleted_at). Idempotent: an expired package is not touched again. Returns how many expired now."""
    now = now or timezone.now()
    expired = 0
    due = ExportPackage.objects.filter(expires_at__lte=now, deleted_at__isnull=True).values_list("pk", flat=True)
    for pk in list(due.iterator(chunk_size=500)):
        with transaction.atomic():
            package = (
                ExportPackage.objects.select_for_update().select_related("request").filter(pk=pk, deleted_at__isnull=True).first()
            )
            if package is None:
                continue
            name = package.file.name
            package.status = ExportPackage.Status.EXPIRED
            package.deleted_at = now
            package.file = ""
            package.save(update_fields=["status", "deleted_at", "file"])
            audit_record(
                actor=None,
                action="rights_request.package_expired",
                target=package,
                subject=package.request.subject_ref,
                details={"reference": package.request.reference, "package": package.pk},
            )
            if name:
                # After commit: a rollback must not leave a row pointing at a deleted file.
                transaction.on_commit(lambda name=name: default_storage.delete(name), robust=True)
        expired += 1
    return expired


__all__ = [
    "DownloadError",
    "ExportError",
    "NoAccount",
    "download_link_issue",
    "download_link_package",
    "download_link_send",
    "download_open",
    "export_package_work",
    "export_packages_expire",
    "latest_package",
    "package_write_plain",
    "processing_for",
    "subject_tables",
]
