"""Helpers for tests that start other processes (a worker, a management command) on the test database:
workers whose tasks go to a queue of the test's own, sends through the real broker, copies of the test
database (the uninterrupted reference of a kill test), and cleaning the shared broker afterwards."""

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from django.conf import settings
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


def worker_env(tmp_path, *, database_url: str | None = None, redis_url: str = "", **extra: str) -> dict:
    """The environment of a worker subprocess on the test database: tasks really queued, no eager mode.

    Without `redis_url` the worker uses the embedded filesystem broker. `extra` adds or overrides variables.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CELERY_", "PYTEST_"))}
    env.pop("REDIS_URL", None)
    env.update(
        DJANGO_SETTINGS_MODULE="privacyops.settings",
        DATABASE_URL=database_url or subprocess_database_url(),
        CELERY_TASK_ALWAYS_EAGER="false",
        DEBUG="true",
        SECRET_KEY="worker-test-secret-key-not-for-production",
        EMAIL_URL="consolemail://",
        AUDIT_ANCHOR_LOG=str(tmp_path / "worker-anchors.log"),
        **extra,
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def celery_worker_argv(queue: str) -> list[str]:
    """`celery worker` on one queue of the test's own, one process, quiet about other workers."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "privacyops",
        "worker",
        "--queues",
        queue,
        "--concurrency",
        "1",
        "--hostname",
        f"{queue}@%h",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
    ]


class CeleryWorker:
    """A worker subprocess in a session of its own (SIGKILL of its group reaches the pool child too)."""

    def __init__(self, argv: list[str], *, env: dict, queue: str, log: Path):
        self.env, self.queue, self.log = env, queue, log
        self._log_file = open(log, "w")  # noqa: SIM115 -- closed in stop()
        self.process = subprocess.Popen(
            argv, env=env, cwd=settings.BASE_DIR, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )

    def output(self) -> str:
        return self.log.read_text()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the worker exited with {self.process.returncode}:\n{self.output()}")
            if " ready." in self.output():
                return
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"the worker was not ready within {timeout}s:\n{self.output()}")

    def kill(self) -> None:
        """What a crash or the OOM killer does: no warm shutdown, no acknowledgement."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # warm shutdown: finish the current task, then exit
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if not self._log_file.closed:
            self._log_file.close()


# A worker on one queue of the test's own (argv[1]), named argv[2], that also routes every task it sends
# whose name matches one of argv[3:] ("retention.tasks.*") there, so no other worker on the broker takes part.
_ROUTED_WORKER = """
import sys
from privacyops.celery import app
queue, name, patterns = sys.argv[1], sys.argv[2], sys.argv[3:]
app.conf.task_routes = {pattern: {"queue": queue} for pattern in patterns}
app.worker_main(["worker", "--queues", queue, "--concurrency", "1", "--hostname", name + "@%h",
                 "--without-gossip", "--without-mingle", "--loglevel", "INFO"])
"""


def routed_worker_argv(queue: str, *patterns: str, name: str | None = None) -> list[str]:
    return [sys.executable, "-c", _ROUTED_WORKER, queue, name or queue, *patterns]


@contextmanager
def through_broker():
    """The test process runs tasks eagerly; switch that off so a send goes through the broker."""
    from privacyops.celery import app

    eager, app.conf.task_always_eager = app.conf.task_always_eager, False
    try:
        yield
    finally:
        app.conf.task_always_eager = eager


def server_connection(dbname: str, **kwargs):
    """A psycopg connection to another database on the test database's PostgreSQL server."""
    db = connection.settings_dict
    params = {"host": db["HOST"] or "localhost", "port": db["PORT"] or 5432, "user": db["USER"], "password": db["PASSWORD"]}
    return psycopg.connect(dbname=dbname, **{k: v for k, v in params.items() if v}, **kwargs)


def database_copy(name: str) -> str:
    """A copy of the test database as it is now (nobody else may be connected to it while it is copied);
    returns its DATABASE_URL for a subprocess."""
    source = connection.settings_dict["NAME"]
    connection.close()
    with server_connection("postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}" STRATEGY FILE_COPY')
    return subprocess_database_url().rsplit("/", 1)[0] + "/" + name


def database_drop(name: str) -> None:
    with server_connection("postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def queue_forget(queue: str) -> None:
    """Leave nothing of the test's queue on the shared Redis broker, a killed task's unacknowledged message included."""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}", queue)
    for tag, payload in client.hgetall("unacked").items():
        try:
            routing_key = json.loads(payload)[2]
        except (ValueError, IndexError, TypeError):
            continue
        if routing_key == queue:
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
    client.close()
