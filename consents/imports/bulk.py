"""Bulk append of historical consent events, under exactly the ledger's rules (issue 4 §7).

`consent_events_append` is `consents.ledger.consent_record` for many rows at once. What it keeps, and why:

- Validation first, writing second. Every row is checked (account, purpose, action, date, language,
  jurisdiction, notice version, the ledger's own refusals) before anything is written, and every bad row
  is reported with its line; one bad row and nothing is written. The checks need a handful of queries per
  thousand rows (accounts are read in chunks), never one per row.
- The same chain as the ledger. Per account, the new events are appended after the chain's head in the
  order of their effective time (file order breaks ties), with `seq = length + 1 …`, `prev_hash` = the
  previous hash and `hash = ConsentEvent.compute_hash(...)` -- the one canonical form, so an imported chain
  verifies exactly like one written click by click. Nothing already in the ledger is touched.
- The same locks. The affected accounts' `ConsentChain` rows are created if missing and locked
  (SELECT ... FOR UPDATE) in ascending subject_ref order, in chunks; two imports, or an import and the
  banner, therefore never wait on each other in a cycle. The import locks only account chains, never a
  visitor's, so the ledger's "visitor before account" order is kept. Every writer of an account's
  `ConsentState` (consent_record, a linked visitor's event, visitor_link) holds that account's chain lock,
  so under the chain locks the states are ours to read and write.
- The same state rule. The state is the event with the greatest (effective_at, id) per account and
  purpose, linked visitors included. The current state row already accounts for everything before the
  import (linked visitors too), so the new state is the greater of that row and the best imported event:
  an old imported event never overrides a newer existing one.
- The same cache rule: each affected chain's `version` is bumped in the transaction, so no cached decision
  computed before the import can be read after it.
- One audit event for the whole import (action `consent.imported`): the file's name, format, SHA-256 and
  counts. Not one per row, unlike `consent_record`: the audit trail is a single global hash chain behind
  one lock, and a million rows would hold every other auditable action in the system for the length of
  the import and multiply its size for no gain -- the per-event proof is the consent ledger itself, and
  every imported event carries the file's SHA-256 in its `instruction`, which ties it to this audit event.
  A file whose SHA-256 was imported before is refused, so an accidental second upload adds nothing.

The notice of an imported event is the notice version the row names (in the row's language, else in
English), or else the purpose's current notice (`consents.ledger.notice_current`); the policy version is the
one in force at the effective time; the jurisdiction is the row's or the account's, as for
`consent_record`. The method is always `import`.

`consents.imports.file_import` applies the same rules in SQL for large files on PostgreSQL; its messages and
`MESSAGES` here are the same text, so both paths report a bad line in the same words.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from consents.models import GENESIS_HASH, ConsentChain, ConsentEvent, ConsentNotice, ConsentPurpose, ConsentState
from policies.models import PolicyVersion
from privacyops.audit import audit_record

Action = ConsentEvent.Action

IMPORT_ACTION = "consent.imported"
COLUMNS = ("subject_ref", "purpose", "action", "effective_at", "language", "jurisdiction", "notice_version")
REQUIRED_COLUMNS = ("subject_ref", "purpose", "action", "effective_at")
IMPORTABLE_ACTIONS = (Action.GIVEN.value, Action.REFUSED.value, Action.WITHDRAWN.value)
DEFAULT_LANGUAGE = "en"
EARLIEST_YEAR = 1900
BATCH_SIZE = 1000
# Subject refs per IN (...) list: well under SQLite's 32766 bound variables and PostgreSQL's 65535.
CHUNK = 5000

# The one grammar for an effective time, shared with the SQL path: a date, or a date and a time with
# optional seconds, fraction (up to microseconds) and UTC offset. No offset means UTC.
MOMENT_PATTERN = (
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,6}))?)?(Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?$"
)
UUID_PATTERN = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
LANGUAGE_PATTERN = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$"
LANGUAGE_MAX = 10
WHITESPACE = " \t\r\n\f\v"  # stripped from every cell (the SQL path strips the same characters)

_MOMENT = re.compile(MOMENT_PATTERN)
_UUID = re.compile(UUID_PATTERN)
_LANGUAGE = re.compile(LANGUAGE_PATTERN)

MESSAGES = {
    "required": "is required",
    "subject_format": "is not a subject reference (a UUID such as 6f1c2a3e-0b4d-4e8f-9a7b-1c2d3e4f5a6b)",
    "subject_unknown": "no account has this subject_ref",
    "purpose_unknown": "no consent purpose has this code",
    "action_unknown": "must be one of given, refused, withdrawn",
    "action_expired": "expired is written by the lifetime check, not imported: leave the row out",
    "necessary": "the purpose is strictly necessary: consent to it cannot be refused or withdrawn",
    "inactive": "the purpose is no longer offered: consent to it cannot be given",
    "moment_format": "is not an ISO 8601 date or date and time, e.g. 2024-03-01T09:30:00Z",
    "moment_early": f"is before {EARLIEST_YEAR}: not a plausible date for a consent",
    "moment_future": "is in the future",
    "language_format": f"is not a language tag such as en or pt-BR (at most {LANGUAGE_MAX} characters)",
    "jurisdiction_unknown": "is not a jurisdiction of the register (e.g. EU, UK, SG, US-CA, DEFAULT)",
    "notice_unknown": "the purpose has no notice with this version",
}


@dataclass(frozen=True, order=True)
class RowError:
    """A problem with one cell (`column`) of one line of the file; line 1 is the header, 0 the whole file."""

    line: int
    column: str
    message: str

    def __str__(self) -> str:
        where = "file" if self.line == 0 else f"line {self.line}"
        return f"{where}, {self.column}: {self.message}" if self.column else f"{where}: {self.message}"


class ImportInvalid(Exception):
    """The rows cannot be imported; nothing was written. `errors` lists every problem found, in line order."""

    def __init__(self, errors: list[RowError]):
        self.errors = sorted(errors)
        super().__init__(f"{len(self.errors)} problem(s); first: {self.errors[0]}" if self.errors else "invalid import")


@dataclass(frozen=True)
class ImportSource:
    """Where the rows came from: it goes into the audit event and every event's `instruction`."""

    name: str
    sha256: str
    file_format: str = "csv"
    channel: str = "command"  # "admin" or "command"

    @classmethod
    def for_bytes(cls, data: bytes, *, name: str, file_format: str, channel: str) -> ImportSource:
        return cls(name=name, sha256=hashlib.sha256(data).hexdigest(), file_format=file_format, channel=channel)

    @classmethod
    def for_path(cls, path, *, channel: str = "command") -> ImportSource:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        name = Path(path).name
        file_format = Path(name).suffix.lstrip(".").lower() or "csv"
        return cls(name=name, sha256=digest.hexdigest(), file_format=file_format, channel=channel)

    @property
    def instruction(self) -> str:
        return f"import sha256:{self.sha256}"


@dataclass(slots=True)
class PreparedRow:
    """One validated row, ready to become an event."""

    line: int
    subject_ref: uuid.UUID
    purpose: ConsentPurpose
    action: str
    effective_at: datetime.datetime
    language: str
    jurisdiction: str
    notice: ConsentNotice | None
    policy: PolicyVersion | None


@dataclass
class ImportResult:
    """What an import wrote (the audit event's details hold the same counts)."""

    rows: int = 0
    events: int = 0
    subjects: int = 0
    chains_created: int = 0
    states_changed: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    purposes: dict[str, int] = field(default_factory=dict)
    effective_from: datetime.datetime | None = None
    effective_to: datetime.datetime | None = None
    audit_event_id: int | None = None

    def details(self, source: ImportSource) -> dict:
        return {
            "file": source.name,
            "format": source.file_format,
            "channel": source.channel,
            "sha256": source.sha256,
            "rows": self.rows,
            "events": self.events,
            "subjects": self.subjects,
            "chains_created": self.chains_created,
            "states_changed": self.states_changed,
            "actions": dict(sorted(self.actions.items())),
            "purposes": dict(sorted(self.purposes.items())),
            "effective_from": self.effective_from.isoformat() if self.effective_from else None,
            "effective_to": self.effective_to.isoformat() if self.effective_to else None,
        }


# --- Cells -------------------------------------------------------------------------------------------


def cell_text(value) -> str:
    """A cell as text: CSV gives strings, spreadsheets give numbers, dates and None."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return str(value).strip(WHITESPACE)


def parse_moment(value) -> datetime.datetime:
    """An effective time from a cell; raises ValueError with a key of MESSAGES.

    A spreadsheet's date cell arrives as a naive datetime (or a date) and means UTC, like a text without
    an offset; the SQL path (`consents.imports.file_import`) applies the same grammar and ranges."""
    if isinstance(value, datetime.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    elif isinstance(value, datetime.date):
        moment = datetime.datetime(value.year, value.month, value.day, tzinfo=datetime.UTC)
    else:
        match = _MOMENT.fullmatch(cell_text(value))
        if not match:
            raise ValueError("moment_format")
        year, month, day, hour, minute, second, fraction, offset = match.groups()
        tz = datetime.UTC
        if offset and offset != "Z":
            sign = -1 if offset[0] == "-" else 1
            digits = offset[1:].replace(":", "")
            hours, minutes = int(digits[:2]), int(digits[2:] or 0)
            if hours > 23 or minutes > 59:
                raise ValueError("moment_format")
            tz = datetime.timezone(sign * datetime.timedelta(hours=hours, minutes=minutes))
        try:
            moment = datetime.datetime(
                int(year),
                int(month),
                int(day),
                int(hour or 0),
                int(minute or 0),
                int(second or 0),
                int((fraction or "").ljust(6, "0")),
                tzinfo=tz,
            )
        except ValueError:
            raise ValueError("moment_format") from None
    try:
        moment = moment.astimezone(datetime.UTC)
    except OverflowError:  # an offset pushes year 1 or 9999 out of range: far too early, or in the future
        raise ValueError("moment_early" if moment.year < EARLIEST_YEAR else "moment_future") from None
    if moment.year < EARLIEST_YEAR:
        raise ValueError("moment_early")
    return moment


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- Validation --------------------------------------------------------------------------------------


class RowValidator:
    """Checks rows against the database with a few bulk reads, then row by row in memory.

    Build it with every subject_ref and purpose code the rows will name (`for_rows`, or `load` from the
    admin's dataset), then `clean(row, line=)` each row: it returns a PreparedRow or raises ImportInvalid
    with that row's errors.
    """

    def __init__(self, *, subject_refs: Iterable, purpose_codes: Iterable[str], now: datetime.datetime | None = None):
        from inventory.models import Jurisdiction

        self.now = now or timezone.now()
        self.latest = self.now + settings.CONSENT_CLOCK_SKEW
        codes = {c for c in purpose_codes if c}
        self.purposes = {p.code: p for p in ConsentPurpose.objects.filter(code__in=codes)}
        refs = sorted({r for r in (_as_uuid(v) for v in subject_refs) if r is not None})
        self.accounts: dict[uuid.UUID, tuple[str, str]] = {}
        from accounts.models import User

        for chunk in _chunks(refs):
            accounts = User.objects.filter(subject_ref__in=chunk).values_list("subject_ref", "country", "region")
            self.accounts.update((ref, (country, region)) for ref, country, region in accounts)
        self.jurisdictions = set(Jurisdiction.objects.values_list("code", flat=True))
        self._jurisdiction_of_place: dict[tuple[str, str], str] = {}
        self.notices: dict[int, list[ConsentNotice]] = {}
        for notice in ConsentNotice.objects.filter(purpose__in=list(self.purposes.values())).order_by("-created_at", "-id"):
            self.notices.setdefault(notice.purpose_id, []).append(notice)
        self.policies = list(
            PolicyVersion.objects.filter(published_at__isnull=False).order_by("-effective_at").only("id", "label", "effective_at")
        )

    @classmethod
    def for_rows(cls, rows: list[Mapping], **kwargs) -> RowValidator:
        return cls(
            subject_refs=(cell_text(r.get("subject_ref")) for r in rows),
            purpose_codes=(cell_text(r.get("purpose")) for r in rows),
            **kwargs,
        )

    def jurisdiction_of(self, subject_ref: uuid.UUID) -> str:
        """The account's jurisdiction, as consent_record derives it; one lookup per (country, region)."""
        place = self.accounts[subject_ref]
        if place not in self._jurisdiction_of_place:
            self._jurisdiction_of_place[place] = jurisdiction_code_for(*place)
        return self._jurisdiction_of_place[place]

    def notice_for(self, purpose: ConsentPurpose, *, version: str, language: str) -> ConsentNotice | bool | None:
        """The notice for a row: the named version (row language, else English), or the current one.

        False when a named version does not exist."""
        notices = self.notices.get(purpose.pk, [])
        if version:
            for lang in (language, DEFAULT_LANGUAGE):
                for notice in notices:
                    if notice.version == version and notice.language == lang:
                        return notice
            return False
        # As consents.ledger.notice_current: the latest in the language, else the latest in English.
        for lang in (language, DEFAULT_LANGUAGE):
            for notice in notices:
                if notice.language == lang:
                    return notice
        return None

    def policy_at(self, moment: datetime.datetime) -> PolicyVersion | None:
        """As consents.ledger.policy_in_force: the latest published version in effect at `moment`."""
        for policy in self.policies:
            if policy.effective_at <= moment:
                return policy
        return None

    def clean(self, row: Mapping, *, line: int) -> PreparedRow:
        errors: list[RowError] = []

        def fail(column, key):
            errors.append(RowError(line, column, MESSAGES[key]))

        values = {column: cell_text(row.get(column)) for column in COLUMNS}
        for column in REQUIRED_COLUMNS:
            if not values[column]:
                fail(column, "required")

        subject_ref = None
        if values["subject_ref"]:
            subject_ref = _as_uuid(values["subject_ref"])
            if subject_ref is None:
                fail("subject_ref", "subject_format")
            elif subject_ref not in self.accounts:
                fail("subject_ref", "subject_unknown")

        purpose = None
        if values["purpose"]:
            purpose = self.purposes.get(values["purpose"])
            if purpose is None:
                fail("purpose", "purpose_unknown")

        action = values["action"]
        if action:
            if action == Action.EXPIRED:
                fail("action", "action_expired")
            elif action not in IMPORTABLE_ACTIONS:
                fail("action", "action_unknown")
            elif purpose is not None and purpose.is_necessary and action != Action.GIVEN:
                fail("action", "necessary")
            elif purpose is not None and action == Action.GIVEN and not purpose.is_active:
                fail("action", "inactive")

        effective_at = None
        if values["effective_at"]:
            try:
                effective_at = parse_moment(row.get("effective_at"))
            except ValueError as e:
                fail("effective_at", str(e))
            else:
                if effective_at > self.latest:
                    fail("effective_at", "moment_future")
                    effective_at = None

        language = values["language"] or DEFAULT_LANGUAGE
        if not language_ok(language):
            fail("language", "language_format")

        jurisdiction = values["jurisdiction"]
        if jurisdiction and jurisdiction not in self.jurisdictions:
            fail("jurisdiction", "jurisdiction_unknown")

        notice = None
        if purpose is not None:
            notice = self.notice_for(purpose, version=values["notice_version"], language=language)
            if notice is False:
                fail("notice_version", "notice_unknown")

        if errors:
            raise ImportInvalid(errors)
        return PreparedRow(
            line=line,
            subject_ref=subject_ref,
            purpose=purpose,
            action=action,
            effective_at=effective_at,
            language=language,
            jurisdiction=jurisdiction or self.jurisdiction_of(subject_ref),
            notice=notice,
            policy=self.policy_at(effective_at),
        )


def moment_shape_ok(text: str) -> bool:
    """Whether a text has the form of MOMENT_PATTERN (calendar ranges are checked apart)."""
    return _MOMENT.fullmatch(text) is not None


def language_ok(language: str) -> bool:
    return len(language) <= LANGUAGE_MAX and _LANGUAGE.fullmatch(language) is not None


def _as_uuid(value) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    text = cell_text(value)
    return uuid.UUID(text) if _UUID.fullmatch(text) else None


def jurisdiction_code_for(country: str, region: str) -> str:
    """An account's jurisdiction code from its country and region, as consent_record derives it (DEFAULT
    when the register has none)."""
    from inventory.models import Jurisdiction
    from inventory.selectors import jurisdiction_for

    try:
        return jurisdiction_for(country=country, region=region).code
    except Jurisdiction.DoesNotExist:
        return Jurisdiction.DEFAULT


def consent_rows_prepare(rows: Iterable[Mapping], *, validator: RowValidator | None = None) -> list[PreparedRow]:
    """Validate every row; return them prepared, or raise ImportInvalid listing every problem.

    A row's line is its "line" key when present, else its position in the file counting the header as
    line 1 (so the first row is line 2, as a spreadsheet or an editor numbers it)."""
    rows = list(rows)
    if not rows:
        raise ImportInvalid([RowError(0, "", "the file has no rows")])
    validator = validator or RowValidator.for_rows(rows)
    prepared: list[PreparedRow] = []
    errors: list[RowError] = []
    for position, row in enumerate(rows, start=2):
        try:
            prepared.append(validator.clean(row, line=int(row.get("line") or position)))
        except ImportInvalid as e:
            errors.extend(e.errors)
    if errors:
        raise ImportInvalid(errors)
    return prepared


def import_previous(*, sha256: str):
    """The audit event of an earlier import of the same file (same SHA-256), or None."""
    from privacyops.models import AuditEvent

    return AuditEvent.objects.filter(action=IMPORT_ACTION, details__sha256=sha256).order_by("id").first()


def source_check(source: ImportSource) -> None:
    """Refuse a file that was already imported: its rows are in the ledger once already."""
    previous = import_previous(sha256=source.sha256)
    if previous is not None:
        when = timezone.localtime(previous.occurred_at).strftime("%Y-%m-%d %H:%M")
        message = f"this file (SHA-256 {source.sha256[:12]}…) was already imported on {when}, audit event #{previous.pk}"
        raise ImportInvalid([RowError(0, "", message)])


def consent_events_append(rows: Iterable[Mapping], *, actor, source: ImportSource, batch_size: int = BATCH_SIZE) -> ImportResult:
    """PM-0-2: append historical consent events for accounts, all or none, through the ledger's rules.

    `rows` are mappings with the columns of COLUMNS (text, or spreadsheet values); see the module
    docstring for the rules. Raises ImportInvalid (nothing written) when any row is bad.
    """
    source_check(source)
    return consent_events_append_prepared(consent_rows_prepare(rows), actor=actor, source=source, batch_size=batch_size)


def consent_events_append_prepared(
    prepared: list[PreparedRow], *, actor, source: ImportSource, batch_size: int = BATCH_SIZE
) -> ImportResult:
    """The writing half of `consent_events_append`, for rows already validated (the admin validates them
    row by row to show the errors in its preview). One transaction; see the module docstring."""
    if not prepared:
        raise ImportInvalid([RowError(0, "", "the file has no rows")])
    now = timezone.now()
    actor_label = actor.get_username() if actor is not None else ""
    instruction = source.instruction
    result = ImportResult(rows=len(prepared))
    by_subject: dict[uuid.UUID, list[PreparedRow]] = {}
    for row in prepared:
        by_subject.setdefault(row.subject_ref, []).append(row)
    refs = sorted(by_subject)

    with transaction.atomic():
        chains, result.chains_created = _chains_lock(refs, batch_size=batch_size)
        best: dict[tuple[uuid.UUID, int], tuple[datetime.datetime, int, str]] = {}
        pending: list[ConsentEvent] = []

        def flush():
            ConsentEvent.objects.bulk_create(pending, batch_size=batch_size)
            _ids_ensure(pending)
            for event in pending:
                key = (event.subject_ref, event.purpose_id)
                candidate = (event.effective_at, event.pk, event.action)
                if key not in best or candidate[:2] > best[key][:2]:
                    best[key] = candidate
            pending.clear()

        actions: Counter = Counter()
        purposes: Counter = Counter()
        for ref in refs:
            chain = chains[ref]
            head, seq = chain.head_hash or GENESIS_HASH, chain.length
            for row in sorted(by_subject[ref], key=lambda r: (r.effective_at, r.line)):
                seq += 1
                event = ConsentEvent(
                    chain_id=chain.pk,
                    seq=seq,
                    subject_ref=ref,
                    purpose_id=row.purpose.pk,
                    action=row.action,
                    method=ConsentEvent.Method.IMPORT,
                    notice_id=row.notice.pk if row.notice else None,
                    notice_version=row.notice.version if row.notice else "",
                    notice_sha256=row.notice.sha256 if row.notice else "",
                    policy_version_id=row.policy.pk if row.policy else None,
                    policy_label=row.policy.label if row.policy else "",
                    jurisdiction=row.jurisdiction,
                    language=row.language,
                    effective_at=row.effective_at,
                    recorded_at=now,
                    actor_label=actor_label,
                    instruction=instruction,
                    prev_hash=head,
                )
                event.hash = head = event.compute_hash(purpose_code=row.purpose.code)
                pending.append(event)
                actions[row.action] += 1
                purposes[row.purpose.code] += 1
                if len(pending) >= batch_size:
                    flush()
            chain.head_hash, chain.length = head, seq
            chain.version += 1
            chain.updated_at = now
        if pending:
            flush()
        _rows_update(list(chains.values()), ["head_hash", "length", "version", "updated_at"], batch_size=batch_size)
        result.states_changed = _states_apply(best, now=now, batch_size=batch_size)
        result.events = len(prepared)
        result.subjects = len(refs)
        result.actions = dict(actions)
        result.purposes = dict(purposes)
        result.effective_from = min(r.effective_at for r in prepared)
        result.effective_to = max(r.effective_at for r in prepared)
        event = audit_record(
            actor=actor,
            action=IMPORT_ACTION,
            target=(ConsentEvent._meta.label_lower, ""),
            details=result.details(source),
        )
        result.audit_event_id = event.pk
    return result


def _chains_lock(refs: list[uuid.UUID], *, batch_size: int) -> tuple[dict[uuid.UUID, ConsentChain], int]:
    """Create the missing chains, then lock every chain in ascending subject_ref order (see the docstring)."""
    existing: set[uuid.UUID] = set()
    for chunk in _chunks(refs):
        existing.update(ConsentChain.objects.filter(subject_ref__in=chunk).values_list("subject_ref", flat=True))
    missing = [ref for ref in refs if ref not in existing]
    ConsentChain.objects.bulk_create(
        [ConsentChain(subject_ref=ref) for ref in missing], batch_size=batch_size, ignore_conflicts=True
    )
    chains: dict[uuid.UUID, ConsentChain] = {}
    for chunk in _chunks(refs):
        for chain in ConsentChain.objects.select_for_update().filter(subject_ref__in=chunk).order_by("subject_ref"):
            chains[chain.subject_ref] = chain
    return chains, len(missing)


def _rows_update(objects: list, field_names: list[str], *, batch_size: int) -> None:
    """UPDATE each row by primary key with its own values, a batch per statement.

    Django's bulk_update builds a CASE WHEN per field and row, whose construction in Python costs more
    than the whole rest of an import. On PostgreSQL each batch is one UPDATE joined to the batch's values
    as arrays (unnest); elsewhere one executemany per batch."""
    if not objects:
        return
    model = type(objects[0])
    fields = [model._meta.get_field(name) for name in field_names]
    quote = connection.ops.quote_name
    table, pk = quote(model._meta.db_table), quote(model._meta.pk.column)
    if connection.vendor == "postgresql":
        columns = [model._meta.pk, *fields]
        values = ", ".join(f"unnest(%s::{f.db_type(connection)}[]) AS {quote(f.column)}" for f in columns)
        assignments = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in fields)
        sql = f"UPDATE {table} SET {assignments} FROM (SELECT {values}) v WHERE {table}.{pk} = v.{pk}"  # noqa: S608
    else:
        assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
        sql = f"UPDATE {table} SET {assignments} WHERE {pk} = %s"  # noqa: S608
    with connection.cursor() as cursor:
        for batch in _chunks(objects, batch_size):
            rows = [[f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields] for obj in batch]
            if connection.vendor == "postgresql":
                cursor.execute(sql, [[obj.pk for obj in batch], *(list(column) for column in zip(*rows, strict=True))])
            else:
                cursor.executemany(sql, [[*row, obj.pk] for row, obj in zip(rows, batch, strict=True)])


def _ids_ensure(events: list[ConsentEvent]) -> None:
    """Give each event its id (databases without INSERT ... RETURNING leave them empty)."""
    lacking = {event.receipt_id: event for event in events if event.pk is None}
    for chunk in _chunks(list(lacking)):
        for receipt_id, pk in ConsentEvent.objects.filter(receipt_id__in=chunk).values_list("receipt_id", "id"):
            lacking[receipt_id].pk = pk


def _states_apply(best: dict, *, now: datetime.datetime, batch_size: int) -> int:
    """Make each (account, purpose)'s best imported event its state where it is later than the current one."""
    refs = sorted({ref for ref, _ in best})
    current: dict[tuple[uuid.UUID, int], ConsentState] = {}
    for chunk in _chunks(refs):
        for state in ConsentState.objects.filter(subject_ref__in=chunk):
            current[(state.subject_ref, state.purpose_id)] = state
    created, updated = [], []
    for (ref, purpose_id), (effective_at, event_id, action) in best.items():
        state = current.get((ref, purpose_id))
        if state is None:
            created.append(
                ConsentState(
                    subject_ref=ref,
                    purpose_id=purpose_id,
                    event_id=event_id,
                    action=action,
                    effective_at=effective_at,
                    updated_at=now,
                )
            )
        elif (effective_at, event_id) > (state.effective_at, state.event_id):
            state.event_id, state.action, state.effective_at, state.updated_at = event_id, action, effective_at, now
            updated.append(state)
    ConsentState.objects.bulk_create(created, batch_size=batch_size)
    _rows_update(updated, ["event", "action", "effective_at", "updated_at"], batch_size=batch_size)
    return len(created) + len(updated)
