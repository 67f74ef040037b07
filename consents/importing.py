"""Large historical consent files: `manage.py import_consents FILE.csv` (issue 4 §7).

Two paths, one set of rules (those of `consents.bulk`, whose module docstring says what they keep):

- PostgreSQL ("copy"): the file is streamed with COPY into a temporary staging table, every row is checked
  in SQL against the accounts, purposes, notices, jurisdictions and the date grammar (`bulk.MOMENT_PATTERN`,
  the same regular expression the Python path uses), and every problem is listed with its line. Only if
  there is none are the chains locked and the events, chains, states and the audit event written -- all
  in the one transaction that loaded the staging table, so one bad line imports nothing and a failure
  half-way leaves nothing behind. Memory stays flat whatever the file size: the rows never come to Python.
- Anywhere else ("portable", SQLite): the csv module reads the file and `consents.bulk` checks and
  writes it; the rows are held in memory, so this is for the small installations SQLite serves.

Checks in SQL, each value once. The cells are trimmed and each moment's shape (every digit written as 9)
computed in one pass into a table of lines; the few distinct shapes are tested in Python with the shared
pattern, and so are the other values of which a file has a handful (purposes x languages x notice
versions, languages, account countries and regions). The subject_ref texts are tested, and their accounts
looked up, once per distinct text -- a file names each subject about ten times, and testing 36 characters
costs more than all the other checks of a line. Then one pass joins every line with what it refers to.

Hashes in SQL, in one sorted pass. Each hash covers the previous one, so a chain is sequential; the events
of every subject are ordered once (effective time, file order breaking ties) and the hashes chained by a
running window aggregate, `consent_chain_hash(head, prefix, suffix) OVER (PARTITION BY subject ORDER BY
moment, line ROWS UNBOUNDED PRECEDING)` (migration 0006): PostgreSQL advances a running aggregate one row
at a time, so each row costs one step, sha256(prefix || previous hash || suffix), the first row's previous
hash being the chain's head. The same pass (window functions over the same order need no new sort) gives
each event its seq, its previous hash, whether it is its subject's new head and whether it is the latest of
its subject and purpose; the ids are drawn from the events' sequence in that order, so that the ledger's
state rule (latest by effective time, then id) picks the event the pass marked. The events are kept in a
temporary table from which the insert, the states, the heads and the audit counts read; nothing comes
back with RETURNING. The text hashed is exactly `ConsentEvent.canonical`, cut at "prev_hash": the keys in
sorted order, strings escaped by PostgreSQL's `to_json` (which escapes as Python's
`json.dumps(ensure_ascii=False)` does: quote, backslash, the short escapes and other control characters
as lower-case \\u00XX), times as `to_char(... 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00'` in UTC (Python's
isoformat with microseconds), and uuids in their canonical lower-case form. The tests recompute every
imported hash with `compute_hash`; a change to the canonical form must change both. Streaming the rows
through Python to hash them was the alternative; it costs more per row than the whole SQL step (measured
in docs/consent-import.md), and the insert, not the hashing, dominates either way.

Lines: line 1 is the header; the n-th record is line n + 1 (the COPY staging table numbers records as
they arrive). A quoted value spanning lines would shift the count; no valid value of this format has one.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from privacyops.audit import audit_record

from . import bulk
from .bulk import COLUMNS, MESSAGES, REQUIRED_COLUMNS, ImportInvalid, ImportResult, ImportSource, RowError
from .models import GENESIS_HASH, ConsentEvent, ConsentPurpose

ENGINES = ("auto", "copy", "portable")
_TEMP_TABLES = (
    "consent_import_staging",
    "consent_import_lines",
    "consent_import_subjects",
    "consent_import_policy",
    "consent_import_rows",
    "consent_import_notice",
    "consent_import_place",
    "consent_import_errors",
    "consent_import_heads",
    "consent_import_events",
)
COPY_BLOCK = 1 << 20


@dataclass
class ImportReport:
    """The outcome of one file: `errors` (at most max_errors of them) and their total, or what was written."""

    source: ImportSource
    engine: str
    dry_run: bool
    rows: int = 0
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    error_lines: int = 0
    result: ImportResult | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error_count == 0


class _Stopwatch:
    def __init__(self, report: ImportReport, progress: Callable[[str], None] | None):
        self.report, self.progress = report, progress
        self.started = time.perf_counter()

    def lap(self, phase: str, message: str) -> None:
        now = time.perf_counter()
        self.report.timings[phase] = now - self.started
        self.started = now
        if self.progress is not None:
            self.progress(f"{message} ({self.report.timings[phase]:.2f}s)")


def consent_file_import(
    *,
    path,
    actor=None,
    dry_run: bool = False,
    max_errors: int = 100,
    engine: str = "auto",
    batch_size: int = bulk.BATCH_SIZE,
    progress: Callable[[str], None] | None = None,
) -> ImportReport:
    """PM-0-2: import a CSV of historical consents, all lines or none; see the module docstring.

    Returns a report; `report.ok` is False when any line is bad (then nothing was written). With
    `dry_run` the file is checked the same way and nothing is written either way."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}")
    if engine == "auto":
        engine = "copy" if connection.vendor == "postgresql" else "portable"
    if engine == "copy" and connection.vendor != "postgresql":
        raise ValueError("the copy engine needs PostgreSQL; use the portable one")
    path = Path(path)
    source = ImportSource.for_path(path, channel="command")
    report = ImportReport(source=source, engine=engine, dry_run=dry_run)
    watch = _Stopwatch(report, progress)
    try:
        columns = _header(path)
        bulk.source_check(source)
        watch.lap("header", f"{path.name}: SHA-256 {source.sha256[:12]}…, columns {', '.join(columns)}")
        if engine == "copy":
            _copy_import(path, columns, report=report, actor=actor, max_errors=max_errors, watch=watch)
        else:
            _portable_import(path, columns, report=report, actor=actor, max_errors=max_errors, batch_size=batch_size, watch=watch)
    except ImportInvalid as e:
        report.error_count = len(e.errors)
        report.error_lines = len({error.line for error in e.errors})
        report.errors = e.errors[:max_errors]
    return report


def _header(path: Path) -> list[str]:
    """The file's columns, checked: known, not repeated, the required ones present."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), None)
    except UnicodeDecodeError:
        raise ImportInvalid([RowError(0, "", "the file is not UTF-8 text")]) from None
    if not header:
        raise ImportInvalid([RowError(0, "", "the file is empty")])
    columns = [column.strip() for column in header]
    errors = []
    for position, column in enumerate(columns):
        if column not in COLUMNS:
            errors.append(RowError(1, column, f"unknown column; the columns are {', '.join(COLUMNS)}"))
        elif column in columns[:position]:
            errors.append(RowError(1, column, "the column appears twice"))
    errors += [RowError(1, column, "required column is missing") for column in REQUIRED_COLUMNS if column not in columns]
    if errors:
        raise ImportInvalid(errors)
    return columns


# --- Portable path -----------------------------------------------------------------------------------


def _portable_import(path, columns, *, report, actor, max_errors, batch_size, watch) -> None:
    rows, shape_errors = [], []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        next(reader)
        for line, record in enumerate(reader, start=2):
            if len(record) != len(columns):
                shape_errors.append(RowError(line, "", f"has {len(record)} fields; the header has {len(columns)}"))
                continue
            rows.append({"line": line, **dict(zip(columns, record, strict=True))})
    report.rows = len(rows) + len(shape_errors)
    watch.lap("read", f"read {report.rows} lines")
    try:
        prepared = bulk.consent_rows_prepare(rows) if rows else []
    except ImportInvalid as e:
        raise ImportInvalid(shape_errors + e.errors) from None
    if shape_errors:
        raise ImportInvalid(shape_errors)
    if not prepared:
        raise ImportInvalid([RowError(0, "", "the file has no rows")])
    watch.lap("validate", f"checked {report.rows} lines: no problems")
    if report.dry_run:
        return
    report.result = bulk.consent_events_append_prepared(prepared, actor=actor, source=report.source, batch_size=batch_size)
    watch.lap("write", f"wrote {report.result.events} events for {report.result.subjects} subjects")


# --- COPY path ---------------------------------------------------------------------------------------

_STAGING = """
CREATE TEMP TABLE consent_import_staging (
    line bigint GENERATED ALWAYS AS IDENTITY (START WITH 2),
    subject_ref text, purpose text, action text, effective_at text, language text, jurisdiction text, notice_version text
) ON COMMIT DROP
"""

_WS = r"E' \t\r\n\f\x0b'"  # the characters Python's cell_text strips


def _trim(column: str) -> str:
    return f"btrim(coalesce({column}, ''), {_WS})"


# A subject_ref is 36 characters: hex digits with hyphens at 9, 14, 19 and 24 (bulk.UUID_PATTERN), read
# by position -- a regular expression costs several times more per row. Even so the test costs more than
# all the other checks of a line (translate looks every character up in its list), so it runs once per
# distinct text (a file names each subject about ten times), with the account's lookup.
_UUID_TEXT_OK = (
    "(length({t}) = 36 AND translate({t}, '0123456789abcdefABCDEF', '') = '----'"
    " AND substr({t}, 9, 1) = '-' AND substr({t}, 14, 1) = '-' AND substr({t}, 19, 1) = '-' AND substr({t}, 24, 1) = '-')"
)
_SUBJECTS = f"""
CREATE TEMP TABLE consent_import_subjects ON COMMIT DROP AS
SELECT d.subject_text, d.subject_ref, u.id AS account_id, u.country, u.region
FROM (
    SELECT subject_text, CASE WHEN {_UUID_TEXT_OK.format(t="subject_text")} THEN subject_text::uuid END AS subject_ref
    FROM (SELECT DISTINCT subject_text FROM consent_import_lines) t OFFSET 0
) d
LEFT JOIN accounts_user u ON u.subject_ref = d.subject_ref
"""  # noqa: S608 -- composed of this module's constants, never of input

# Every line in one pass, with everything the checks and the writes need. The moment's shape is checked
# against the shapes that passed the shared pattern (see _MOMENT_SHAPES); its parts are then read by
# position, which the pattern fixes, and checked against the calendar -- never a cast that could fail. Each level is a subquery
# with OFFSET 0 so that PostgreSQL computes a row's texts and tests once, instead of inlining the
# expression at every place that uses it.
_ROWS = """
CREATE TEMP TABLE consent_import_rows ON COMMIT DROP AS
SELECT q.line, q.subject_text, s.subject_ref, q.purpose_code, q.action, q.moment_text, q.moment_ok, q.moment,
    q.language, q.jurisdiction_text, q.notice_version,
    s.account_id IS NOT NULL AS account_known,
    cp.id AS purpose_id, cp.is_necessary, cp.is_active,
    s.country, s.region,
    j.code IS NOT NULL AS jurisdiction_known,
    pol.policy_id, coalesce(pol.label, '') AS policy_label
FROM (
    SELECT p.*, CASE WHEN moment_ok THEN moment_text::timestamptz END AS moment
    FROM (
        SELECT o.*, CASE
            WHEN NOT moment_shape THEN false
            WHEN substr(moment_text, 1, 4)::int < 1 OR substr(moment_text, 6, 2)::int NOT BETWEEN 1 AND 12 THEN false
            WHEN substr(moment_text, 9, 2)::int NOT BETWEEN 1 AND
                (ARRAY[31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[substr(moment_text, 6, 2)::int]
                + (substr(moment_text, 6, 2) = '02' AND substr(moment_text, 1, 4)::int %% 4 = 0
                    AND (substr(moment_text, 1, 4)::int %% 100 <> 0 OR substr(moment_text, 1, 4)::int %% 400 = 0))::int
                THEN false
            WHEN length(moment_text) > 10 AND (substr(moment_text, 12, 2)::int > 23 OR substr(moment_text, 15, 2)::int > 59
                OR (substr(moment_text, 17, 1) = ':' AND substr(moment_text, 18, 2)::int > 59)) THEN false
            WHEN sign_at > 0 AND (substr(tail, sign_at + 1, 2)::int > 23
                OR coalesce(nullif(substr(replace(substr(tail, sign_at + 3), ':', ''), 1, 2), '')::int, 0) > 59) THEN false
            ELSE true END AS moment_ok
        FROM (
            SELECT m.*, greatest(strpos(tail, '+'), strpos(tail, '-')) AS sign_at
            FROM (
                SELECT t.line, t.subject_text, t.purpose_code, t.action, t.moment_text, t.language, t.jurisdiction_text,
                    t.notice_version, t.moment_shape = ANY(%(moment_shapes)s) AS moment_shape,
                    CASE WHEN length(moment_text) > 16 THEN substr(moment_text, 17) ELSE '' END AS tail
                FROM consent_import_lines t
            ) m OFFSET 0
        ) o OFFSET 0
    ) p OFFSET 0
) q
JOIN consent_import_subjects s ON s.subject_text = q.subject_text
LEFT JOIN consents_consentpurpose cp ON cp.code = q.purpose_code
LEFT JOIN inventory_jurisdiction j ON j.code = q.jurisdiction_text
LEFT JOIN consent_import_policy pol ON q.moment >= pol.lo AND (pol.hi IS NULL OR q.moment < pol.hi)
"""

# Clean lines pass one cheap test; only the others get their messages, one per bad cell.
# The grammar of a moment (bulk.MOMENT_PATTERN) asks for digits at some places and fixed characters at
# the others, so a text matches it exactly when its shape -- every digit written as 9 -- does. A file
# has a handful of shapes: each is tested once in Python with the very pattern the portable path uses,
# where a regular expression on every line would cost more than the rest of the check.
_MOMENT_SHAPES = "SELECT DISTINCT moment_shape FROM consent_import_lines"

# The trimmed cells and the shape of each moment, once: the shapes are checked before _ROWS can use them.
# Nine replace() calls cost less than one translate(), which looks every character up in its list.
_SHAPE = "replace(" * 9 + "moment_text" + "".join(f", '{digit}', '9')" for digit in "012345678")
_LINES = f"""
CREATE TEMP TABLE consent_import_lines ON COMMIT DROP AS
SELECT t.*, {_SHAPE} AS moment_shape
FROM (
    SELECT line,
        {_trim("subject_ref")} AS subject_text,
        {_trim("purpose")} AS purpose_code,
        {_trim("action")} AS action,
        {_trim("effective_at")} AS moment_text,
        coalesce(nullif({_trim("language")}, ''), %(default_language)s) AS language,
        {_trim("jurisdiction")} AS jurisdiction_text,
        {_trim("notice_version")} AS notice_version
    FROM consent_import_staging OFFSET 0
) t
"""  # noqa: S608 -- composed of this module's constants, never of input

_ERRORS = """
CREATE TEMP TABLE consent_import_errors ON COMMIT DROP AS
SELECT r.line, e.position, e.column_name, e.message
FROM (
    SELECT r.*, n.found AS notice_found
    FROM consent_import_rows r
    LEFT JOIN consent_import_notice n ON n.purpose = r.purpose_code AND n.language = r.language AND n.version = r.notice_version
    WHERE NOT coalesce(
        r.account_known AND r.purpose_id IS NOT NULL AND r.action = ANY(%(actions)s)
        AND NOT (r.is_necessary AND r.action <> 'given') AND NOT (r.action = 'given' AND NOT r.is_active)
        AND r.moment_ok AND r.moment >= %(earliest)s AND r.moment <= %(latest)s
        AND r.language <> ALL(%(bad_languages)s) AND (r.jurisdiction_text = '' OR r.jurisdiction_known)
        AND n.found, false)
    OFFSET 0
) r
CROSS JOIN LATERAL (VALUES
    (1, 'subject_ref', CASE
        WHEN r.subject_text = '' THEN %(required)s
        WHEN r.subject_ref IS NULL THEN %(subject_format)s
        WHEN NOT r.account_known THEN %(subject_unknown)s END),
    (2, 'purpose', CASE
        WHEN r.purpose_code = '' THEN %(required)s
        WHEN r.purpose_id IS NULL THEN %(purpose_unknown)s END),
    (3, 'action', CASE
        WHEN r.action = '' THEN %(required)s
        WHEN r.action = 'expired' THEN %(action_expired)s
        WHEN r.action <> ALL(%(actions)s) THEN %(action_unknown)s
        WHEN r.is_necessary AND r.action <> 'given' THEN %(necessary)s
        WHEN r.action = 'given' AND r.is_active = false THEN %(inactive)s END),
    (4, 'effective_at', CASE
        WHEN r.moment_text = '' THEN %(required)s
        WHEN NOT r.moment_ok THEN %(moment_format)s
        WHEN r.moment < %(earliest)s THEN %(moment_early)s
        WHEN r.moment > %(latest)s THEN %(moment_future)s END),
    (5, 'language', CASE WHEN r.language = ANY(%(bad_languages)s) THEN %(language_format)s END),
    (6, 'jurisdiction', CASE
        WHEN r.jurisdiction_text <> '' AND NOT r.jurisdiction_known THEN %(jurisdiction_unknown)s END),
    (7, 'notice_version', CASE
        WHEN r.purpose_id IS NOT NULL AND r.notice_found = false THEN %(notice_unknown)s END)
) AS e(position, column_name, message)
WHERE e.message IS NOT NULL
"""

# The canonical text of ConsentEvent.canonical, keys in sorted order, cut at the previous hash: the chain
# aggregate (migration 0006) hashes prefix || previous hash || suffix.
_CANONICAL_PREFIX = """
'{"action":"' || e.action
|| '","actor_label":' || %(actor_label_json)s
|| ',"effective_at":"' || to_char(e.moment AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00'
|| '","gpc":false,"instruction":' || %(instruction_json)s
|| ',"ip_hash":"","jurisdiction":' || to_json(e.jurisdiction)::text
|| ',"language":' || to_json(e.language)::text
|| ',"method":"import","notice_sha256":"' || e.notice_sha256
|| '","notice_version":' || to_json(e.notice_version)::text
|| ',"policy_label":' || to_json(e.policy_label)::text
|| ',"prev_hash":"'
"""
_CANONICAL_SUFFIX = """
'","purpose":' || to_json(e.purpose_code)::text
|| ',"receipt_id":"' || e.receipt_id::text
|| '","recorded_at":"' || %(recorded_text)s
|| '","seq":' || e.seq::text
|| ',"subject_ref":"' || e.subject_ref::text
|| '","ua_hash":"","visitor_id":null}'
"""

_EVENT_COLUMNS = (
    "subject_ref, line, chain_id, seq, purpose_id, purpose_code, action, moment, language, jurisdiction, "
    "notice_id, notice_version, notice_sha256, policy_id, policy_label, receipt_id"
)

# Every new event with everything it is written with. PostgreSQL sorts the lines once; each level keeps the
# order of the one below, and the latest-per-purpose level re-sorts only within each subject (an
# incremental sort of about ten rows, and back). Per event: its place in its subject's chain (rank by effective
# time, file order breaking ties), its hash chained by the running aggregate, the previous hash, whether it
# is the subject's new head, and whether it is the subject's latest for its purpose (the state rule; the
# ids follow (moment, line) within a subject, so that is also the latest by (effective_at, id)). The ids
# are drawn in the final (subject_ref, seq) order -- volatile functions run after the sort.
_EVENTS = f"""
CREATE TEMP TABLE consent_import_events ON COMMIT DROP AS
SELECT nextval(%(id_sequence)s::regclass) AS id, x.*
FROM (
    SELECT {_EVENT_COLUMNS}, hash, prev_hash, is_head,
        row_number() OVER (PARTITION BY subject_ref, purpose_id ORDER BY moment DESC, line DESC) = 1 AS is_latest
    FROM (
        SELECT {_EVENT_COLUMNS}, hash, coalesce(lag(hash) OVER w, head_hash) AS prev_hash, lead(line) OVER w IS NULL AS is_head
        FROM (
            SELECT {_EVENT_COLUMNS}, head_hash,
                consent_chain_hash(head_hash, {_CANONICAL_PREFIX}, {_CANONICAL_SUFFIX}) OVER w AS hash
            FROM (
                SELECT r.subject_ref, r.line, h.id AS chain_id, h.length + row_number() OVER w AS seq,
                    coalesce(nullif(h.head_hash, ''), %(genesis)s)::text AS head_hash,
                    r.purpose_id, r.purpose_code, r.action, r.moment, r.language,
                    coalesce(nullif(r.jurisdiction_text, ''), pl.code) AS jurisdiction,
                    n.notice_id, n.notice_version, n.notice_sha256, r.policy_id, r.policy_label,
                    gen_random_uuid() AS receipt_id
                FROM consent_import_rows r
                JOIN consent_import_heads h ON h.subject_ref = r.subject_ref
                JOIN consent_import_notice n
                    ON n.purpose = r.purpose_code AND n.language = r.language AND n.version = r.notice_version
                JOIN consent_import_place pl ON pl.country = r.country AND pl.region = r.region
                WINDOW w AS (PARTITION BY r.subject_ref ORDER BY r.moment, r.line)
            ) e
            WINDOW w AS (PARTITION BY e.subject_ref ORDER BY e.moment, e.line ROWS UNBOUNDED PRECEDING)
        ) c
        WINDOW w AS (PARTITION BY c.subject_ref ORDER BY c.moment, c.line)
    ) l
) x
ORDER BY x.subject_ref, x.seq
"""  # noqa: S608 -- composed of this module's constants, never of input

_INSERT = """
INSERT INTO consents_consentevent (
    id, chain_id, seq, subject_ref, visitor_id, purpose_id, action, method, notice_id, notice_version, notice_sha256,
    policy_version_id, policy_label, jurisdiction, language, ip_hash, ua_hash, gpc, effective_at, recorded_at,
    receipt_id, actor_label, instruction, prev_hash, hash)
SELECT e.id, e.chain_id, e.seq, e.subject_ref, NULL, e.purpose_id, e.action, %(method)s, e.notice_id, e.notice_version,
    e.notice_sha256, e.policy_id, e.policy_label, e.jurisdiction, e.language, '', '', false, e.moment, %(recorded_at)s,
    e.receipt_id, %(actor_label)s, %(instruction)s, e.prev_hash, e.hash
FROM consent_import_events e
"""

_STATES = """
WITH written AS (
    INSERT INTO consents_consentstate (subject_ref, visitor_id, purpose_id, event_id, action, effective_at, updated_at)
    SELECT subject_ref, NULL, purpose_id, id, action, moment, %(now)s FROM consent_import_events WHERE is_latest
    ON CONFLICT (subject_ref, purpose_id) WHERE subject_ref IS NOT NULL DO UPDATE
        SET event_id = EXCLUDED.event_id, action = EXCLUDED.action, effective_at = EXCLUDED.effective_at,
            updated_at = EXCLUDED.updated_at
        WHERE (EXCLUDED.effective_at, EXCLUDED.event_id) > (consents_consentstate.effective_at, consents_consentstate.event_id)
    RETURNING 1
) SELECT count(*) FROM written
"""

_HEADS_UPDATE = """
UPDATE consents_consentchain c
SET head_hash = last.hash, length = last.seq, version = c.version + 1, updated_at = %(now)s
FROM consent_import_events last
WHERE last.is_head AND c.id = last.chain_id
"""


def _copy_import(path, columns, *, report, actor, max_errors, watch) -> None:
    """The PostgreSQL path; raises ImportInvalid (after rolling back) when any line is bad."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('TimeZone'), current_setting('jit')")
        settings_before = cursor.fetchone()
        cursor.execute("SET LOCAL timezone = 'UTC'")
        # Big estimates would make PostgreSQL compile these one-off statements with JIT, which costs more
        # (seconds of LLVM optimisation) than the rows take to process.
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(_STAGING)
        report.rows = _copy_in(cursor, path, columns)
        watch.lap("copy", f"loaded {report.rows} lines into the staging table")
        if report.rows == 0:
            raise ImportInvalid([RowError(0, "", "the file has no rows")])
        now = timezone.now()
        context = _lines_check(cursor, now=now)
        cursor.execute(_ERRORS, _messages_params(now, context))
        cursor.execute("SELECT count(*), count(DISTINCT line) FROM consent_import_errors")
        error_count, error_lines = cursor.fetchone()
        if error_count:
            cursor.execute(
                "SELECT line, column_name, message FROM consent_import_errors ORDER BY line, position LIMIT %s", [max_errors]
            )
            errors = [RowError(line, column, message) for line, column, message in cursor.fetchall()]
            report.error_count, report.error_lines, report.errors = error_count, error_lines, errors
            transaction.set_rollback(True)
            watch.lap("validate", f"checked {report.rows} lines: {error_count} problems on {error_lines} lines")
            return
        watch.lap("validate", f"checked {report.rows} lines: no problems")
        if report.dry_run:
            transaction.set_rollback(True)
            return
        report.result = _copy_write(cursor, actor=actor, source=report.source, now=now, context=context, watch=watch)
        # Inside a caller's transaction this block is a savepoint: leave nothing of ours behind in it.
        cursor.execute(f"DROP TABLE {', '.join(_TEMP_TABLES)}")
        cursor.execute("SELECT set_config('TimeZone', %s, true), set_config('jit', %s, true)", settings_before)
    # The deferred foreign-key checks of every new row run here, at commit.
    watch.lap("commit", "committed")


def _copy_in(cursor, path: Path, columns: list[str]) -> int:
    """Stream the file into the staging table; a malformed line (PostgreSQL names it) stops the import."""
    import psycopg

    column_list = ", ".join(columns)  # checked against COLUMNS by _header
    statement = f"COPY consent_import_staging ({column_list}) FROM STDIN WITH (FORMAT csv, HEADER true, ENCODING 'UTF8')"
    try:
        with open(path, "rb") as handle, cursor.cursor.copy(statement) as copy:
            while block := handle.read(COPY_BLOCK):
                copy.write(block)
    except psycopg.Error as e:
        context = getattr(e.diag, "context", "") or ""
        found = re.search(r"line (\d+)", context)
        primary = getattr(e.diag, "message_primary", "") or str(e)
        raise ImportInvalid(
            [RowError(int(found.group(1)) if found else 0, "", f"{primary}; the file is read no further")]
        ) from None
    cursor.execute("SELECT count(*) FROM consent_import_staging")
    return cursor.fetchone()[0]


def _lines_check(cursor, *, now) -> dict:
    """Build the table of parsed, joined lines; then resolve in Python, with `consents.bulk`'s own rules,
    the few distinct (purpose, language, notice version), language and (country, region) values, and hand
    them back to SQL as small temporary tables. Returns what the checks and the writes need."""
    validator = bulk.RowValidator(subject_refs=(), purpose_codes=ConsentPurpose.objects.values_list("code", flat=True), now=now)
    # consents.ledger.policy_in_force as ranges: the latest published version in effect at a moment.
    cursor.execute(
        "CREATE TEMP TABLE consent_import_policy (policy_id bigint, label text, lo timestamptz, hi timestamptz) ON COMMIT DROP"
    )
    ranges, upper = [], None
    for policy in validator.policies:  # newest effective date first
        if upper is None or policy.effective_at < upper:
            ranges.append((policy.pk, policy.label, policy.effective_at, upper))
            upper = policy.effective_at
    if ranges:
        cursor.executemany("INSERT INTO consent_import_policy VALUES (%s, %s, %s, %s)", ranges)
    cursor.execute(_LINES, {"default_language": bulk.DEFAULT_LANGUAGE})
    cursor.execute(_SUBJECTS)
    cursor.execute("ANALYZE consent_import_lines, consent_import_policy, consent_import_subjects")
    cursor.execute(_MOMENT_SHAPES)
    shapes = [shape for (shape,) in cursor.fetchall() if bulk.moment_shape_ok(shape)]
    cursor.execute(_ROWS, {"moment_shapes": shapes})
    cursor.execute("ANALYZE consent_import_rows")

    cursor.execute(
        "CREATE TEMP TABLE consent_import_notice (purpose text, language text, version text, found boolean,"
        " notice_id bigint, notice_version text, notice_sha256 text) ON COMMIT DROP"
    )
    cursor.execute("SELECT DISTINCT purpose_code, language, notice_version FROM consent_import_rows WHERE purpose_id IS NOT NULL")
    notices = []
    for code, language, version in cursor.fetchall():
        notice = validator.notice_for(validator.purposes[code], version=version, language=language)
        if notice is False:
            notices.append((code, language, version, False, None, None, None))
        elif notice is None:
            notices.append((code, language, version, True, None, "", ""))
        else:
            notices.append((code, language, version, True, notice.pk, notice.version, notice.sha256))
    if notices:
        cursor.executemany("INSERT INTO consent_import_notice VALUES (%s, %s, %s, %s, %s, %s, %s)", notices)

    cursor.execute("SELECT DISTINCT language FROM consent_import_rows")
    bad_languages = [language for (language,) in cursor.fetchall() if not bulk.language_ok(language)]

    cursor.execute("CREATE TEMP TABLE consent_import_place (country text, region text, code text) ON COMMIT DROP")
    cursor.execute("SELECT DISTINCT country, region FROM consent_import_rows WHERE account_known")
    places = [(country, region, bulk.jurisdiction_code_for(country, region)) for country, region in cursor.fetchall()]
    if places:
        cursor.executemany("INSERT INTO consent_import_place VALUES (%s, %s, %s)", places)
    cursor.execute("ANALYZE consent_import_notice, consent_import_place")
    return {"purposes": {p.pk: p.code for p in validator.purposes.values()}, "bad_languages": bad_languages}


def _messages_params(now, context: dict) -> dict:
    return {
        **MESSAGES,
        "actions": list(bulk.IMPORTABLE_ACTIONS),
        "earliest": datetime.datetime(bulk.EARLIEST_YEAR, 1, 1, tzinfo=datetime.UTC),
        "latest": now + settings.CONSENT_CLOCK_SKEW,
        "bad_languages": context["bad_languages"],
    }


def _copy_write(cursor, *, actor, source: ImportSource, now, context: dict, watch) -> ImportResult:
    """Lock, chain, insert, update states and heads, audit: the second half of the one transaction."""
    result = ImportResult()
    # Every line passed the checks, so every subject text names an account (one account may be written
    # several ways: hence DISTINCT); the small table of subjects stands for the million lines.
    cursor.execute(
        "INSERT INTO consents_consentchain (subject_ref, visitor_id, head_hash, length, version, updated_at)"
        " SELECT DISTINCT subject_ref, NULL::uuid, %s, 0, 0, %s FROM consent_import_subjects ORDER BY subject_ref"
        " ON CONFLICT (subject_ref) DO NOTHING",
        [GENESIS_HASH, now],
    )
    result.chains_created = cursor.rowcount
    # Lock every affected chain in ascending subject_ref order (see consents.bulk) and keep its head.
    cursor.execute(
        "CREATE TEMP TABLE consent_import_heads ON COMMIT DROP AS"
        " SELECT c.id, c.subject_ref, c.length, c.head_hash FROM consents_consentchain c"
        " WHERE c.subject_ref IN (SELECT subject_ref FROM consent_import_subjects) ORDER BY c.subject_ref FOR UPDATE OF c"
    )
    result.subjects = cursor.rowcount
    # Temporary tables have no statistics until analysed; without them the planner may join every line
    # to every head by a nested loop (seen: minutes for 200 000 lines).
    cursor.execute("ANALYZE consent_import_heads")
    watch.lap("lock", f"locked {result.subjects} chains ({result.chains_created} new)")

    recorded_text = now.astimezone(datetime.UTC).isoformat(timespec="microseconds")
    actor_label = actor.get_username() if actor is not None else ""
    # Named once here: pg_get_serial_sequence in the statement would run its catalog lookups for every row
    # (1.7 s per million).
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [ConsentEvent._meta.db_table])
    id_sequence = cursor.fetchone()[0]
    cursor.execute(
        _EVENTS,
        {
            "id_sequence": id_sequence,
            "genesis": GENESIS_HASH,
            "actor_label_json": json.dumps(actor_label, ensure_ascii=False),
            "instruction_json": json.dumps(source.instruction, ensure_ascii=False),
            "recorded_text": recorded_text,
        },
    )
    cursor.execute("ANALYZE consent_import_events")
    watch.lap("chain", "ranked and chained the events of each subject by effective time")
    cursor.execute(
        _INSERT,
        {
            "recorded_at": now,
            "actor_label": actor_label,
            "instruction": source.instruction,
            "method": ConsentEvent.Method.IMPORT.value,
        },
    )
    result.events = cursor.rowcount
    watch.lap("insert", f"appended {result.events} events")

    cursor.execute(_STATES, {"now": now})
    result.states_changed = cursor.fetchone()[0]
    cursor.execute(_HEADS_UPDATE, {"now": now})
    watch.lap("state", f"updated {result.states_changed} consent states and {result.subjects} chain heads")

    cursor.execute("SELECT action, count(*) FROM consent_import_events GROUP BY action")
    result.actions = dict(cursor.fetchall())
    cursor.execute("SELECT purpose_id, count(*) FROM consent_import_events GROUP BY purpose_id")
    result.purposes = {context["purposes"][purpose_id]: count for purpose_id, count in cursor.fetchall()}
    cursor.execute("SELECT min(moment), max(moment) FROM consent_import_events")
    result.effective_from, result.effective_to = cursor.fetchone()
    result.rows = result.events
    event = audit_record(
        actor=actor, action=bulk.IMPORT_ACTION, target=(ConsentEvent._meta.label_lower, ""), details=result.details(source)
    )
    result.audit_event_id = event.pk
    watch.lap("audit", f"audit event #{event.pk}")
    return result


def errors_text(report: ImportReport) -> str:
    """The problems as lines of text, for the command and the docs' examples."""
    out = io.StringIO()
    for error in report.errors:
        out.write(f"{error}\n")
    if report.error_count > len(report.errors):
        out.write(f"… and {report.error_count - len(report.errors)} more (raise --max-errors to list them)\n")
    return out.getvalue()
