"""An access request end to end (issue 5 "Tests"; PM-IX-1, PM-IX-8, PM-IX-9): the subject submits it on the
portal while signed in, staff move and approve it through the services, a real Celery worker on Redis takes
the job from the `exports` queue and builds the encrypted package in the PostgreSQL test database, and the
subject re-authenticates, gets a single-use link and downloads bytes that form a valid ZIP whose manifest
matches every member.

As in test_worker.py the worker is a subprocess on the test database (`transactional_db`: what the test
writes is committed, and it polls for what the worker writes). The approval queues the task through the
project's own routing, so the worker listens on `exports` itself rather than on a queue of the test's own:
run it on a Redis database no running system uses (each helper and CI have their own REDIS_URL).
"""

import hashlib
import io
import json
import time
import zipfile

import pytest
from django.urls import reverse

from privacyops.celery import app
from requests import services
from requests.models import ExportPackage, JobStatus, Right, RightsRequest, Status
from tests.factories.accounts import UserFactory
from tests.factories.inventory import staff_in_role
from tests.integration.processes import CeleryWorker, celery_worker_argv, worker_env

TIMEOUT = 120
PASSWORD = "correct horse battery staple"  # UserFactory's


@pytest.fixture
def exports_worker(transactional_db, tmp_path, settings):
    """A worker on the `exports` queue through Redis, writing packages where this test reads them."""
    exports = pytest.importorskip("requests.exports")
    env = worker_env(tmp_path, redis_url=settings.REDIS_URL, MEDIA_ROOT=settings.MEDIA_ROOT)
    worker = CeleryWorker(celery_worker_argv("exports"), env=env, queue="exports", log=tmp_path / "exports.log")
    try:
        worker.wait_ready()
        yield worker, exports
    finally:
        worker.stop()


def _wait_for_package(worker: CeleryWorker, rights_request: RightsRequest) -> ExportPackage:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        rights_request.refresh_from_db()
        if rights_request.job_status == JobStatus.FAILED:
            pytest.fail(f"the export job failed: {rights_request.job_error}\n{worker.output()}")
        package = ExportPackage.objects.filter(request=rights_request, status=ExportPackage.Status.READY).first()
        if package is not None and rights_request.job_status == JobStatus.DONE:
            return package
        if worker.process.poll() is not None:
            pytest.fail(f"the worker died:\n{worker.output()}")
        time.sleep(0.25)
    pytest.fail(f"no ready package within {TIMEOUT}s (job {rights_request.job_status!r}); worker output:\n{worker.output()}")


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.worker
def test_pm_ix_1_access_request_from_the_portal_to_the_download(exports_worker, client, seeded):
    worker, _exports = exports_worker
    subject = UserFactory(country="SG")
    dpo = staff_in_role("DPO")

    # 1. The subject asks on the portal, signed in: verified by the session, work starts (PM-IX-8).
    client.force_login(subject)
    response = client.post(reverse("requests:new"), {"right": Right.ACCESS, "details": "All of it."})
    rights_request = RightsRequest.objects.get(subject=subject)
    assert response["Location"] == reverse("requests:detail", kwargs={"reference": rights_request.reference})
    assert rights_request.status == Status.IN_PROGRESS and rights_request.verified_at is not None

    # 2. Staff send it for approval and approve it; the approval queues the job on commit. This process runs
    # tasks eagerly (pytest's settings): off for the approval, so the task goes through Redis to the worker.
    services.rights_request_move(rights_request=rights_request, to_status=Status.AWAITING_APPROVAL, actor=dpo)
    eager, app.conf.task_always_eager = app.conf.task_always_eager, False
    try:
        services.rights_request_approve(rights_request=rights_request, actor=dpo)
    finally:
        app.conf.task_always_eager = eager

    # 3. The real worker builds the package (exports queue), stores it encrypted and closes the request.
    package = _wait_for_package(worker, rights_request)
    assert rights_request.status == Status.COMPLETED
    with package.file.open("rb") as stored:
        assert not zipfile.is_zipfile(stored)  # encrypted at rest

    # 4. The subject downloads it: the request page offers it, re-authentication first, then a single-use link.
    detail = client.get(reverse("requests:detail", kwargs={"reference": rights_request.reference})).content.decode()
    assert "Download my data" in detail
    start = reverse("requests:package", kwargs={"reference": rights_request.reference})
    to_reauth = client.post(start)
    assert to_reauth.status_code == 302 and to_reauth["Location"].startswith(reverse("accounts:reauth"))
    back = client.post(to_reauth["Location"], {"password": PASSWORD})
    assert back.status_code == 302 and back["Location"] == start
    to_link = client.post(start)
    assert to_link.status_code == 302 and to_link["Location"].startswith("/my/requests/download/")
    download = client.get(to_link["Location"])
    assert download.status_code == 200
    assert download["Content-Disposition"] == f'attachment; filename="{rights_request.reference}-data.zip"'
    body = b"".join(download.streaming_content)

    # 5. The bytes are the package: a valid ZIP whose manifest matches each member, of this request.
    assert len(body) == package.size_bytes and hashlib.sha256(body).hexdigest() == package.sha256
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        manifest = json.loads(archive.read("manifest.json"))
        assert manifest["request"] == rights_request.reference
        listed = {entry["name"]: entry for entry in manifest["files"]}
        assert set(listed) == set(archive.namelist()) - {"manifest.json"}
        for name, entry in listed.items():
            data = archive.read(name)
            assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["bytes"], entry["sha256"]), name
        assert {"index.html", "schema.json", "processing.json"} <= set(listed)
        account = json.loads(archive.read("data/accounts/user.json"))
        assert [row.get("email") for row in account] == [subject.email] and "data/accounts/user.csv" in listed

    # The link was used up when the download started; the package counts one download.
    assert client.get(to_link["Location"]).status_code == 410
    package.refresh_from_db()
    assert package.downloads == 1
