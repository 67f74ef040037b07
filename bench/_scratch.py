"""What the benchmarks share: scratch PostgreSQL databases (each bench makes its own and drops it, so nothing
depends on what an earlier run left in the configured database) and memory readings. Not a benchmark itself
(the leading underscore)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote


class Server:
    """The PostgreSQL server of the configured database: connections and scratch databases on it."""

    def __init__(self, settings_dict: dict):
        self.params = {
            "host": settings_dict["HOST"] or "localhost",
            "port": settings_dict["PORT"] or 5432,
            "user": settings_dict["USER"] or None,
            "password": settings_dict["PASSWORD"] or None,
        }
        self.created: list[str] = []

    def connect(self, dbname: str, *, autocommit: bool = False):
        import psycopg

        params = {key: value for key, value in self.params.items() if value is not None}
        return psycopg.connect(dbname=dbname, autocommit=autocommit, **params)

    def url(self, dbname: str) -> str:
        credentials = quote(self.params["user"] or "", safe="")
        if self.params["password"]:
            credentials += ":" + quote(self.params["password"], safe="")
        host = f"{credentials}@" if credentials else ""
        return f"postgres://{host}{self.params['host']}:{self.params['port']}/{dbname}"

    def _admin(self, sql: str) -> None:
        with self.connect("postgres", autocommit=True) as conn:
            conn.execute(sql)

    def copy(self, template: str, name: str) -> str:
        """A new database with the template's content; FILE_COPY copies files instead of WAL-logging each block."""
        self.drop(name)
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
        self.created.append(name)
        return name

    def drop(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_all(self) -> None:
        for name in reversed(self.created):
            self.drop(name)


def django_setup() -> None:
    """Configure Django for a bench, a local tool: DEBUG defaults on only so the settings need no production
    keys; it is then switched off, because its query log would cost time and memory inside the measurements."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "privacyops.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()
    from django.conf import settings

    settings.DEBUG = False


def schema_create(server: Server, name: str) -> None:
    """A new database `name` on the server, migrated, with the register loaded (`loadpolicy`); Django stays
    connected to it. It is dropped with the server's other scratch databases."""
    from django.core.management import call_command
    from django.db import connection

    connection.settings_dict.setdefault("TEST", {})["NAME"] = name
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    server.created.append(name)
    call_command("loadpolicy", verbosity=0)


def mb(kilobytes: int) -> float:
    return kilobytes / 1024


def use_database(name: str) -> None:
    """Point Django's connection at another database of the same server."""
    from django.db import connection

    connection.close()
    connection.settings_dict["NAME"] = name


def proc_status_kb(key: str) -> int:
    """A value in kB from /proc/self/status (VmHWM: peak resident set; VmRSS: current)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
