"""Benchmark of the retention purge: our engine against a raw-SQL key-range DELETE and naive QuerySet.delete().

    DATABASE_URL=postgres://... .venv/bin/python -m bench.purge [--rows 100000] [--batch-size 5000] [--repeat N] [--smoke]

PostgreSQL only (COPY, template databases). Builds, in scratch databases created for the run and dropped at
the end, `--rows` expired chat messages in conversations (with attachment rows and feedback pointing at
them) and as many access-log rows, one subject in a hundred under a legal hold (bench/_purge_data.py).
Then each contender runs on its own identical copy of that database (CREATE DATABASE ... TEMPLATE):

(a) raw: psycopg and hand-written SQL, key-range batches of `--batch-size` rows, one transaction each,
    children first (attachments, feedback's link set to null, messages, then conversations left without
    messages; access logs), with the same hold anti-join (NOT EXISTS against active holds) in every batch;
(b) naive: `QuerySet.delete()` of the same rows (held subjects excluded through the ORM), one call per model;
(c) engine: two confirmed, enabled rules (user content 30 days, log data 180 days, both delete), each run
    with `purge_run_start` and `purge_run_work` in a subprocess of its own, which reports its peak RSS.

All three must leave exactly the same rows (count and ids per table, and feedback's links) and no held row
may be deleted or changed. Rates are rows removed per second; the ratios are contender rate ÷ raw rate
(1.0 = as fast as the raw baseline). The engine also runs on a data set a tenth the size, in a fresh
process again, so that `rss_growth` = peak RSS at N ÷ peak RSS at N/10 compares like with like (Django's
own footprint is in both).

With `--repeat N`, raw and engine alternate N times, each on a fresh copy, and `purge_vs_raw` is the median
of the N pairs' ratios: one run on a shared machine can be slowed by other work (0.83 and 1.29 were measured
an hour apart with the same code, 8 December 2026).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import _purge_data as purge_data
from bench._scratch import Server, django_setup, mb, proc_status_kb, schema_create, use_database

RULES = (
    # code, category, period: the bench's own rules, created enabled and confirmed in the scratch database.
    ("bench-user-content", "user-content", "P30D"),
    ("bench-log-data", "log-data", "P180D"),
)
SMOKE_ROWS = 3000
PREFIX = f"privacyops_bench_purge_{os.getpid()}"


# --- Databases ---------------------------------------------------------------------------------------


def _prepare_schema(server: Server, name: str) -> None:
    """Migrate a new database, load the register (categories), add the bench's rules; leave it closed."""
    from django.db import connection
    from django.utils import timezone

    schema_create(server, name)

    from inventory.models import DataCategory
    from retention.models import RetentionRule

    now = timezone.now()
    for code, category, period in RULES:
        RetentionRule.objects.create(
            code=code,
            name=f"Benchmark: {category} after {period}",
            category=DataCategory.objects.get(code=category),
            period=period,
            counts_from=RetentionRule.CountsFrom.CREATED,
            action=RetentionRule.Action.DELETE,
            enabled=True,
            confirmed_at=now,
        )
    connection.close()


def _fill(server: Server, name: str, *, rows: int, seed: int, now):
    with server.connect(name) as conn:
        with conn.cursor() as cursor:
            data = purge_data.build(cursor, rows=rows, seed=seed, now=now)
        conn.commit()
    with server.connect(name, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")  # every copy starts with hint bits set and fresh statistics
    return data


def _state(server: Server, name: str) -> tuple[dict, dict]:
    with server.connect(name) as conn, conn.cursor() as cursor:
        return purge_data.fingerprint(cursor), purge_data.held_rows(cursor)


# --- (a) raw SQL -------------------------------------------------------------------------------------

_NOT_HELD = "NOT EXISTS (SELECT 1 FROM retention_legalhold h WHERE h.subject_id = {} AND h.lifted_at IS NULL)"
_RAW_MESSAGES = f"""
SELECT COALESCE(array_agg(id ORDER BY id), '{{}}') FROM (
    SELECT m.id FROM chat_message m JOIN chat_conversation c ON c.id = m.conversation_id
    WHERE m.id > %(last)s AND m.created < %(cutoff)s AND {_NOT_HELD.format("c.user_id")}
      AND NOT EXISTS (SELECT 1 FROM chat_feedback f WHERE f.message_id = m.id AND NOT {_NOT_HELD.format("f.user_id")})
    ORDER BY m.id LIMIT %(batch)s
) batch
"""
_RAW_CONVERSATIONS = f"""
WITH gone AS (
    DELETE FROM chat_conversation WHERE id IN (
        SELECT c.id FROM chat_conversation c
        WHERE c.id > %(last)s AND c.created < %(cutoff)s AND {_NOT_HELD.format("c.user_id")}
          AND NOT EXISTS (SELECT 1 FROM chat_message m WHERE m.conversation_id = c.id)
        ORDER BY c.id LIMIT %(batch)s
    ) RETURNING id
) SELECT count(*), max(id) FROM gone
"""
_RAW_LOGS = f"""
WITH gone AS (
    DELETE FROM chat_accesslog WHERE id IN (
        SELECT l.id FROM chat_accesslog l
        WHERE l.id > %(last)s AND l.created < %(cutoff)s AND {_NOT_HELD.format("l.user_id")}
        ORDER BY l.id LIMIT %(batch)s
    ) RETURNING id
) SELECT count(*), max(id) FROM gone
"""


def _raw_purge(server: Server, name: str, data, batch: int) -> dict[str, int]:
    """Key-range batches, one transaction each, children before parents; returns batches per step."""
    batches = {"messages": 0, "conversations": 0, "logs": 0}
    with server.connect(name) as conn, conn.cursor() as cursor:
        last = 0
        while True:
            cursor.execute(_RAW_MESSAGES, {"last": last, "cutoff": data.user_content_cutoff, "batch": batch})
            ids = cursor.fetchone()[0]
            if not ids:
                conn.rollback()
                break
            cursor.execute("DELETE FROM chat_attachment WHERE message_id = ANY(%s)", [ids])
            cursor.execute("UPDATE chat_feedback SET message_id = NULL WHERE message_id = ANY(%s)", [ids])
            cursor.execute("DELETE FROM chat_message WHERE id = ANY(%s)", [ids])
            conn.commit()
            last = ids[-1]
            batches["messages"] += 1
        for step, sql, cutoff in (
            ("conversations", _RAW_CONVERSATIONS, data.user_content_cutoff),
            ("logs", _RAW_LOGS, data.log_data_cutoff),
        ):
            last = 0
            while True:
                cursor.execute(sql, {"last": last, "cutoff": cutoff, "batch": batch})
                count, top = cursor.fetchone()
                conn.commit()
                if not count:
                    break
                last = top
                batches[step] += 1
    return batches


# --- (b) naive QuerySet.delete() ----------------------------------------------------------------------


def _naive_purge(name: str, data) -> dict[str, int]:
    from django.db.models import Exists, OuterRef

    from chat.models import AccessLog, Conversation, Feedback, Message
    from retention.models import LegalHold

    def held(path):
        return Exists(LegalHold.objects.filter(subject=OuterRef(path), lifted_at__isnull=True))

    use_database(name)
    deleted: dict[str, int] = {}
    held_feedback = Feedback.objects.filter(message=OuterRef("pk")).filter(held("user"))
    for queryset in (
        Message.objects.filter(created__lt=data.user_content_cutoff).filter(~held("conversation__user"), ~Exists(held_feedback)),
        Conversation.objects.filter(created__lt=data.user_content_cutoff).filter(
            ~held("user"), ~Exists(Message.objects.filter(conversation=OuterRef("pk")))
        ),
        AccessLog.objects.filter(created__lt=data.log_data_cutoff).filter(~held("user")),
    ):
        _, per_model = queryset.delete()
        for label, count in per_model.items():
            deleted[label] = deleted.get(label, 0) + count
    from django.db import connection

    connection.close()
    return deleted


# --- (c) the engine, in a process of its own -----------------------------------------------------------


def _engine_process(server: Server, name: str, batch: int) -> dict:
    """Run `--engine-run` in a subprocess on database `name`; returns what it reports (a JSON line)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CELERY_")}
    env.update(DATABASE_URL=server.url(name), DJANGO_SETTINGS_MODULE="privacyops.settings")
    command = [sys.executable, "-m", "bench.purge", "--engine-run", "--batch-size", str(batch)]
    done = subprocess.run(  # noqa: S603 -- a fixed argv: this interpreter running this module
        command, env=env, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"the engine run failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _engine_run(batch: int) -> int:
    """Subprocess side: run each bench rule to completion with the engine in this process; print a JSON line."""
    django_setup()
    from retention.engine import purge_run_work
    from retention.models import PurgeRun, RetentionRule
    from retention.services import purge_run_start

    worker = f"bench-{os.getpid()}"
    rss_before = proc_status_kb("VmRSS")
    report: dict = {"runs": []}
    start = time.perf_counter()
    for code, _category, _period in RULES:
        run = purge_run_start(rule=RetentionRule.objects.get(code=code), batch_size=batch, enqueue=False)
        stuck = 0
        while not run.is_finished:
            before = run.batches_done
            run = purge_run_work(run.pk, worker=worker)
            stuck = stuck + 1 if run.batches_done == before and not run.is_finished else 0
            if stuck > 3:
                raise SystemExit(f"run {run.pk} makes no progress (lease {run.lease_owner!r} until {run.lease_expires_at})")
        if run.status != PurgeRun.Status.COMPLETED:
            raise SystemExit(f"run {run.pk} of {code} ended {run.status}: {run.error}")
        report["runs"].append({"rule": code, "batches": run.batches_done, "counts": run.counts})
    report["seconds"] = time.perf_counter() - start
    report["rss_before_kb"] = rss_before
    report["peak_rss_kb"] = proc_status_kb("VmHWM")
    print(json.dumps(report), flush=True)
    return 0


# --- Report -------------------------------------------------------------------------------------------


def _removed(before: dict, after: dict) -> int:
    """Rows deleted, over every table (the contenders must delete the same rows, so the same number)."""
    return sum(before[table][0] - after[table][0] for table in purge_data.TABLES)


def _held_deleted(before: dict, after: dict) -> int:
    return sum(max(0, before[table] - after[table]) for table in before)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="expired messages, and access logs (default 100000)")
    parser.add_argument("--batch-size", type=int, default=None, help="rows per batch (default RETENTION_BATCH_SIZE)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="raw/engine pairs, alternating (median ratio reported)")
    parser.add_argument("--smoke", action="store_true", help=f"a quick run on {SMOKE_ROWS} rows (CI)")
    parser.add_argument("--database-url", help="PostgreSQL server to use (default: DATABASE_URL)")
    parser.add_argument("--engine-run", action="store_true", help=argparse.SUPPRESS)  # the subprocess side
    args = parser.parse_args(argv)
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    if args.engine_run:
        return _engine_run(args.batch_size)
    rows = SMOKE_ROWS if args.smoke else args.rows

    django_setup()
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    if connection.vendor != "postgresql":
        print(
            f"bench.purge measures PostgreSQL only (COPY, template databases); the configured database is "
            f"{connection.vendor}. Set DATABASE_URL=postgres://... or pass --database-url.",
            file=sys.stderr,
        )
        return 2
    batch = args.batch_size or settings.RETENTION_BATCH_SIZE
    small_rows = max(1, rows // 10)
    server = Server(connection.settings_dict)
    print(f"purge bench: {rows} expired messages and {rows} access logs, batch {batch}, scratch {PREFIX}_*", flush=True)
    try:
        schema, base, small = f"{PREFIX}_schema", f"{PREFIX}_base", f"{PREFIX}_small"
        started = time.perf_counter()
        _prepare_schema(server, schema)
        server.copy(schema, base)
        server.copy(schema, small)
        now = timezone.now().replace(microsecond=0)
        data = _fill(server, base, rows=rows, seed=args.seed, now=now)
        _fill(server, small, rows=small_rows, seed=args.seed, now=now)
        before, held_before = _state(server, base)
        print(
            f"built in {time.perf_counter() - started:.1f}s: "
            + ", ".join(f"{table} {count}" for table, count in data.written.items())
            + f"; {len(data.held)} of {len(data.subjects)} subjects held; held rows {held_before}",
            flush=True,
        )

        results: dict[str, dict] = {}
        ratios: list[float] = []  # engine rate / raw rate, one per repeat
        earlier: list[dict] = []
        order = [*(["raw", "engine"] * args.repeat), "naive"]
        for position, contender in enumerate(order):
            name = server.copy(base, f"{PREFIX}_{contender}")
            start = time.perf_counter()
            if contender == "raw":
                detail = _raw_purge(server, name, data, batch)
                seconds = time.perf_counter() - start
            elif contender == "naive":
                detail = _naive_purge(name, data)
                seconds = time.perf_counter() - start
            else:
                detail = _engine_process(server, name, batch)
                seconds = detail["seconds"]
            after, held_after = _state(server, name)
            server.drop(name)
            removed = _removed(before, after)
            results[contender] = {
                "seconds": seconds,
                "after": after,
                "removed": removed,
                # Over every repeat: a held row touched by any run counts.
                "held_deleted": max(_held_deleted(held_before, held_after), results.get(contender, {}).get("held_deleted", 0)),
                "detail": detail,
            }
            if contender in ("raw", "engine") and any(results[contender]["after"] != r["after"] for r in earlier):
                results[contender]["after"] = None  # two runs of one contender left different rows: reported below
            earlier.append(results[contender])
            if contender == "engine":
                ratios.append((removed / seconds) / (results["raw"]["removed"] / results["raw"]["seconds"]))
            print(
                f"{contender:>6}: {seconds:8.2f}s, {removed / seconds:10,.0f} rows/s, removed {removed}, "
                f"held rows deleted or changed {results[contender]['held_deleted']} (load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
            if contender == "engine" and args.repeat > 1:
                print(f"        repeat {position // 2 + 1}: purge_vs_raw {ratios[-1]:.2f}", flush=True)
        for run in results["engine"]["detail"]["runs"]:
            print(f"        engine {run['rule']}: {run['batches']} batches, counts {json.dumps(run['counts'])}", flush=True)

        same = all(results[name]["after"] == results["raw"]["after"] for name in results)
        if not same:
            for name, result in results.items():
                print(f"rows left by {name}: {result['after']}", file=sys.stderr)

        small_report = _engine_process(server, small, batch)
        big_report = results["engine"]["detail"]
        rss_big, rss_small = big_report["peak_rss_kb"], small_report["peak_rss_kb"]
        print(
            f"engine peak RSS: {mb(rss_big):.1f} MB at {rows} rows, {mb(rss_small):.1f} MB at {small_rows} rows "
            f"(Django before the run: {mb(big_report['rss_before_kb']):.1f} / {mb(small_report['rss_before_kb']):.1f} MB)",
            flush=True,
        )
        raw_rate = results["raw"]["removed"] / results["raw"]["seconds"]
        # The median pair: raw and engine alternate, each on a fresh copy, so drift on a shared machine hits both.
        purge_vs_raw = sorted(ratios)[len(ratios) // 2]
        naive_vs_raw = (results["naive"]["removed"] / results["naive"]["seconds"]) / raw_rate
        held_deleted = results["engine"]["held_deleted"]
        print(f"same rows left by raw, engine and naive: {'yes' if same else 'NO'}", flush=True)
        print(
            f"RESULT purge_vs_raw={purge_vs_raw:.2f} naive_vs_raw={naive_vs_raw:.2f} "
            f"rss_growth={rss_big / rss_small:.2f} held_deleted={held_deleted}",
            flush=True,
        )
        baseline_held = results["raw"]["held_deleted"] + results["naive"]["held_deleted"]
        return 0 if same and held_deleted == 0 and baseline_held == 0 else 1
    finally:
        connection.close()
        server.drop_all()


if __name__ == "__main__":
    sys.exit(main())
