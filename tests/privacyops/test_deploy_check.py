"""Production settings are secure: `check --deploy` is clean and HTTPS is forced (PM-VII-1, PM-VII-2).

Each test starts a fresh process, because settings read the environment once at import: the test
process itself runs with DEBUG on.
"""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from django.conf import settings

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")


def _production_env(tmp_path, **overrides) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "CELERY_", "PYTEST_"))}
    for key in (
        "DEBUG",
        "SECRET_KEY",
        "PSEUDONYM_KEY",
        "EXPORT_ENCRYPTION_KEY",
        "ALLOWED_HOSTS",
        "CSRF_TRUSTED_ORIGINS",
        "DATABASE_URL",
        "REDIS_URL",
        "EMAIL_URL",
    ):
        env.pop(key, None)
    env.update(
        DJANGO_SETTINGS_MODULE="privacyops.settings",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        PSEUDONYM_KEY=secrets.token_urlsafe(64),
        EXPORT_ENCRYPTION_KEY="MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ALLOWED_HOSTS="privacy.example.com",
        CSRF_TRUSTED_ORIGINS="https://privacy.example.com",
        DATABASE_URL=f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _check(env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, MANAGE, "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_pm_vii_2_check_deploy_is_clean_with_production_variables(tmp_path):
    result = _check(_production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_pm_vii_2_check_deploy_is_clean_on_postgresql_and_redis_urls(tmp_path):
    # The URLs are only parsed by `check`; no connection is made.
    env = _production_env(
        tmp_path, DATABASE_URL="postgres://privacyops@db.internal:5432/privacyops", REDIS_URL="redis://cache.internal:6379/0"
    )
    result = _check(env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pm_vii_2_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = _check(_production_env(tmp_path, SECRET_KEY=None))
    assert result.returncode != 0
    assert "Set the SECRET_KEY environment variable" in result.stderr


def test_pm_vii_2_check_deploy_fails_on_a_weak_secret_key(tmp_path):
    result = _check(_production_env(tmp_path, SECRET_KEY="short"))
    assert result.returncode != 0 and "security.W009" in result.stderr + result.stdout


def test_pm_vii_2_check_deploy_fails_without_allowed_hosts(tmp_path):
    result = _check(_production_env(tmp_path, ALLOWED_HOSTS=None))
    assert result.returncode != 0 and "security.W020" in result.stderr + result.stdout


def test_pm_vii_2_check_deploy_fails_when_debug_is_on(tmp_path):
    result = _check(_production_env(tmp_path, DEBUG="true"))
    assert result.returncode != 0 and "security.W018" in result.stderr + result.stdout


def test_pm_vii_1_production_forces_https_and_secure_cookies(tmp_path):
    script = (
        "import json, django; from django.conf import settings; django.setup(); print(json.dumps({k: getattr(settings, k) "
        "for k in ['SECURE_SSL_REDIRECT', 'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SESSION_COOKIE_SECURE', "
        "'CSRF_COOKIE_SECURE', 'SESSION_COOKIE_HTTPONLY', 'X_FRAME_OPTIONS', 'SECURE_REFERRER_POLICY']}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=_production_env(tmp_path),
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values == {
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "X_FRAME_OPTIONS": "DENY",
        "SECURE_REFERRER_POLICY": "same-origin",
    }
