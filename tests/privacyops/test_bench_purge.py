"""The purge benchmark runs (smoke size), reports its RESULT line, deletes no held row and cleans up."""

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection


def _bench(*args: str, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CELERY_", "PYTEST_"))}
    return subprocess.run(
        [sys.executable, "-m", "bench.purge", *args],
        env={**env, "DJANGO_SETTINGS_MODULE": "privacyops.settings", **env_overrides},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db
def test_pm_vi_3_bench_purge_smoke_run_deletes_no_held_row_and_cleans_up():
    result = _bench("--smoke")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    prefix = lines[0].rsplit("scratch ", 1)[1].removesuffix("_*")
    assert lines[-1].startswith("RESULT ")
    fields = dict(part.split("=") for part in lines[-1].removeprefix("RESULT ").split())
    assert list(fields) == ["purge_vs_raw", "naive_vs_raw", "rss_growth", "held_deleted"]
    assert fields["held_deleted"] == "0"
    assert all(float(fields[name]) > 0 for name in ("purge_vs_raw", "naive_vs_raw", "rss_growth"))
    assert "same rows left by raw, engine and naive: yes" in result.stdout
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s", [prefix + "%"])
        assert cursor.fetchone()[0] == 0


def test_bench_purge_refuses_sqlite_with_a_clear_message(tmp_path):
    result = _bench("--smoke", DATABASE_URL=f"sqlite:///{tmp_path / 'bench.sqlite3'}")
    assert result.returncode == 2
    assert "PostgreSQL only" in result.stderr
    assert "RESULT" not in result.stdout
