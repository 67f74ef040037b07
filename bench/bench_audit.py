"""Benchmark of the audit trail: audit_record and audit_chain_verify against bare baselines.

    DATABASE_URL=postgres://... .venv/bin/python -m bench.bench_audit [--events 20000] [--smoke]

Runs in a scratch database created for the run and dropped at the end (the audit table is append-only,
so the bench never writes to the configured database itself): on PostgreSQL a new database next to the
configured one, on SQLite a new file in var/. Measures:
- record: audit_record (lock, head read, canonical JSON, SHA-256, ORM insert; one transaction each)
  against a raw-SQL INSERT of the same rows into a copy of the table with the same indexes and no
  chaining (one transaction each);
- verify: audit_chain_verify over the whole table against fetching the same rows with a raw
  server-side cursor and hashing each one;
- peak memory of verify (tracemalloc, measured in a separate run since tracing slows it down).
Ratios are slowdowns: our time / baseline time (1.0 = as fast as the bare baseline).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import secrets
import sys
import time
import tracemalloc
import uuid

from bench._scratch import django_setup


def _rows(n: int) -> list[dict]:
    now = datetime.datetime.now(datetime.UTC)
    subjects = [uuid.uuid4() for _ in range(max(1, n // 20))]
    return [
        {
            "occurred_at": now,
            "actor_id": None,
            "actor_label": "system",
            "action": f"bench.action{i % 10}",
            "target_type": "inventory.purpose",
            "target_id": str(i),
            "subject_ref": subjects[i % len(subjects)],
            "details": {"batch": i // 100, "deleted": i % 7, "code": f"P{i % 13}"},
        }
        for i in range(n)
    ]


def _create_baseline_table(connection, table: str, copy: str) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # LIKE copies columns, identity, constraints and indexes; not triggers (no chaining, no guard).
            cursor.execute(f"CREATE TABLE {copy} (LIKE {table} INCLUDING ALL)")
            return
        cursor.execute("SELECT type, name, sql FROM sqlite_master WHERE tbl_name = %s AND sql IS NOT NULL", [table])
        for kind, name, sql in cursor.fetchall():
            sql = sql.replace(f'"{table}"', f'"{copy}"')
            if kind == "index":
                sql = sql.replace(f'"{name}"', f'"{copy}_{name}"')
            cursor.execute(sql)


def _bench_record(rows: list[dict]) -> float:
    from privacyops.audit import audit_record
    from privacyops.audit_actions import namespace

    namespace("bench", "Benchmark event")

    start = time.perf_counter()
    for row in rows:
        audit_record(
            actor=None,
            action=row["action"],
            target=(row["target_type"], row["target_id"]),
            subject=row["subject_ref"],
            details=row["details"],
        )
    return time.perf_counter() - start


def _bench_insert_baseline(connection, copy: str, rows: list[dict]) -> float:
    from django.db import transaction

    sql = (
        f"INSERT INTO {copy} (occurred_at, actor_id, actor_label, action, target_type, target_id, subject_ref, details, "
        "prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    )
    uuid_param = (lambda u: u) if connection.vendor == "postgresql" else (lambda u: u.hex)
    prepared = [
        (
            row["occurred_at"],
            row["actor_id"],
            row["actor_label"],
            row["action"],
            row["target_type"],
            row["target_id"],
            uuid_param(row["subject_ref"]),
            json.dumps(row["details"]),
            secrets.token_hex(32),
            secrets.token_hex(32),
        )
        for row in rows
    ]
    start = time.perf_counter()
    for params in prepared:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
    return time.perf_counter() - start


def _bench_verify():
    from privacyops.audit import audit_chain_verify

    start = time.perf_counter()
    report = audit_chain_verify()
    elapsed = time.perf_counter() - start
    if not report.ok:
        raise SystemExit(f"the scratch chain does not verify: {report}")
    return elapsed, report.checked


def _bench_fetch_and_hash_baseline(connection, table: str) -> tuple[float, int]:
    from django.db import transaction

    columns = "id, occurred_at, actor_id, actor_label, action, target_type, target_id, subject_ref, details, prev_hash, hash"
    count = 0
    start = time.perf_counter()
    with transaction.atomic():
        cursor = connection.chunked_cursor()  # server-side on PostgreSQL: bounded memory, like verify
        try:
            cursor.execute(f"SELECT {columns} FROM {table} ORDER BY id")
            while batch := cursor.fetchmany(2000):
                for row in batch:
                    hashlib.sha256(json.dumps(row, default=str, separators=(",", ":")).encode()).hexdigest()
                    count += 1
        finally:
            cursor.close()
    return time.perf_counter() - start, count


def _peak_verify_mb() -> float:
    from privacyops.audit import audit_chain_verify

    tracemalloc.start()
    try:
        audit_chain_verify()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000, help="events to create (default 20000)")
    parser.add_argument("--smoke", action="store_true", help="a quick run on 200 events (CI)")
    args = parser.parse_args(argv)
    events = 200 if args.smoke else args.events

    django_setup()
    from django.conf import settings
    from django.db import connection

    from privacyops.models import AuditEvent

    vendor = connection.vendor
    scratch = (
        f"privacyops_bench_{os.getpid()}"
        if vendor == "postgresql"
        else str(settings.VAR_DIR / f"bench-audit-{os.getpid()}.sqlite3")
    )
    connection.settings_dict.setdefault("TEST", {})["NAME"] = scratch
    print(f"audit bench: {events} events on {vendor}, scratch database {scratch}", flush=True)
    original = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        table, copy = AuditEvent._meta.db_table, "bench_audit_baseline"
        _create_baseline_table(connection, table, copy)
        rows = _rows(events)

        baseline_record = _bench_insert_baseline(connection, copy, rows)
        ours_record = _bench_record(rows)
        record_per_s, baseline_record_per_s = events / ours_record, events / baseline_record
        print(
            f"record: audit_record {record_per_s:,.0f}/s, raw INSERT baseline {baseline_record_per_s:,.0f}/s, "
            f"slowdown {ours_record / baseline_record:.2f}x",
            flush=True,
        )

        baseline_verify, fetched = _bench_fetch_and_hash_baseline(connection, table)
        ours_verify, checked = _bench_verify()
        assert fetched == checked, (fetched, checked)
        verify_per_s, baseline_verify_per_s = checked / ours_verify, checked / baseline_verify
        print(
            f"verify: audit_chain_verify {verify_per_s:,.0f}/s over {checked} events, raw fetch + SHA-256 baseline "
            f"{baseline_verify_per_s:,.0f}/s, slowdown {ours_verify / baseline_verify:.2f}x",
            flush=True,
        )
        peak_mb = _peak_verify_mb()
        print(f"verify peak memory (tracemalloc): {peak_mb:.2f} MB for {checked} events", flush=True)
        print(
            f"RESULT record_per_s={record_per_s:.0f} record_ratio={ours_record / baseline_record:.2f} "
            f"verify_per_s={verify_per_s:.0f} verify_ratio={ours_verify / baseline_verify:.2f} peak_mb={peak_mb:.2f}",
            flush=True,
        )
    finally:
        connection.creation.destroy_test_db(original, verbosity=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
