"""The audit benchmark runs (smoke size) and leaves no scratch database behind."""

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection


@pytest.mark.slow
@pytest.mark.django_db
def test_bench_audit_smoke_run_prints_its_result_and_cleans_up():
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CELERY_", "PYTEST_"))}
    result = subprocess.run(
        [sys.executable, "-m", "bench.bench_audit", "--smoke"],
        env={**env, "DJANGO_SETTINGS_MODULE": "privacyops.settings"},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    scratch = lines[0].rsplit("scratch database ", 1)[1]
    fields = dict(part.split("=") for part in lines[-1].removeprefix("RESULT ").split())
    assert lines[-1].startswith("RESULT ")
    assert set(fields) == {"record_per_s", "record_ratio", "verify_per_s", "verify_ratio", "peak_mb"}
    assert all(float(value) > 0 for value in fields.values())
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [scratch])
            assert cursor.fetchone()[0] == 0
    else:
        assert not os.path.exists(scratch)
