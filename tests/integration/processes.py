"""Helpers for tests that start other processes (a worker, a management command) on the test database."""

from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection


def subprocess_database_url() -> str:
    """DATABASE_URL of the database this test runs on, for a subprocess; the data must be committed."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        name = str(db["NAME"])
        if name == ":memory:" or name.startswith("file:"):
            pytest.fail("another process needs a file test database; settings give SQLite tests a file in var/")
        return f"sqlite:///{Path(name).resolve()}"
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = f"{credentials}@" if credentials else ""
    return f"postgres://{host}{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"
