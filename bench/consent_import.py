"""Benchmark of the historical-consent import: the admin path, tuned and with the library's defaults, and
the COPY path of `import_consents` against a raw COPY of the same file.

    DATABASE_URL=postgres://... .venv/bin/python -m bench.consent_import [--rows 1000000] [--admin-rows 20000] [--smoke]

PostgreSQL only (COPY, template databases). In scratch databases created for the run and dropped at the
end: the schema and the register (`loadpolicy`), then accounts for every subject the files name
(bench/_consent_import_data.py, deterministic for a seed), and two CSV files of historical consents.
Every contender runs on its own copy of that database (CREATE DATABASE ... TEMPLATE):

(a) The admin's import as the DPO sees it -- the preview (a dry run) and then the confirmation, each
    reading the file into a dataset -- of `--admin-rows` rows, both writing through the ledger's rules:
    `DefaultConsentEventResource` (django-import-export's defaults, each row through
    `consents.ledger.consent_record`) and `ConsentEventResource` (the admin's tuned resource, bulk through
    `consents.imports.bulk`). tuned_vs_default = default time / tuned time (higher is better; target >= 4).
(b) `--rows` rows: a raw `COPY FROM` of the file into a bare table with the same columns (typed as the data
    is: uuid, text, timestamptz), against the whole import of `consents.imports.file_import.consent_file_import` --
    checksum, staging COPY, every check, chains and hashes, events, states, heads, audit, commit.
    copy_path_vs_raw_copy = raw time / our time (1.0 = as fast as loading the file; target >= 0.3).
    Then the floor: the events the import wrote, copied into an empty twin of the ledger table (same
    columns, checks, indexes and foreign keys) and committed -- what writing the ledger alone costs,
    whatever an import does before. ledger_floor_vs_raw_copy = raw time / floor time is the best
    copy_path_vs_raw_copy any import could reach; copy_path_vs_floor = floor time / our time.

With `--repeat N` the import and its floor run N times, each pair on a fresh copy of the database, and the
median pair (by copy_path_vs_floor) is reported: on a shared machine one run can be slowed by other work.

Every import is checked afterwards: as many events as rows, every chain linked (seq, prev_hash, head),
hashes recomputed with `ConsentEvent.compute_hash` (all of them for (a), a sample of chains for (b)), and
every consent state equal to the latest event of its account and purpose. The exit code is 1 if any check
fails; the targets are reported, not enforced (the smoke sizes are far too small to mean anything).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from bench import _consent_import_data as data
from bench._scratch import Server, django_setup, proc_status_kb, schema_create, use_database

SMOKE_ROWS, SMOKE_ADMIN_ROWS = 1000, 40
PREFIX = f"privacyops_bench_consent_import_{os.getpid()}"
SAMPLE_CHAINS = 2000


# --- The data ------------------------------------------------------------------------------------------


def _prepare(server: Server, name: str, refs, *, seed: int, now) -> None:
    """Migrate a new database, load the register, make sure the consent purposes have a notice v1, and
    add an account for every subject ref; leave it closed."""
    from django.db import connection

    schema_create(server, name)
    _purposes_ensure()
    connection.close()
    with server.connect(name) as conn:
        with conn.cursor() as cursor:
            data.accounts_write(cursor, refs, seed=seed, now=now)
        conn.commit()
    with server.connect(name, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")


def _purposes_ensure() -> None:
    """The seeded consent purposes (loadpolicy) -- or, on a register without them, the same codes."""
    from consents.models import ConsentNotice, ConsentPurpose
    from inventory.models import Purpose

    register_purpose = Purpose.objects.order_by("code").first()
    for code in (*data.PURPOSES, data.NECESSARY):
        purpose, _ = ConsentPurpose.objects.get_or_create(
            code=code,
            defaults={
                "name": code.replace("-", " ").capitalize(),
                "description": "Benchmark purpose.",
                "purpose": register_purpose,
                "is_necessary": code == data.NECESSARY,
            },
        )
        if not ConsentNotice.objects.filter(purpose=purpose, version="1", language="en").exists():
            ConsentNotice.objects.create(purpose=purpose, version="1", language="en", text=f"May we? ({code}, v1)")


# --- Checks --------------------------------------------------------------------------------------------

_LINK_PROBLEMS = """
SELECT
  (SELECT count(*) FROM consents_consentevent e JOIN consents_consentevent p ON p.chain_id = e.chain_id AND p.seq = e.seq - 1
    WHERE e.prev_hash <> p.hash)
+ (SELECT count(*) FROM consents_consentevent WHERE seq = 1 AND prev_hash <> %(genesis)s)
+ (SELECT count(*) FROM consents_consentchain c
    WHERE c.length <> (SELECT count(*) FROM consents_consentevent e WHERE e.chain_id = c.id)
    OR c.head_hash <> coalesce(
        (SELECT e.hash FROM consents_consentevent e WHERE e.chain_id = c.id AND e.seq = c.length), %(genesis)s))
"""

_STATE_PROBLEMS = """
WITH latest AS (
  SELECT DISTINCT ON (subject_ref, purpose_id) subject_ref, purpose_id, id
  FROM consents_consentevent WHERE subject_ref IS NOT NULL ORDER BY subject_ref, purpose_id, effective_at DESC, id DESC
)
SELECT count(*) FROM latest l FULL JOIN consents_consentstate s ON s.subject_ref = l.subject_ref AND s.purpose_id = l.purpose_id
WHERE s.event_id IS DISTINCT FROM l.id
"""


def _check(expected_events: int, *, sample_chains: int | None) -> list[str]:
    """Problems with the ledger of the current database (see the module docstring); empty when all is well."""
    from django.db import connection

    from consents.models import GENESIS_HASH, ConsentChain, ConsentEvent

    problems = []
    events = ConsentEvent.objects.count()
    if events != expected_events:
        problems.append(f"{events} events, expected {expected_events}")
    with connection.cursor() as cursor:
        cursor.execute(_LINK_PROBLEMS, {"genesis": GENESIS_HASH})
        if links := cursor.fetchone()[0]:
            problems.append(f"{links} broken links or heads")
        cursor.execute(_STATE_PROBLEMS)
        if states := cursor.fetchone()[0]:
            problems.append(f"{states} consent states differ from the ledger")
    chains = ConsentChain.objects.order_by("id").values_list("id", flat=True)
    if sample_chains is not None:
        chains = chains[:sample_chains]
    bad = 0
    for event in ConsentEvent.objects.filter(chain_id__in=list(chains)).select_related("purpose").iterator(chunk_size=5000):
        bad += event.compute_hash(purpose_code=event.purpose.code) != event.hash
    if bad:
        problems.append(f"{bad} hashes do not recompute")
    return problems


# --- (a) the admin path --------------------------------------------------------------------------------


def _admin_run(resource_class, path: Path, *, actor_email: str) -> dict:
    """Preview (dry run) then confirmation, as the admin does them, each reading the file afresh."""
    import tablib

    from accounts.models import User
    from consents.imports.bulk import ImportSource

    actor = User.objects.get(email=actor_email)
    source = ImportSource.for_path(path, channel="admin")
    timings = {}
    for step, dry_run in (("preview", True), ("confirm", False)):
        start = time.perf_counter()
        dataset = tablib.Dataset().load(path.read_text(encoding="utf-8"), format="csv")
        resource = resource_class(source=source)
        result = resource.import_data(
            dataset, dry_run=dry_run, raise_errors=False, use_transactions=True, rollback_on_validation_errors=True, user=actor
        )
        timings[step] = time.perf_counter() - start
        if result.has_errors() or result.has_validation_errors():
            first = [str(e.error) for e in result.base_errors][:1] + [
                f"row {row.number}: {row.error_dict}" for row in result.invalid_rows[:1]
            ]
            raise SystemExit(f"{resource_class.__name__} {step} failed: {first}")
    return timings


def _dpo_create() -> str:
    from django.contrib.auth.models import Group

    from accounts.models import User

    user = User.objects.create_user(email="bench-dpo@privacyops.test", password=None, name="Bench DPO", is_staff=True)
    user.groups.add(Group.objects.get(name="DPO"))
    return user.email


# --- (b) the COPY path ---------------------------------------------------------------------------------


def _raw_copy(server: Server, name: str, path: Path) -> tuple[float, int]:
    with server.connect(name) as conn:
        conn.execute(
            "CREATE TABLE bench_raw_consents (subject_ref uuid, purpose text, action text, effective_at timestamptz,"
            " language text, jurisdiction text, notice_version text)"
        )
        conn.commit()
        start = time.perf_counter()
        statement = "COPY bench_raw_consents FROM STDIN WITH (FORMAT csv, HEADER true)"
        with conn.cursor() as cursor, open(path, "rb") as handle, cursor.copy(statement) as copy:
            while block := handle.read(1 << 20):
                copy.write(block)
        conn.commit()
        seconds = time.perf_counter() - start
        loaded = conn.execute("SELECT count(*) FROM bench_raw_consents").fetchone()[0]
    return seconds, loaded


def _table_shape(conn, table: str) -> tuple[list, list]:
    """The indexes and constraints of a table with its own names left out, to compare the twin with the ledger."""
    indexes = [
        re.sub(r"INDEX \S+ ON \S+ ", "INDEX ON t ", definition)
        for (definition,) in conn.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass", [table]
        )
    ]
    constraints = conn.execute(
        "SELECT contype::text, condeferrable, condeferred, confrelid::regclass::text, pg_get_constraintdef(oid)"
        " FROM pg_constraint WHERE conrelid = %s::regclass",
        [table],
    ).fetchall()
    return sorted(indexes), sorted(constraints)


def _ledger_floor(server: Server, name: str) -> tuple[float, float]:
    """Seconds to write the events just imported into an empty twin of the ledger table -- the same columns,
    checks, indexes and foreign keys (deferred, as Django makes them) -- and commit (the deferred key checks
    run there): the insert's and the commit's. No import can write the ledger faster than their sum, whatever
    it does before. The twin's shape is compared with the ledger's first; a difference stops the bench."""
    with server.connect(name) as conn:
        conn.execute("CREATE TABLE bench_floor_events (LIKE consents_consentevent INCLUDING ALL)")
        keys = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'consents_consentevent'::regclass"
            " AND contype = 'f'"
        ).fetchall()
        for (definition,) in keys:
            conn.execute(f"ALTER TABLE bench_floor_events ADD {definition}")
        conn.commit()
        ledger, twin = _table_shape(conn, "consents_consentevent"), _table_shape(conn, "bench_floor_events")
        if ledger != twin:
            raise SystemExit(f"the floor's twin table differs from the ledger: {ledger} != {twin}")
        start = time.perf_counter()
        conn.execute("INSERT INTO bench_floor_events SELECT * FROM consents_consentevent")
        inserted = time.perf_counter()
        conn.commit()
        return inserted - start, time.perf_counter() - inserted


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the COPY-path file (default 1000000)")
    parser.add_argument("--admin-rows", type=int, default=20_000, help="rows of the admin file (default 20000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="import + floor pairs, each on a fresh copy (median reported)")
    parser.add_argument("--smoke", action="store_true", help=f"a quick run: {SMOKE_ROWS} and {SMOKE_ADMIN_ROWS} rows (CI)")
    parser.add_argument("--database-url", help="PostgreSQL server to use (default: DATABASE_URL)")
    parser.add_argument("--workdir", help="where to write the CSV files (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    rows, admin_rows = (SMOKE_ROWS, SMOKE_ADMIN_ROWS) if args.smoke else (args.rows, args.admin_rows)

    django_setup()
    from django.db import connection
    from django.utils import timezone

    from consents.imports.file_import import consent_file_import
    from consents.imports.resources import ConsentEventResource, DefaultConsentEventResource

    if connection.vendor != "postgresql":
        print(
            f"bench.consent_import measures PostgreSQL only (COPY, template databases); the configured database is "
            f"{connection.vendor}. Set DATABASE_URL=postgres://... or pass --database-url.",
            file=sys.stderr,
        )
        return 2
    server = Server(connection.settings_dict)
    subjects = max(1, max(rows, admin_rows) // data.EVENTS_PER_SUBJECT)
    print(f"consent import bench: admin {admin_rows} rows, COPY path {rows} rows, {subjects} subjects, scratch {PREFIX}_*")
    workdir = tempfile.TemporaryDirectory(prefix="consent-import-bench-", dir=args.workdir)
    problems: dict[str, list[str]] = {}
    try:
        started = time.perf_counter()
        now = timezone.now().replace(microsecond=0)
        refs = data.subject_refs(subjects, seed=args.seed)
        admin_file, copy_file = Path(workdir.name) / "admin.csv", Path(workdir.name) / "history.csv"
        data.csv_write(admin_file, refs, rows=admin_rows, seed=args.seed, now=now)
        data.csv_write(copy_file, refs, rows=rows, seed=args.seed, now=now)
        base = f"{PREFIX}_base"
        _prepare(server, base, refs, seed=args.seed, now=now)
        use_database(base)
        dpo_email = _dpo_create()
        use_database("postgres")
        print(
            f"built in {time.perf_counter() - started:.1f}s: {subjects} accounts; files of "
            f"{admin_file.stat().st_size / 1e6:.1f} MB and {copy_file.stat().st_size / 1e6:.1f} MB",
            flush=True,
        )

        # (a) the admin path
        admin: dict[str, dict] = {}
        for label, resource_class in (("default", DefaultConsentEventResource), ("tuned", ConsentEventResource)):
            name = server.copy(base, f"{PREFIX}_{label}")
            use_database(name)
            admin[label] = _admin_run(resource_class, admin_file, actor_email=dpo_email)
            problems[f"admin {label}"] = _check(admin_rows, sample_chains=None)
            use_database("postgres")
            server.drop(name)
            total = sum(admin[label].values())
            print(
                f"admin {label:>7}: preview {admin[label]['preview']:7.2f}s + confirm {admin[label]['confirm']:7.2f}s = "
                f"{total:7.2f}s ({admin_rows / admin[label]['confirm']:,.0f} rows/s at the confirmation)",
                flush=True,
            )
        tuned_vs_default = sum(admin["default"].values()) / sum(admin["tuned"].values())
        tuned_vs_default_confirm = admin["default"]["confirm"] / admin["tuned"]["confirm"]

        # (b) the COPY path against a raw COPY of the same file
        name = server.copy(base, f"{PREFIX}_raw")
        raw_seconds, loaded = _raw_copy(server, name, copy_file)
        server.drop(name)
        print(
            f"raw COPY : {raw_seconds:8.2f}s, {loaded / raw_seconds:10,.0f} rows/s ({loaded} rows into a bare table)", flush=True
        )
        pairs = []  # (our seconds, floor seconds), one per repeat, each on a fresh copy of the database
        for repeat in range(args.repeat):
            name = server.copy(base, f"{PREFIX}_copy")
            use_database(name)
            rss_before = proc_status_kb("VmHWM") / 1024
            start = time.perf_counter()
            report = consent_file_import(path=copy_file, dry_run=False, max_errors=5)
            ours = time.perf_counter() - start
            if not report.ok:
                raise SystemExit("the COPY path refused the file: " + "; ".join(str(e) for e in report.errors))
            phases = ", ".join(f"{phase} {seconds:.2f}s" for phase, seconds in report.timings.items())
            load = os.getloadavg()[0]
            print(f"our COPY : {ours:8.2f}s, {rows / ours:10,.0f} rows/s ({phases}; load {load:.2f})", flush=True)
            print(
                f"           peak RSS {proc_status_kb('VmHWM') / 1024:.0f} MB (before the import {rss_before:.0f} MB)", flush=True
            )
            problems[f"copy path #{repeat + 1}"] = _check(rows, sample_chains=SAMPLE_CHAINS)
            use_database("postgres")
            floor_insert, floor_commit = _ledger_floor(server, name)
            floor = floor_insert + floor_commit
            server.drop(name)
            pairs.append((ours, floor))
            print(
                f"floor    : {floor:8.2f}s to write the same {rows} events into an empty twin of the ledger table (its "
                f"indexes, checks and deferred foreign keys; insert {floor_insert:.2f}s, commit {floor_commit:.2f}s) = "
                f"{raw_seconds / floor:.2f}x the raw COPY; our import is {floor / ours:.2f}x that floor",
                flush=True,
            )
        # The median pair by ratio: on a shared machine one run can be slowed by whatever else runs.
        ours, floor = sorted(pairs, key=lambda pair: pair[1] / pair[0])[len(pairs) // 2]
        copy_vs_raw = raw_seconds / ours
        if len(pairs) > 1:
            ratios = ", ".join(f"{f / o:.2f}" for o, f in pairs)
            print(f"copy_path_vs_floor per repeat: {ratios}; the median pair is reported", flush=True)

        failed = {label: found for label, found in problems.items() if found}
        for label, found in failed.items():
            print(f"CHECK FAILED {label}: {'; '.join(found)}", file=sys.stderr)
        print(
            f"checks (event counts, chain links and heads, recomputed hashes, states): {'all pass' if not failed else 'FAILED'}"
        )
        print(
            f"RESULT tuned_vs_default={tuned_vs_default:.2f} copy_path_vs_raw_copy={copy_vs_raw:.2f} "
            f"tuned_vs_default_confirm={tuned_vs_default_confirm:.2f} copy_rows_per_s={rows / ours:.0f} "
            f"raw_rows_per_s={loaded / raw_seconds:.0f} ledger_floor_vs_raw_copy={raw_seconds / floor:.2f} "
            f"copy_path_vs_floor={floor / ours:.2f}",
            flush=True,
        )
        return 1 if failed else 0
    finally:
        connection.close()
        server.drop_all()
        workdir.cleanup()


if __name__ == "__main__":
    sys.exit(main())
