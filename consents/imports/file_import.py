"""Large historical consent files: `manage.py import_consents FILE.csv` (issue 4 §7).

Two paths, one set of rules (those of `consents.imports.bulk`, whose module docstring says what they keep):

- PostgreSQL ("copy"): the file is streamed with COPY into a temporary staging table, every row is checked
  in SQL against the accounts, purposes, notices, jurisdictions and the date grammar (`bulk.MOMENT_PATTERN`,
  the same regular expression the Python path uses), and every problem is listed with its line. Only if
  there is none are the chains locked and the events, chains, states and the audit event written -- all
  in the one transaction that loaded the staging table, so one bad line imports nothing and a failure
  half-way leaves nothing behind. Memory stays flat whatever the file size: the rows never come to Python.
- Anywhere else ("portable", SQLite): the csv module reads the file and `consents.imports.bulk` checks and
  writes it; the rows are held in memory, so this is for the small installations SQLite serves.

Checks in SQL, each value once. One pass over the staging table collects the distinct subject texts and
the distinct shapes of the moments (every digit written as 9); the shapes are tested in Python with the
shared pattern, and so are the other values of which a file has a handful (purposes x languages x notice
versions, languages, account countries and regions, read in one pass). The subject_ref texts are tested,
and their accounts looked up, once per distinct text -- a file names each subject about ten times, and
testing 36 characters costs more than all the other checks of a line. Then one pass trims every line's
cells and joins them with what they refer to.

Hashes in SQL, in one sorted pass. Each hash covers the previous one, so a chain is sequential; the events
of every subject are ordered once (effective time, file order breaking ties) and the hashes chained by a
running window aggregate, `pg_temp.consent_import_chain(head, prefix, suffix) OVER (PARTITION BY subject
ORDER BY moment, line ROWS UNBOUNDED PRECEDING)` (_CHAIN_FUNCTIONS, created in the import's transaction):
PostgreSQL advances a running aggregate one row at a time, so each row costs one step, sha256(prefix ||
previous hash || suffix), the first row's previous hash being the chain's head; the aggregate's state
carries the previous hash beside the new one. The same pass (window functions over the same order need no
new sort) gives each event its seq, whether it is its subject's new head and whether it is the latest of
its subject and purpose; the ids are drawn from the events' sequence in that order, so that the ledger's
state rule (latest by effective time, then id) picks the event the pass marked. The events are
materialised once in the statement that writes them, the ledger rows, the states and the heads (_WRITE);
nothing comes back with RETURNING but the count of states. The text hashed is exactly
`ConsentEvent.canonical`, cut at "prev_hash": the keys in sorted order; the strings that many events share
(actor, instruction, purpose, language, notice, policy label) serialised once by the same `json.dumps`
call, the jurisdiction escaped by PostgreSQL's `to_json` (which escapes as Python's
`json.dumps(ensure_ascii=False)` does: quote, backslash, the short escapes and other control characters
as lower-case \\u00XX), times as `to_char(... 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00'` in UTC (Python's
isoformat with microseconds), uuids in their canonical lower-case form, and the UTF-8 bytes of the text
hashed. The tests recompute every imported hash with `compute_hash`; a change to the canonical form must
change both. Streaming the rows through Python to hash them was the alternative; it costs more per row
than the whole SQL step (measured in docs/consent-import.md), and the insert, not the hashing, dominates
either way. Migration 0006's `consent_chain_hash` was the first form of this aggregate; nothing calls it
any more.

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

from consents.models import GENESIS_HASH, ConsentEvent, ConsentPurpose
from privacyops.audit import audit_record

from . import bulk
from .bulk import COLUMNS, MESSAGES, REQUIRED_COLUMNS, ImportInvalid, ImportResult, ImportSource, RowError

ENGINES = ("auto", "copy", "portable")
_TEMP_TABLES = (
    "consent_import_staging",
    "consent_import_values",
    "consent_import_subjects",
    "consent_import_policy",
    "consent_import_rows",
    "consent_import_notice",
    "consent_import_place",
    "consent_import_errors",
    "consent_import_heads",
)
# The chain aggregate of the import (see _CHAIN_FUNCTIONS): temporary, created in the transaction that uses it.
_TEMP_FUNCTIONS = (
    "AGGREGATE pg_temp.consent_import_chain(text, text, text)",
    "FUNCTION pg_temp.consent_import_link(text, text, text, text)",
)
# One-off statements over the whole file: sorts and hash tables of this size keep a million lines in memory
# instead of spilling runs to disk. A constant, so the server's memory does not grow with the file either.
WORK_MEM = "256MB"
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
# The trimmed cells of a line. Nine replace() calls (the shape of a moment: every digit written as 9) cost
# less than one translate(), which looks every character up in its list.
_SHAPE = "replace(" * 9 + "moment_text" + "".join(f", '{digit}', '9')" for digit in "012345678")
_CELLS = f"""
SELECT line,
    {_trim("subject_ref")} AS subject_text,
    {_trim("purpose")} AS purpose_code,
    {_trim("action")} AS action,
    {_trim("effective_at")} AS moment_text,
    coalesce(nullif({_trim("language")}, ''), %(default_language)s) AS language,
    {_trim("jurisdiction")} AS jurisdiction_text,
    {_trim("notice_version")} AS notice_version
FROM consent_import_staging
"""  # noqa: S608 -- composed of this module's constants, never of input

# One pass over the staging table for the values that are settled once each before _ROWS reads every line:
# the distinct subject texts (with their number of lines) and the distinct shapes of the moments, as two
# grouping sets of one hashed aggregate. The staging table is read twice (here and by _ROWS) instead of
# being copied, trimmed, into a table of lines that three statements then read.
_VALUES = f"""
CREATE TEMP TABLE consent_import_values ON COMMIT DROP AS
SELECT subject_text, moment_shape, count(*) AS lines, grouping(moment_shape) = 1 AS is_subject
FROM (
    SELECT subject_text, {_SHAPE} AS moment_shape
    FROM (SELECT {_trim("subject_ref")} AS subject_text, {_trim("effective_at")} AS moment_text FROM consent_import_staging) c
    OFFSET 0
) t
GROUP BY GROUPING SETS ((subject_text), (moment_shape))
"""  # noqa: S608 -- composed of this module's constants, never of input

_SUBJECTS = f"""
CREATE TEMP TABLE consent_import_subjects ON COMMIT DROP AS
SELECT d.subject_text, d.subject_ref, d.lines, u.id AS account_id, u.country, u.region
FROM (
    SELECT subject_text, lines, CASE WHEN {_UUID_TEXT_OK.format(t="subject_text")} THEN subject_text::uuid END AS subject_ref
    FROM consent_import_values WHERE is_subject OFFSET 0
) d
LEFT JOIN accounts_user u ON u.subject_ref = d.subject_ref
"""  # noqa: S608 -- composed of this module's constants, never of input

# Every line in one pass, with everything the checks and the writes need. The moment's shape is checked
# against the shapes that passed the shared pattern (see _MOMENT_SHAPES); its parts are then read by
# position, which the pattern fixes, and checked against the calendar -- never a cast that could fail. Each level is a subquery
# with OFFSET 0 so that PostgreSQL computes a row's texts and tests once, instead of inlining the
# expression at every place that uses it.
_ROWS = f"""
CREATE TEMP TABLE consent_import_rows ON COMMIT DROP AS
SELECT q.line, q.subject_text, s.subject_ref, q.purpose_code, q.action, q.moment_text, q.moment_ok, q.moment,
    q.language, q.jurisdiction_text, q.notice_version,
    s.account_id IS NOT NULL AS account_known,
    cp.id AS purpose_id, cp.is_necessary, cp.is_active,
    s.country, s.region,
    j.code IS NOT NULL AS jurisdiction_known,
    pol.policy_id, coalesce(pol.label, '') AS policy_label, coalesce(pol.label_json, '""') AS policy_label_json
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
                    t.notice_version, {_SHAPE} = ANY(%(moment_shapes)s) AS moment_shape,
                    CASE WHEN length(moment_text) > 16 THEN substr(moment_text, 17) ELSE '' END AS tail
                FROM ({_CELLS} OFFSET 0) t
            ) m OFFSET 0
        ) o OFFSET 0
    ) p OFFSET 0
) q
JOIN consent_import_subjects s ON s.subject_text = q.subject_text
LEFT JOIN consents_consentpurpose cp ON cp.code = q.purpose_code
LEFT JOIN inventory_jurisdiction j ON j.code = q.jurisdiction_text
LEFT JOIN consent_import_policy pol ON q.moment >= pol.lo AND (pol.hi IS NULL OR q.moment < pol.hi)
"""  # noqa: S608 -- composed of this module's constants, never of input

# Clean lines pass one cheap test; only the others get their messages, one per bad cell.
# The grammar of a moment (bulk.MOMENT_PATTERN) asks for digits at some places and fixed characters at
# the others, so a text matches it exactly when its shape -- every digit written as 9 -- does. A file
# has a handful of shapes: each is tested once in Python with the very pattern the portable path uses,
# where a regular expression on every line would cost more than the rest of the check.
_MOMENT_SHAPES = "SELECT moment_shape FROM consent_import_values WHERE NOT is_subject"

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
# aggregate (_CHAIN_FUNCTIONS) hashes prefix || previous hash || suffix. Whatever is the same for many lines
# is serialised once, in Python, by the json.dumps call the ledger uses: the texts of the import, and per
# (purpose, language, notice version) the notice's part and the purpose's, passed as two arrays indexed
# by the notice key `nk` (a key of a few bytes is all the sorted rows carry; the texts would double their
# width, and the sort's), and the policy label (consent_import_policy.label_json). Per line only the
# action, the moment, the jurisdiction, the receipt id, the seq and the subject remain.
_CANONICAL_PREFIX = """
'{"action":"' || e.action || %(after_action)s
|| to_char(e.moment AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || %(after_moment)s
|| to_json(e.jurisdiction)::text || (%(canon_mid)s::text[])[e.nk] || e.policy_label_json || ',"prev_hash":"'
"""
_CANONICAL_SUFFIX = """
(%(canon_purpose)s::text[])[e.nk] || e.receipt_id::text || %(after_receipt)s || e.seq::text
|| ',"subject_ref":"' || e.subject_ref::text || '","ua_hash":"","visitor_id":null}'
"""

# The running hash of a chain as an aggregate: used as a window aggregate ordered along the chain, it gives
# for each event `previous hash || hash`, where hash = sha256(prefix || previous hash || suffix) and the
# previous hash is that of the row before (its state's last 64 characters) or the chain's head for the
# first row. PostgreSQL advances a running aggregate one row at a time, so each row costs one step, and the
# state carrying the previous hash spares a lag() window over the million hashes. Temporary (pg_temp),
# created in the transaction that uses it, so no migration and nothing left behind on a rollback.
# textsend() hands over the text's bytes as they are when the server and the client speak UTF-8 (the
# bytes Python hashes), a third cheaper than convert_to(); with any other encoding, convert_to.
_CHAIN_FUNCTIONS = (
    """
CREATE FUNCTION pg_temp.consent_import_link(link text, head text, prefix text, suffix text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    previous text := coalesce(right(link, 64), head);
BEGIN
    RETURN previous || encode(sha256({bytes}), 'hex');
END
$$
""",
    "CREATE AGGREGATE pg_temp.consent_import_chain(text, text, text) (SFUNC = pg_temp.consent_import_link, STYPE = text)",
)

_EVENT_COLUMNS = (
    "subject_ref, line, chain_id, seq, is_head, nk, purpose_id, action, moment, jurisdiction, policy_id, "
    "policy_label_json, receipt_id"
)

# Every new event with everything it is written with, and every write, in one statement. PostgreSQL sorts
# the lines once; each level keeps the order of the one below, and the latest-per-purpose level re-sorts
# only within each subject (an incremental sort of about ten rows, and back). Per event: its place in its
# subject's chain (rank by effective time, file order breaking ties), whether that is the chain's new head
# (the chain's length plus its lines), its hash and the previous one from the running aggregate, and
# whether it is the subject's latest for its purpose (the state rule; the ids follow (moment, line) within a
# subject, so that is also the latest by (effective_at, id)). The ids are drawn in the final (subject_ref,
# seq) order -- volatile functions run after the sort. The events are materialised once (`ev`, a
# tuplestore: no temporary table to write, analyse and read back four times) and read by the three writes:
# the ledger rows, the states (latest event by effective time, never an older one over a newer: the WHERE
# of ON CONFLICT) and the chain heads. Writes in WITH run to completion whether or not anything reads them;
# the deferred foreign keys of the states on the events are checked at commit, when both are there.
_WRITE = f"""
WITH ev AS MATERIALIZED (
    SELECT nextval(%(id_sequence)s::regclass) AS id, x.*
    FROM (
        SELECT {_EVENT_COLUMNS}, substr(link, 1, 64) AS prev_hash, substr(link, 65) AS hash,
            row_number() OVER (PARTITION BY subject_ref, purpose_id ORDER BY moment DESC, line DESC) = 1 AS is_latest
        FROM (
            SELECT {_EVENT_COLUMNS},
                pg_temp.consent_import_chain(head_hash, {_CANONICAL_PREFIX}, {_CANONICAL_SUFFIX}) OVER w AS link
            FROM (
                SELECT r.subject_ref, r.line, h.id AS chain_id, h.length + row_number() OVER w AS seq,
                    row_number() OVER w = h.lines AS is_head,
                    coalesce(nullif(h.head_hash, ''), %(genesis)s)::text AS head_hash,
                    n.nk, r.purpose_id, r.action, r.moment, coalesce(nullif(r.jurisdiction_text, ''), pl.code) AS jurisdiction,
                    r.policy_id, r.policy_label_json,
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
    ) x
    ORDER BY x.subject_ref, x.seq
), inserted AS (
    INSERT INTO consents_consentevent (
        id, chain_id, seq, subject_ref, visitor_id, purpose_id, action, method, notice_id, notice_version, notice_sha256,
        policy_version_id, policy_label, jurisdiction, language, ip_hash, ua_hash, gpc, effective_at, recorded_at,
        receipt_id, actor_label, instruction, prev_hash, hash)
    SELECT ev.id, ev.chain_id, ev.seq, ev.subject_ref, NULL, ev.purpose_id, ev.action, %(method)s, n.notice_id,
        n.notice_version, n.notice_sha256, ev.policy_id, coalesce(pol.label, ''), ev.jurisdiction, n.language, '', '',
        false, ev.moment, %(recorded_at)s, ev.receipt_id, %(actor_label)s, %(instruction)s, ev.prev_hash, ev.hash
    FROM ev
    JOIN consent_import_notice n ON n.nk = ev.nk
    LEFT JOIN consent_import_policy pol ON pol.policy_id = ev.policy_id
), states AS (
    INSERT INTO consents_consentstate (subject_ref, visitor_id, purpose_id, event_id, action, effective_at, updated_at)
    SELECT subject_ref, NULL, purpose_id, id, action, moment, %(now)s FROM ev WHERE is_latest
    ON CONFLICT (subject_ref, purpose_id) WHERE subject_ref IS NOT NULL DO UPDATE
        SET event_id = EXCLUDED.event_id, action = EXCLUDED.action, effective_at = EXCLUDED.effective_at,
            updated_at = EXCLUDED.updated_at
        WHERE (EXCLUDED.effective_at, EXCLUDED.event_id) > (consents_consentstate.effective_at, consents_consentstate.event_id)
    RETURNING 1
), heads AS (
    UPDATE consents_consentchain c
    SET head_hash = ev.hash, length = ev.seq, version = c.version + 1, updated_at = %(now)s
    FROM ev
    WHERE ev.is_head AND c.id = ev.chain_id
)
SELECT (SELECT count(*) FROM ev), (SELECT count(*) FROM states)
"""  # noqa: S608 -- composed of this module's constants, never of input


def _copy_import(path, columns, *, report, actor, max_errors, watch) -> None:
    """The PostgreSQL path; raises ImportInvalid (after rolling back) when any line is bad."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('TimeZone'), current_setting('jit'), current_setting('work_mem')")
        settings_before = cursor.fetchone()
        cursor.execute("SET LOCAL timezone = 'UTC'")
        # Big estimates would make PostgreSQL compile these one-off statements with JIT, which costs more
        # (seconds of LLVM optimisation) than the rows take to process.
        cursor.execute("SET LOCAL jit = off")
        cursor.execute("SELECT set_config('work_mem', %s, true)", [WORK_MEM])
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
        for function in _TEMP_FUNCTIONS:
            cursor.execute(f"DROP {function}")
        cursor.execute(
            "SELECT set_config('TimeZone', %s, true), set_config('jit', %s, true), set_config('work_mem', %s, true)",
            settings_before,
        )
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
    return cursor.cursor.rowcount  # the records COPY loaded


def _lines_check(cursor, *, now) -> dict:
    """Build the table of parsed, joined lines; then resolve in Python, with `consents.imports.bulk`'s own rules,
    the few distinct (purpose, language, notice version), language and (country, region) values, and hand
    them back to SQL as small temporary tables. Returns what the checks and the writes need."""
    validator = bulk.RowValidator(subject_refs=(), purpose_codes=ConsentPurpose.objects.values_list("code", flat=True), now=now)
    # consents.ledger.policy_in_force as ranges: the latest published version in effect at a moment.
    cursor.execute(
        "CREATE TEMP TABLE consent_import_policy (policy_id bigint, label text, label_json text, lo timestamptz, hi timestamptz)"
        " ON COMMIT DROP"
    )
    ranges, upper = [], None
    for policy in validator.policies:  # newest effective date first
        if upper is None or policy.effective_at < upper:
            ranges.append((policy.pk, policy.label, _json(policy.label), policy.effective_at, upper))
            upper = policy.effective_at
    if ranges:
        cursor.executemany("INSERT INTO consent_import_policy VALUES (%s, %s, %s, %s, %s)", ranges)
    cursor.execute(_VALUES)
    cursor.execute(_SUBJECTS)
    cursor.execute("ANALYZE consent_import_policy, consent_import_subjects")
    cursor.execute(_MOMENT_SHAPES)
    shapes = [shape for (shape,) in cursor.fetchall() if bulk.moment_shape_ok(shape)]
    cursor.execute(_ROWS, {"moment_shapes": shapes, "default_language": bulk.DEFAULT_LANGUAGE})
    cursor.execute("ANALYZE consent_import_rows")

    # The few distinct values the checks settle in Python, in one pass over the lines.
    cursor.execute(
        "SELECT purpose_code, purpose_id IS NOT NULL, language, notice_version, account_known, country, region"
        " FROM consent_import_rows GROUP BY 1, 2, 3, 4, 5, 6, 7"
    )
    notice_keys, languages, place_keys = set(), set(), set()
    for code, purpose_known, language, version, account_known, country, region in cursor.fetchall():
        languages.add(language)
        if purpose_known:
            notice_keys.add((code, language, version))
        if account_known:
            place_keys.add((country, region))

    cursor.execute(
        "CREATE TEMP TABLE consent_import_notice (purpose text, language text, version text, found boolean,"
        " notice_id bigint, notice_version text, notice_sha256 text, nk int) ON COMMIT DROP"
    )
    notices, canon_mid, canon_purpose = [], [], []
    for nk, (code, language, version) in enumerate(sorted(notice_keys), start=1):
        notice = validator.notice_for(validator.purposes[code], version=version, language=language)
        if notice is False:
            notices.append((code, language, version, False, None, None, None, nk))
            canon_mid.append(None)
            canon_purpose.append(None)
            continue
        notice_id, notice_version, notice_sha256 = (
            (None, "", "") if notice is None else (notice.pk, notice.version, notice.sha256)
        )
        # The keys of ConsentEvent.canonical from "language" to "policy_label", and "purpose" to "receipt_id".
        canon_mid.append(
            f',"language":{_json(language)},"method":{_json(ConsentEvent.Method.IMPORT.value)},'
            f'"notice_sha256":{_json(notice_sha256)},"notice_version":{_json(notice_version)},"policy_label":'
        )
        canon_purpose.append(f'","purpose":{_json(code)},"receipt_id":"')
        notices.append((code, language, version, True, notice_id, notice_version, notice_sha256, nk))
    if notices:
        cursor.executemany("INSERT INTO consent_import_notice VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", notices)

    bad_languages = [language for language in languages if not bulk.language_ok(language)]

    cursor.execute("CREATE TEMP TABLE consent_import_place (country text, region text, code text) ON COMMIT DROP")
    places = [(country, region, bulk.jurisdiction_code_for(country, region)) for country, region in sorted(place_keys)]
    if places:
        cursor.executemany("INSERT INTO consent_import_place VALUES (%s, %s, %s)", places)
    cursor.execute("ANALYZE consent_import_notice, consent_import_place")
    return {
        "purposes": {p.pk: p.code for p in validator.purposes.values()},
        "bad_languages": bad_languages,
        "canon_mid": canon_mid,
        "canon_purpose": canon_purpose,
    }


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
    # Lock every affected chain in ascending subject_ref order (see consents.imports.bulk) and keep its head, and
    # how many lines it receives: its last new event (seq = length + lines) becomes its head.
    cursor.execute(
        "CREATE TEMP TABLE consent_import_heads ON COMMIT DROP AS"
        " SELECT c.id, c.subject_ref, c.length, c.head_hash, s.lines FROM consents_consentchain c"
        " JOIN (SELECT subject_ref, sum(lines) AS lines FROM consent_import_subjects GROUP BY subject_ref) s"
        " ON s.subject_ref = c.subject_ref ORDER BY c.subject_ref FOR UPDATE OF c"
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
    cursor.execute("SELECT current_setting('server_encoding') = 'UTF8' AND current_setting('client_encoding') = 'UTF8'")
    as_is = cursor.fetchone()[0]
    text = "prefix || previous || suffix"
    for statement in _CHAIN_FUNCTIONS:  # one statement per call: server-side binding refuses several
        cursor.execute(statement.replace("{bytes}", f"textsend({text})" if as_is else f"convert_to({text}, 'UTF8')"))
    cursor.execute(
        _WRITE,
        {
            "id_sequence": id_sequence,
            "genesis": GENESIS_HASH,
            "after_action": f'","actor_label":{_json(actor_label)},"effective_at":"',
            "after_moment": f'+00:00","gpc":false,"instruction":{_json(source.instruction)},"ip_hash":"","jurisdiction":',
            "after_receipt": f'","recorded_at":"{recorded_text}","seq":',
            "canon_mid": context["canon_mid"],
            "canon_purpose": context["canon_purpose"],
            "recorded_at": now,
            "actor_label": actor_label,
            "instruction": source.instruction,
            "method": ConsentEvent.Method.IMPORT.value,
            "now": now,
        },
    )
    result.events, result.states_changed = cursor.fetchone()
    watch.lap(
        "write",
        f"chained {result.events} events by effective time, appended them, updated {result.states_changed} consent states"
        f" and {result.subjects} chain heads",
    )

    # The counts of the audit entry, from the checked lines (each became one event) in one pass.
    cursor.execute("SELECT action, purpose_id, count(*), min(moment), max(moment) FROM consent_import_rows GROUP BY 1, 2")
    for action, purpose_id, count, earliest, latest in cursor.fetchall():
        result.actions[action] = result.actions.get(action, 0) + count
        code = context["purposes"][purpose_id]
        result.purposes[code] = result.purposes.get(code, 0) + count
        result.effective_from = earliest if result.effective_from is None else min(result.effective_from, earliest)
        result.effective_to = latest if result.effective_to is None else max(result.effective_to, latest)
    result.rows = result.events
    event = audit_record(
        actor=actor, action=bulk.IMPORT_ACTION, target=(ConsentEvent._meta.label_lower, ""), details=result.details(source)
    )
    result.audit_event_id = event.pk
    watch.lap("audit", f"audit event #{event.pk}")
    return result


def _json(value: str) -> str:
    """A string as ConsentEvent.canonical writes it."""
    return json.dumps(value, ensure_ascii=False)


def errors_text(report: ImportReport) -> str:
    """The problems as lines of text, for the command and the docs' examples."""
    out = io.StringIO()
    for error in report.errors:
        out.write(f"{error}\n")
    if report.error_count > len(report.errors):
        out.write(f"… and {report.error_count - len(report.errors)} more (raise --max-errors to list them)\n")
    return out.getvalue()
