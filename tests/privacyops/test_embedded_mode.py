"""The embedded mode's SQLite file takes several writing processes (web, worker, beat).

Each test starts fresh processes against a scratch SQLite file, so it runs the same on both CI legs.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")

PRAGMAS = """
from django.db import connection
with connection.cursor() as c:
    print(c.execute("PRAGMA journal_mode").fetchone()[0], c.execute("PRAGMA busy_timeout").fetchone()[0])
print(connection.settings_dict["OPTIONS"]["transaction_mode"])
"""

# Both writers wait for the same moment after start-up, so their writes really overlap.
WRITER = """
import time
from privacyops.audit import audit_record
from privacyops.audit_actions import namespace
namespace("test", "Test-suite event")
time.sleep(max(0, {start_at} - time.time()))
for i in range({n}):
    audit_record(actor=None, action="test.embedded.writer{w}", details={{"i": i}})
"""


def _env(db: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(DEBUG="true", SECRET_KEY="embedded-mode-test", DATABASE_URL=f"sqlite:///{db}")
    return env


def _manage(env, *args, **kwargs):
    return subprocess.run([sys.executable, MANAGE, *args], env=env, capture_output=True, text=True, **kwargs)


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout_and_immediate_transactions(tmp_path):
    env = _env(tmp_path / "embedded.sqlite3")
    result = _manage(env, "shell", "--no-imports", "-c", PRAGMAS, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["wal", "20000", "IMMEDIATE"]


def test_two_processes_writing_the_audit_chain_at_once_neither_fails_nor_forks(tmp_path):
    env = _env(tmp_path / "embedded.sqlite3")
    migrated = _manage(env, "migrate", "-v0", timeout=300)
    assert migrated.returncode == 0, migrated.stderr
    start_at = time.time() + 4
    writers = [
        subprocess.Popen(
            [sys.executable, MANAGE, "shell", "--no-imports", "-c", WRITER.format(n=200, w=w, start_at=start_at)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in (1, 2)
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
    verified = _manage(env, "verify_audit", "--no-anchors", timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    counted = _manage(
        env,
        "shell",
        "--no-imports",
        "-c",
        "from privacyops.models import AuditEvent; print(AuditEvent.objects.filter(action__startswith='test.embedded').count())",
        timeout=120,
    )
    assert counted.stdout.strip() == "400"
