"""Benchmark of the access package build against the least a package pipeline must do.

    DATABASE_URL=postgres://... .venv/bin/python -m bench.export [--rows 1000000] [--smoke]

PostgreSQL only. In scratch databases created for the run (and dropped at the end), one subject with
`--rows` chat messages (in conversations of 50), a tenth as many access-log rows and a tenth as many usage
events, filled by generate_series on the server. Two contenders, each in a fresh subprocess (which reports
its own peak RSS), on the same database:

(a) baseline: for every table the package holds, `COPY (SELECT <every column> FROM <table> WHERE <the
    subject's rows>) TO STDOUT (FORMAT csv)` streamed into one ZIP member per table at the package's deflate
    level, with the SHA-256 of each member: one COPY per table, nothing else;
(b) ours: `requests.exports.export_package_work` on an approved, verified access request: JSON and CSV
    per table, schema, processing, index, manifest, AES-GCM encryption and the upload to storage.

`export_vs_copy` = baseline seconds ÷ our seconds (1.0 = as fast as the baseline; the target is ≥ 0.5,
since we write every row twice, as JSON and as CSV). Our build runs again on a database with N/100 rows,
so `rss_growth` = peak RSS at N ÷ peak RSS at N/100 (target ≤ 1.5 between 10k and 1M: memory must not
follow the row count). `files` and `rows` are our package's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._scratch import Server, django_setup, mb, proc_status_kb, schema_create, use_database

SMOKE_ROWS = 2000
PREFIX = f"privacyops_bench_export_{os.getpid()}"
SUBJECT_EMAIL = "bench-subject@example.org"


# --- Databases ---------------------------------------------------------------------------------------


def _prepare_schema(server: Server, name: str) -> None:
    """Migrate a new database and load the register (processing.json reads it); leave it closed."""
    from django.db import connection

    schema_create(server, name)
    connection.close()


FILL = """
INSERT INTO chat_conversation (user_id, title, created, updated)
SELECT %(user)s, 'Conversation ' || g, now() - g * interval '1 hour', now() - g * interval '1 hour'
FROM generate_series(1, %(conversations)s) g;

INSERT INTO chat_message (conversation_id, role, content, created)
SELECT c.first + (g - 1) / 50,
       CASE WHEN g %% 2 = 0 THEN 'assistant' ELSE 'user' END,
       'Message ' || g || ': ' || md5(g::text) || ' ' || md5((g * 7)::text) || ' and some words, "quoted", on' || E'\n' ||
       'two lines ' || md5((g * 13)::text),
       now() - (%(messages)s - g) * interval '1 second'
FROM generate_series(1, %(messages)s) g,
     (SELECT min(id) AS first FROM chat_conversation WHERE user_id = %(user)s) c;

INSERT INTO chat_accesslog (user_id, ip_address, device_brand, device_model, device_id, browser, user_agent, path, created)
SELECT %(user)s, ('10.0.' || (g / 250) %% 250 || '.' || g %% 250)::inet, 'Google', 'Pixel 8', md5(g::text), 'Chrome 124',
       'Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/124.0 Mobile Safari/537.36', '/api/messages/' || g,
       now() - g * interval '1 second'
FROM generate_series(1, %(side)s) g;

INSERT INTO chat_usageevent (user_id, event_type, feature, country, time_zone, user_agent, device_type, connection, created)
SELECT %(user)s, (ARRAY['message_sent', 'conversation_opened', 'feedback_given'])[1 + g %% 3], 'chat', 'SG', 'Asia/Singapore',
       'Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/124.0 Mobile Safari/537.36', 'mobile', 'wifi',
       now() - g * interval '1 second'
FROM generate_series(1, %(side)s) g;
"""


def _fill(server: Server, name: str, *, rows: int) -> dict:
    """The subject (through the ORM, so its account row is as the app makes it) and its rows (on the server)."""
    from accounts.models import User

    use_database(name)
    user = User.objects.create_user(email=SUBJECT_EMAIL, password="bench-password-not-used", country="SG")  # noqa: S106
    from django.db import connection

    connection.close()
    side = max(1, rows // 10)
    with server.connect(name) as conn:
        values = {"user": user.pk, "messages": rows, "conversations": max(1, -(-rows // 50)), "side": side}
        for statement in FILL.split(";\n\n"):
            conn.execute(statement, values)
        conn.commit()
    with server.connect(name, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    return {"messages": rows, "access_logs": side, "usage_events": side}


# --- The contenders, each in a subprocess of its own -------------------------------------------------------


def _child(server: Server, name: str, role: str) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CELERY_")}
    env.update(DATABASE_URL=server.url(name), DJANGO_SETTINGS_MODULE="privacyops.settings")
    with tempfile.TemporaryDirectory(prefix="bench-export-media-") as media:
        env["MEDIA_ROOT"] = media
        command = [sys.executable, "-m", "bench.export", "--child", role]
        done = subprocess.run(  # noqa: S603 -- a fixed argv: this interpreter running this module
            command, env=env, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True
        )
    if done.returncode != 0:
        raise SystemExit(f"the {role} run failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _subject():
    from accounts.models import User

    return User.objects.get(email=SUBJECT_EMAIL)


def _baseline_run() -> dict:
    """COPY of the same rows (every column, the same WHERE) into a ZIP at the same level, hashing each member."""
    import hashlib
    import zipfile

    from django.db import connection

    from requests import exports

    subject = _subject()
    rss_before = proc_status_kb("VmRSS")
    start = time.perf_counter()
    rows = members = 0
    with tempfile.TemporaryDirectory(prefix="bench-export-") as scratch:
        target = Path(scratch) / "baseline.zip"
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=exports.DEFLATE_LEVEL) as archive:
            connection.ensure_connection()
            for table in exports.subject_tables(subject):
                columns = [f.attname for f in table.declaration.model._meta.concrete_fields]
                sql, params = table.queryset.order_by().values_list(*columns).query.sql_with_params()
                digest = hashlib.sha256()
                with (
                    archive.open(table.member + ".csv", "w", force_zip64=True) as member,
                    connection.connection.cursor() as cursor,
                ):
                    with cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)", params) as copy:
                        for data in copy:
                            digest.update(data)
                            member.write(data)
                    rows += cursor.rowcount
                members += 1
        size = target.stat().st_size
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rows": rows,
        "files": members,
        "bytes": size,
        "rss_before_kb": rss_before,
        "peak_rss_kb": proc_status_kb("VmHWM"),
    }


def _package_run() -> dict:
    """An approved, verified access request of the subject, then the export job, timed."""
    import datetime

    from django.utils import timezone

    from inventory.models import Jurisdiction
    from requests import exports
    from requests.models import ExportPackage, JobStatus, Right, RightsRequest, Status

    subject = _subject()
    now = timezone.now()
    rights_request = RightsRequest.objects.create(
        reference=f"DSR-BENCH-{os.getpid()}",
        subject=subject,
        subject_ref=subject.subject_ref,
        contact_email=subject.email,
        jurisdiction=Jurisdiction.objects.get(code=Jurisdiction.DEFAULT),
        right=Right.ACCESS,
        status=Status.FULFILLING,
        verified_at=now,
        approved_at=now,
        due_at=now + datetime.timedelta(days=30),
        job_status=JobStatus.QUEUED,
    )
    rss_before = proc_status_kb("VmRSS")
    start = time.perf_counter()
    package = exports.export_package_work(request_id=rights_request.pk)
    seconds = time.perf_counter() - start
    package.refresh_from_db()
    rights_request.refresh_from_db()
    if package.status != ExportPackage.Status.READY or rights_request.status != Status.COMPLETED:
        raise SystemExit(f"package {package.status}, request {rights_request.status}: {rights_request.job_error}")
    return {
        "seconds": seconds,
        "rows": package.rows,
        "files": package.files,
        "bytes": package.size_bytes,
        "counts": rights_request.job_result.get("counts", {}),
        "rss_before_kb": rss_before,
        "peak_rss_kb": proc_status_kb("VmHWM"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="the subject's messages (default 1000000)")
    parser.add_argument("--smoke", action="store_true", help=f"a quick run on {SMOKE_ROWS} messages (CI)")
    parser.add_argument("--database-url", help="PostgreSQL server to use (default: DATABASE_URL)")
    parser.add_argument("--child", choices=["baseline", "package"], help=argparse.SUPPRESS)  # the subprocess side
    args = parser.parse_args(argv)
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    if args.child:
        django_setup()
        report = _baseline_run() if args.child == "baseline" else _package_run()
        print(json.dumps(report), flush=True)
        return 0
    rows = SMOKE_ROWS if args.smoke else args.rows
    small_rows = max(1, rows // 100)

    django_setup()
    from django.db import connection

    if connection.vendor != "postgresql":
        print(
            f"bench.export measures PostgreSQL only (COPY); the configured database is {connection.vendor}. "
            "Set DATABASE_URL=postgres://... or pass --database-url.",
            file=sys.stderr,
        )
        return 2
    server = Server(connection.settings_dict)
    print(f"export bench: one subject with {rows} messages (and {small_rows}), scratch {PREFIX}_*", flush=True)
    try:
        schema, big, small = f"{PREFIX}_schema", f"{PREFIX}_big", f"{PREFIX}_small"
        started = time.perf_counter()
        _prepare_schema(server, schema)
        server.copy(schema, big)
        server.copy(schema, small)
        written = _fill(server, big, rows=rows)
        _fill(server, small, rows=small_rows)
        connection.close()
        print(f"built in {time.perf_counter() - started:.1f}s: {json.dumps(written)}", flush=True)

        baseline = _child(server, big, "baseline")
        print(
            f"baseline: {baseline['seconds']:8.2f}s, {baseline['rows']} rows in {baseline['files']} CSV members, "
            f"{mb(baseline['bytes'] // 1024):.1f} MB zip, peak RSS {mb(baseline['peak_rss_kb']):.1f} MB",
            flush=True,
        )
        ours = _child(server, big, "package")
        print(
            f"    ours: {ours['seconds']:8.2f}s, {ours['rows']} rows in {ours['files']} files, "
            f"{mb(ours['bytes'] // 1024):.1f} MB zip, peak RSS {mb(ours['peak_rss_kb']):.1f} MB "
            f"(Django before the build {mb(ours['rss_before_kb']):.1f} MB)",
            flush=True,
        )
        ours_small = _child(server, small, "package")
        print(
            f"   small: {ours_small['seconds']:8.2f}s, {ours_small['rows']} rows, peak RSS "
            f"{mb(ours_small['peak_rss_kb']):.1f} MB (Django before the build {mb(ours_small['rss_before_kb']):.1f} MB)",
            flush=True,
        )
        export_vs_copy = baseline["seconds"] / ours["seconds"]
        rss_growth = ours["peak_rss_kb"] / ours_small["peak_rss_kb"]
        print(
            f"RESULT export_vs_copy={export_vs_copy:.2f} rss_growth={rss_growth:.2f} files={ours['files']} rows={ours['rows']}",
            flush=True,
        )
        return 0
    finally:
        connection.close()
        server.drop_all()


if __name__ == "__main__":
    sys.exit(main())
