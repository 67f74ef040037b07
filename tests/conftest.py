"""Shared fixtures and the rules for tests that need real services.

A test marked `postgres`, `redis` or `worker` runs only where its service is configured. Where it is
not configured (the SQLite leg, a fresh machine) it is skipped. Where it is configured but cannot be
reached, it fails under CI=true (so CI never passes by skipping) and is skipped elsewhere.
"""

import os
import socket
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django.db import connection

from privacyops import audit_actions

CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# Tests of the audit trail itself write made-up actions (test.a, test.step3 ...); the apps' vocabularies
# stay strict (AUDIT_ACTIONS_STRICT is on under DEBUG, as in the tests).
audit_actions.namespace("test", "Test-suite event")


def _reachable(url: str, default_port: int) -> bool:
    parts = urlparse(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def _unreachable(reason: str):
    """A service that is configured but down: a failure under CI, a skip on a developer's machine."""
    if CI:
        pytest.fail(f"{reason} (CI=true: a configured service must be reachable)", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_setup(item):
    if item.get_closest_marker("postgres") and connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: set DATABASE_URL=postgres://...")
    if item.get_closest_marker("redis") or item.get_closest_marker("worker"):
        if not settings.REDIS_URL:
            pytest.skip("needs Redis: set REDIS_URL=redis://...")
        if not _reachable(settings.REDIS_URL, 6379):
            _unreachable(f"Redis at {settings.REDIS_URL} is unreachable")


@pytest.fixture(scope="session", autouse=True)
def registry_without_drift():
    """PM-I: a test run fails, as `manage.py check` and the server do, when the registry and the code disagree.

    pytest-django does not run system checks, so the personal-data drift check runs here once per session.
    """
    from django.core import checks

    errors = [e for e in checks.run_checks(tags=["privacyops"]) if e.is_serious()]
    if errors:
        pytest.exit("The personal-data registry does not match the code:\n" + "\n".join(str(e) for e in errors), returncode=1)


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Uploaded files (chat attachments) go to a per-test folder, never into the checkout's var/media."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def empty_cache():
    """Each test starts with an empty cache (locmem lives as long as the process; Redis across runs): cached
    policy versions, decisions and rate-limit counters of one test must not answer for the next."""
    from django.core.cache import cache, caches
    from django.core.cache.backends.redis import RedisCache

    from consents.api.keys import RECENT
    from consents.api.views import BUDGETS
    from consents.decisions import LOCAL_COPIES

    def clear():
        # The shared cache, and the per-process copies the consent API keeps beside it. On Redis only the
        # cache's own keys go: FLUSHDB would also drop the broker's queues and bindings a worker test uses.
        if isinstance(caches["default"], RedisCache):
            client = caches["default"]._cache.get_client(write=True)
            keys = list(client.scan_iter(match=caches["default"].make_key("*"), count=1000))
            if keys:
                client.delete(*keys)
        else:
            cache.clear()
        LOCAL_COPIES.clear()
        RECENT.clear()
        BUDGETS.clear()

    clear()
    yield
    clear()


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    """Factories and sign-ups hash passwords; PBKDF2's deliberate slowness buys nothing in a test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def anchor_log(settings, tmp_path):
    """Every test anchors to its own file: never to var/audit-anchors.log of a developer's running system."""
    settings.AUDIT_ANCHOR_LOG = str(tmp_path / "audit-anchors.log")
    return settings.AUDIT_ANCHOR_LOG


@pytest.fixture
def seeded():
    """The register as `loadpolicy` seeds it from the policy."""
    from django.core.management import call_command

    call_command("loadpolicy", verbosity=0)


@pytest.fixture
def dpo(client):
    """A staff member in the DPO role, signed in to the test client."""
    from tests.factories.inventory import staff_in_role

    user = staff_in_role("DPO")
    client.force_login(user)
    return user


@pytest.fixture
def auditor(client):
    """A staff member in the Auditor role, signed in to the test client."""
    from tests.factories.inventory import staff_in_role

    user = staff_in_role("Auditor")
    client.force_login(user)
    return user
