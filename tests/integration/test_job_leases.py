"""Fulfilment jobs under real workers: one owner at a time, and a killed worker's job resumed to the same end.

PM-IX-1 and PM-IX-2 with issue 11 section 1. Real Celery workers on Redis work on the PostgreSQL test
database with a lease far shorter than the job (REQUEST_JOB_LEASE_SECONDS=2, a heartbeat every 0.25 s),
so only the heartbeat keeps a build owned:
- two workers, one export: the second worker is given the same job while the first builds and backs off;
  exactly one package is made, and the package the first worker started is the one that ends ready (no
  deletion under a running build);
- a worker SIGKILLed mid-export, and one SIGKILLed mid-erasure: a new worker, sent `stalled_jobs_resume`
  every second as beat would send it, finishes the job; the result equals an uninterrupted run of the
  same job on a copy of the database taken before any worker started (CREATE DATABASE ... TEMPLATE).

What "the same package" means: the same members, and the same SHA-256 for every member except those
that describe the build itself rather than the subject's data: `manifest.json` and `index.html` (the
time they were generated) and the request's own record (`data/requests/rightsrequest.*`, its job's
claim times and lease; `data/requests/exportpackage.*`, the package rows with their ids and times).
Those must still have the same row counts. For an erasure: the same rows left in every chat table and
the account table (count and ids), and the same outcome counts per model and category.

The workers listen on a queue of this test's own and route every requests task they send there.
"""

import io
import json
import os
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection
from django.utils import timezone

from bench import _purge_data as purge_data
from bench.export import FILL
from privacyops.models import AuditEvent
from requests import crypto
from requests.models import ExportPackage, JobStatus, Right, RightsRequest, Status
from requests.tasks import erasure_run, export_package_build, stalled_jobs_resume
from tests.factories.accounts import UserFactory
from tests.factories.requests import RightsRequestFactory
from tests.integration.processes import (
    CeleryWorker,
    database_copy,
    database_drop,
    queue_forget,
    routed_worker_argv,
    server_connection,
    subprocess_database_url,
    through_broker,
    worker_env,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker, pytest.mark.slow]

LEASE_SECONDS = 2
HEARTBEAT_SECONDS = 0.25
EXPORT_MESSAGES = 150_000
TWO_WORKERS_MESSAGES = 300_000  # a build of several times the lease even on a quiet machine
ERASURE_MESSAGES = 30_000
ERASURE_BATCH = 1_000
TIMEOUT = 180
BUILD_MEMBERS = {"manifest.json", "index.html"}
OWN_RECORD = ("data/requests/rightsrequest.", "data/requests/exportpackage.")


@pytest.fixture
def queue():
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    queue_forget(name)


@pytest.fixture
def workers(tmp_path, queue, settings):
    """Start workers on the test's queue (and database, media folder, keys); teardown stops them."""
    started: list[CeleryWorker] = []

    def start(name: str) -> CeleryWorker:
        argv = routed_worker_argv(queue, "requests.tasks.*", name=f"{queue}-{name}")
        worker = CeleryWorker(
            argv, env=_env(tmp_path, subprocess_database_url(), settings.MEDIA_ROOT), queue=queue, log=tmp_path / f"{name}.log"
        )
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


def _env(tmp_path, database_url: str, media_root: str) -> dict:
    return worker_env(
        tmp_path,
        database_url=database_url,
        redis_url=settings.REDIS_URL,
        MEDIA_ROOT=str(media_root),
        EXPORT_ENCRYPTION_KEY=settings.EXPORT_ENCRYPTION_KEY,
        ERASURE_LOG_PATH=str(tmp_path / "erasure-log.jsonl"),
        ERASURE_BATCH_SIZE=str(ERASURE_BATCH),
        REQUEST_JOB_LEASE_SECONDS=str(LEASE_SECONDS),
        REQUEST_JOB_HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS),
    )


def _subject_with_messages(messages: int):
    """An account with `messages` chat messages (and a tenth as many access logs and usage events), written
    on the server as the export benchmark writes them."""
    user = UserFactory(email=f"lease-{uuid.uuid4().hex[:8]}@example.org", country="SG")
    values = {"user": user.pk, "messages": messages, "conversations": max(1, -(-messages // 50)), "side": max(1, messages // 10)}
    with connection.cursor() as cursor:
        for statement in FILL.split(";\n\n"):
            cursor.execute(statement, values)
    return user


def _job(subject, right) -> RightsRequest:
    return RightsRequestFactory(
        subject=subject, right=right, status=Status.FULFILLING, verified_at=timezone.now(), job_status=JobStatus.QUEUED
    )


def _send(task, *args, queue: str) -> None:
    with through_broker():
        task.apply_async(args, queue=queue)


def _wait(condition, what: str, worker: CeleryWorker, deadline: float):
    while True:
        value = condition()
        if value:
            return value
        if worker.process.poll() is not None:
            pytest.fail(f"the worker died while waiting for {what}:\n{worker.output()}")
        assert time.monotonic() < deadline, f"no {what} within {TIMEOUT}s:\n{worker.output()}"
        time.sleep(0.05)


def _row(pk: int) -> RightsRequest:
    return RightsRequest.objects.get(pk=pk)


def _finish_by_resuming(pk: int, queue: str, worker: CeleryWorker, deadline: float) -> RightsRequest:
    """What beat does every two minutes, every second: queue again the jobs nobody works on."""
    while _row(pk).job_status == JobStatus.RUNNING:
        assert time.monotonic() < deadline, f"the job did not finish within {TIMEOUT}s:\n{worker.output()}"
        _send(stalled_jobs_resume, queue=queue)
        time.sleep(1)
    return _row(pk)


def _stored_packages(media_root) -> list[Path]:
    return sorted(p for p in Path(media_root).rglob("*.zip.enc"))


def _manifest(path: Path) -> dict:
    with open(path, "rb") as sealed:
        plain = b"".join(crypto.decrypt_chunks(sealed))
    with zipfile.ZipFile(io.BytesIO(plain)) as archive:
        assert archive.testzip() is None
        return json.loads(archive.read("manifest.json"))


def _comparable(manifest: dict) -> tuple[dict, dict]:
    """(member name -> sha256 for the subject's data, own-record member -> row count) of a manifest."""
    data, own = {}, {}
    for member in manifest["files"]:
        name = member["name"]
        if name in BUILD_MEMBERS:
            continue
        if name.startswith(OWN_RECORD):
            own[name] = None
            continue
        data[name] = member["sha256"]
    return data, {"members": sorted(own), "rows": manifest["rows"]}


# --- One owner at a time ------------------------------------------------------------------------------


def test_pm_ix_1_two_workers_one_export_one_package_and_the_second_backs_off(transactional_db, seeded, workers, queue):
    rights_request = _job(_subject_with_messages(TWO_WORKERS_MESSAGES), Right.ACCESS)
    first, second = workers("first"), workers("second")
    deadline = time.monotonic() + TIMEOUT

    _send(export_package_build, rights_request.pk, queue=queue)
    started = _wait(
        lambda: ExportPackage.objects.filter(request=rights_request, status=ExportPackage.Status.BUILDING).first(),
        "package being built",
        first,
        deadline,
    )
    claimed = _row(rights_request.pk)
    owner, first_expiry = claimed.job_lease_owner, claimed.job_lease_until
    # While the first worker builds: the same job again, as a duplicate delivery or an early resume would
    # give it; the first worker is busy, so the second takes these. And what beat sends meanwhile.
    for _ in range(3):
        _send(export_package_build, rights_request.pk, queue=queue)
        _send(stalled_jobs_resume, queue=queue)
    _wait(lambda: second.output().count("not claimable") >= 3, "second worker backing off three times", second, deadline)
    assert _row(rights_request.pk).job_lease_owner == owner  # still the first claim's

    done = _wait(lambda: (row := _row(rights_request.pk)).job_status == JobStatus.DONE and row, "finished job", first, deadline)

    # The premise: without its heartbeat the build's first lease would have run out before it finished.
    assert done.job_finished_at > first_expiry, "the build must outlast its lease: give it more rows"
    packages = list(ExportPackage.objects.filter(request=rights_request))
    assert [(p.pk, p.status) for p in packages] == [(started.pk, ExportPackage.Status.READY)]
    assert _stored_packages(settings.MEDIA_ROOT) == [Path(default_storage.path(packages[0].file.name))]
    assert done.job_lease_owner == "" and done.status == Status.COMPLETED


# --- A worker killed mid-way --------------------------------------------------------------------------


def _reference_run(tmp_path, reference_url: str, function: str, request_id: int) -> Path:
    """The same job, uninterrupted, in a process of its own on the copy of the database; returns its media root."""
    media = tmp_path / "reference-media"
    module, name = function.rsplit(".", 1)
    code = f"from requests.{module} import {name} as work; work(request_id={request_id})"
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        env=_env(tmp_path, reference_url, str(media)),
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return media


def test_pm_ix_1_an_export_killed_mid_build_is_resumed_to_the_same_package(transactional_db, seeded, workers, queue, tmp_path):
    rights_request = _job(_subject_with_messages(EXPORT_MESSAGES), Right.ACCESS)
    reference = f"{connection.settings_dict['NAME']}_exportref_{os.getpid()}"
    reference_url = database_copy(reference)
    try:
        first = workers("first")
        deadline = time.monotonic() + TIMEOUT
        _send(export_package_build, rights_request.pk, queue=queue)
        dead = _wait(
            lambda: ExportPackage.objects.filter(request=rights_request, status=ExportPackage.Status.BUILDING).first(),
            "package being built",
            first,
            deadline,
        )
        claimed_until = _row(rights_request.pk).job_lease_until
        _wait(lambda: _row(rights_request.pk).job_lease_until > claimed_until, "a heartbeat of the build", first, deadline)
        first.kill()
        killed = _row(rights_request.pk)
        assert killed.job_status == JobStatus.RUNNING and killed.job_lease_owner, "killed while it held the job"

        workers("second")
        done = _finish_by_resuming(rights_request.pk, queue, first, deadline)
        assert done.job_status == JobStatus.DONE, done.job_error

        package = ExportPackage.objects.get(request=rights_request)
        assert package.pk != dead.pk and package.status == ExportPackage.Status.READY  # the dead claim's row went
        stored = _stored_packages(settings.MEDIA_ROOT)
        assert stored == [Path(default_storage.path(package.file.name))]  # and nothing of it is left in storage
        resumed = _manifest(stored[0])

        reference_media = _reference_run(tmp_path, reference_url, "exports.export_package_work", rights_request.pk)
        (expected_path,) = _stored_packages(reference_media)
        expected = _manifest(expected_path)
    finally:
        database_drop(reference)

    assert sorted(m["name"] for m in resumed["files"]) == sorted(m["name"] for m in expected["files"])
    assert _comparable(resumed) == _comparable(expected)
    assert resumed["rows"]["chat.Message"] == EXPORT_MESSAGES


def _final_rows(cursor) -> dict:
    rows = purge_data.fingerprint(cursor)
    cursor.execute("SELECT count(*), md5(COALESCE(string_agg(id::text, ',' ORDER BY id), '')) FROM accounts_user")
    rows["accounts_user"] = tuple(cursor.fetchone())
    for table in ("chat_usageevent", "chat_supportmessage"):
        cursor.execute(f"SELECT count(*), md5(COALESCE(string_agg(id::text, ',' ORDER BY id), '')) FROM {table}")
        rows[table] = tuple(cursor.fetchone())
    return rows


def test_pm_ix_2_an_erasure_killed_mid_walk_is_resumed_to_the_same_rows(transactional_db, seeded, workers, queue, tmp_path):
    subject = _subject_with_messages(ERASURE_MESSAGES)
    bystander = _subject_with_messages(500)  # someone else's rows stay
    rights_request = _job(subject, Right.ERASURE)
    reference = f"{connection.settings_dict['NAME']}_erasureref_{os.getpid()}"
    reference_url = database_copy(reference)
    try:
        first = workers("first")
        deadline = time.monotonic() + TIMEOUT
        _send(erasure_run, rights_request.pk, queue=queue)
        _wait(lambda: _row(rights_request.pk).job_result.get("batches", 0) >= 3, "three committed batches", first, deadline)
        first.kill()
        killed = _row(rights_request.pk)
        assert killed.job_status == JobStatus.RUNNING, "the erasure finished before the kill: give it more rows"

        workers("second")
        done = _finish_by_resuming(rights_request.pk, queue, first, deadline)
        assert done.job_status == JobStatus.DONE, done.job_error
        # The second worker continued from the killed one's position: the erasure started (and was logged
        # outside the database) once.
        assert AuditEvent.objects.filter(action="erasure.started", target_id=str(rights_request.pk)).count() == 1
        assert len((tmp_path / "erasure-log.jsonl").read_text().splitlines()) == 1
        with connection.cursor() as cursor:
            after = _final_rows(cursor.cursor)

        _reference_run(tmp_path, reference_url, "erasure.erasure_work", rights_request.pk)
        with server_connection(reference) as ref, ref.cursor() as cursor:
            expected = _final_rows(cursor)
            cursor.execute("SELECT job_status, job_result, status FROM requests_rightsrequest WHERE id = %s", [rights_request.pk])
            expected_status, expected_result, expected_request_status = cursor.fetchone()
    finally:
        database_drop(reference)

    assert after == expected
    assert expected_status == JobStatus.DONE and done.status == expected_request_status
    assert done.job_result["counts"] == expected_result["counts"]
    assert done.job_result["categories"] == expected_result["categories"]
    assert not subject.__class__.objects.filter(pk=subject.pk).exists()
    assert subject.__class__.objects.filter(pk=bystander.pk).exists()
