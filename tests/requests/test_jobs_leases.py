"""The owned lease (privacyops.leases) and the fulfilment jobs that hold it (requests.jobs, exports, erasure).

Unit tests of take / renew / release on a real row (SQLite and PostgreSQL), then what the jobs do with it:
a worker that finds a live lease backs off without building or deleting; a worker that lost its lease
stops without writing and removes nothing the new owner wrote; only the new owner removes what a dead
claim left. The two-worker and kill -9 tests on PostgreSQL are in tests/integration/test_job_leases.py.
"""

import datetime
import threading

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connections
from django.db.models import Q
from django.utils import timezone

from chat.models import Message
from privacyops.leases import LeaseLost, lease_heartbeat, lease_is_live, lease_release, lease_renew, lease_take, worker_label
from requests import erasure, exports, jobs
from requests.models import ExportPackage, JobStatus, Right, RightsRequest, Status
from tests.factories.accounts import UserFactory
from tests.factories.chat import ConversationFactory, MessageFactory
from tests.factories.requests import RightsRequestFactory

pytestmark = pytest.mark.django_db


def _job(**kwargs) -> RightsRequest:
    return RightsRequestFactory(**{"job_status": JobStatus.QUEUED, **kwargs})


def _take(pk, **kwargs):
    return lease_take(RightsRequest, pk, columns=jobs.LEASE_COLUMNS, seconds=60, **kwargs)


def _row(pk) -> RightsRequest:
    return RightsRequest.objects.get(pk=pk)


# --- The lease ----------------------------------------------------------------------------------------


def test_take_records_a_new_owner_per_claim_and_the_expiry():
    job = _job()
    before = timezone.now()
    first = _take(job.pk, worker="worker-a")
    row = _row(job.pk)
    assert row.job_lease_owner == first.owner and first.owner.startswith("worker-a:")
    assert before + datetime.timedelta(seconds=59) < row.job_lease_until <= timezone.now() + datetime.timedelta(seconds=60)
    lease_release(first)
    second = _take(job.pk, worker="worker-a")
    assert second.owner != first.owner  # the same worker's next claim is another owner
    assert lease_release(second) and _row(job.pk).job_lease_owner == "" and _row(job.pk).job_lease_until is None
    assert _take(job.pk).owner.startswith(worker_label() + ":")  # by default: this host and process


def test_a_live_lease_is_not_taken_again():
    job = _job()
    held = _take(job.pk)
    assert _take(job.pk) is None
    assert _row(job.pk).job_lease_owner == held.owner
    assert lease_is_live(_row(job.pk), jobs.LEASE_COLUMNS)


def test_only_a_claimable_row_is_taken():
    job = _job(job_status=JobStatus.DONE)
    assert _take(job.pk, claimable=Q(job_status=JobStatus.QUEUED)) is None
    assert jobs.job_claim(job.pk) is None
    assert _row(job.pk).job_lease_owner == ""


def test_renew_extends_the_holders_lease_and_writes_with_it():
    job = _job()
    lease = _take(job.pk)
    RightsRequest.objects.filter(pk=job.pk).update(job_lease_until=timezone.now() + datetime.timedelta(seconds=1))
    lease_renew(lease, job_done=7)
    row = _row(job.pk)
    assert row.job_done == 7 and row.job_lease_until > timezone.now() + datetime.timedelta(seconds=50)


def test_an_expired_lease_is_retaken_and_the_old_claims_renewal_is_refused():
    job = _job()
    old = _take(job.pk, worker="slow")
    RightsRequest.objects.filter(pk=job.pk).update(job_lease_until=timezone.now() - datetime.timedelta(seconds=1))
    new = _take(job.pk, worker="fresh")
    assert new is not None and _row(job.pk).job_lease_owner == new.owner
    with pytest.raises(LeaseLost):
        lease_renew(old, job_done=99)
    row = _row(job.pk)
    assert row.job_lease_owner == new.owner and row.job_done == 0  # the loser wrote nothing
    assert lease_release(old) is False and _row(job.pk).job_lease_owner == new.owner
    with pytest.raises(LeaseLost):
        lease_release(old, require=True, job_status=JobStatus.DONE)
    assert _row(job.pk).job_status == JobStatus.QUEUED


def test_an_expired_lease_nobody_took_is_still_renewable_by_its_owner():
    job = _job()
    lease = _take(job.pk)
    RightsRequest.objects.filter(pk=job.pk).update(job_lease_until=timezone.now() - datetime.timedelta(seconds=5))
    lease_renew(lease)
    assert lease_is_live(_row(job.pk), jobs.LEASE_COLUMNS)


def test_a_renewal_requires_what_the_claim_said_must_still_hold():
    job = _job()
    claim = jobs.job_claim(job.pk)
    RightsRequest.objects.filter(pk=job.pk).update(job_status=JobStatus.FAILED)  # ended by someone else
    with pytest.raises(LeaseLost):
        jobs.job_progress(claim, done=1)


def test_heartbeat_renews_only_once_its_interval_passed():
    job = _job()
    lease = _take(job.pk, heartbeat_seconds=3600)
    assert lease_heartbeat(lease) is False
    lease.heartbeat_seconds = 0
    assert lease_heartbeat(lease) is True


@pytest.mark.django_db(transaction=True)
def test_a_renewal_over_a_connection_of_its_own_is_committed_at_once():
    job = _job()
    lease = _take(job.pk)
    seen = {}

    lease_renew(lease, separate_connection=True, job_done=3)

    def read():  # a third connection sees it: it was committed, not left in a transaction
        seen["done"] = RightsRequest.objects.get(pk=job.pk).job_done
        connections.close_all()

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    assert seen["done"] == 3


# --- The jobs -----------------------------------------------------------------------------------------


@pytest.fixture
def access_request(db):
    subject = UserFactory(email="lease@example.org")
    MessageFactory.create_batch(3, conversation=ConversationFactory(user=subject))
    return _job(
        subject=subject, right=Right.ACCESS, status=Status.FULFILLING, verified_at=timezone.now(), contact_email=subject.email
    )


def test_pm_ix_1_an_export_finding_a_live_lease_backs_off_without_building_or_deleting(access_request):
    other = jobs.job_claim(access_request.pk, worker="busy-builder")
    theirs = ExportPackage.objects.create(request=access_request, expires_at=timezone.now() + datetime.timedelta(days=7))

    assert exports.export_package_work(request_id=access_request.pk) is None

    assert list(ExportPackage.objects.values_list("pk", "status")) == [(theirs.pk, ExportPackage.Status.BUILDING)]
    assert _row(access_request.pk).job_lease_owner == other.lease.owner


def test_pm_ix_1_the_new_owner_removes_only_what_the_dead_claim_left(access_request, django_capture_on_commit_callbacks):
    dead = jobs.job_claim(access_request.pk, worker="dead")
    name = default_storage.save("requests/packages/dead-claim.zip.enc", ContentFile(b"half a package"))
    left = ExportPackage.objects.create(request=access_request, file=name, expires_at=timezone.now() + datetime.timedelta(days=7))
    earlier = ExportPackage.objects.create(
        request=access_request, status=ExportPackage.Status.READY, sha256="0" * 64, expires_at=timezone.now()
    )
    RightsRequest.objects.filter(pk=access_request.pk).update(job_lease_until=timezone.now() - datetime.timedelta(seconds=1))

    with django_capture_on_commit_callbacks(execute=True):
        package = exports.export_package_work(request_id=access_request.pk)

    assert not ExportPackage.objects.filter(pk=left.pk).exists() and not default_storage.exists(name)
    assert ExportPackage.objects.filter(pk=earlier.pk).exists()  # not the dead claim's: a finished package stays
    package.refresh_from_db()
    assert package.status == ExportPackage.Status.READY and default_storage.exists(package.file.name)
    assert dead.lease.owner != _row(access_request.pk).job_lease_owner


def test_pm_ix_1_a_builder_that_lost_its_lease_stops_and_leaves_the_new_owners_package(access_request, settings, monkeypatch):
    settings.REQUEST_JOB_HEARTBEAT_SECONDS = 0  # renew at every write, as a long build does every few seconds
    real = exports.processing_for
    taken = {}

    def another_worker_takes_over(*args, **kwargs):
        # What a second worker does once this one's lease ran out: take the job and start its package.
        RightsRequest.objects.filter(pk=access_request.pk).update(job_lease_until=timezone.now() - datetime.timedelta(seconds=1))
        taken["claim"] = jobs.job_claim(access_request.pk, worker="second")
        taken["package"] = ExportPackage.objects.create(
            request=access_request, expires_at=timezone.now() + datetime.timedelta(days=7)
        )
        return real(*args, **kwargs)

    monkeypatch.setattr(exports, "processing_for", another_worker_takes_over)
    files_before = _stored_files()

    assert exports.export_package_work(request_id=access_request.pk) is None

    row = _row(access_request.pk)
    assert row.job_lease_owner == taken["claim"].lease.owner and row.job_status == JobStatus.RUNNING
    assert ExportPackage.objects.filter(pk=taken["package"].pk, status=ExportPackage.Status.BUILDING).exists()
    mine = ExportPackage.objects.exclude(pk=taken["package"].pk).get()
    assert mine.status == ExportPackage.Status.BUILDING and mine.file.name == ""  # never marked ready or failed
    assert _stored_files() == files_before  # it stored no file


def _stored_files() -> set[str]:
    try:
        _, files = default_storage.listdir("requests/packages")
    except FileNotFoundError:
        return set()
    return set(files)


@pytest.fixture
def erasure_request(db, settings, tmp_path):
    settings.ERASURE_LOG_PATH = str(tmp_path / "erasure-log.jsonl")
    settings.ERASURE_BATCH_SIZE = 1
    subject = UserFactory()
    for _ in range(3):
        MessageFactory(conversation=ConversationFactory(user=subject))
    return _job(
        subject=subject, right=Right.ERASURE, status=Status.FULFILLING, verified_at=timezone.now(), contact_email=subject.email
    )


def _messages(rights_request) -> int:
    return Message.objects.filter(conversation__user=rights_request.subject_id).count()


def test_pm_ix_2_an_erasure_finding_a_live_lease_backs_off(erasure_request):
    held = jobs.job_claim(erasure_request.pk, worker="busy-eraser")
    assert erasure.erasure_work(request_id=erasure_request.pk) is None
    assert _messages(erasure_request) == 3 and _row(erasure_request.pk).job_lease_owner == held.lease.owner


def test_pm_ix_2_an_eraser_that_lost_its_lease_writes_no_further_batch(erasure_request):
    subject = erasure_request.subject
    stopped = erasure.erasure_work(request_id=erasure_request.pk, max_batches=1)  # one batch, then released
    assert stopped.job_result["batches"] == 1 and _messages(erasure_request) == 2
    slow = jobs.job_claim(erasure_request.pk, worker="slow")
    # slow pauses past its lease; a second worker takes the job
    RightsRequest.objects.filter(pk=erasure_request.pk).update(job_lease_until=timezone.now() - datetime.timedelta(seconds=1))
    second = jobs.job_claim(erasure_request.pk, worker="second")
    state = dict(slow.rights_request.job_result)
    steps = erasure.subject_steps(subject, exclude_request=erasure_request.pk)

    with pytest.raises(LeaseLost):
        erasure.plan_walk(erasure.build_plan(steps, subject), state, fence=lambda: lease_renew(slow.lease))

    assert _messages(erasure_request) == 2  # slow's batch never ran
    row = _row(erasure_request.pk)
    assert row.job_lease_owner == second.lease.owner and row.job_result["batches"] == 1
    done = erasure.erasure_work(request_id=erasure_request.pk)
    assert done is None  # second's lease is live: a third worker backs off
