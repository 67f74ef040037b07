"""Downloading a package (issue 5 §4, PM-IX-1): single-use links for the package's own subject only, at most
five downloads (the database backs it), each one audited and e-mailed; expired packages lose their file."""

import datetime
import io
import zipfile

import pytest
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from privacyops.models import AuditEvent
from requests import exports
from requests.models import DownloadLink, ExportPackage, JobStatus, Right, Status
from tests.factories.accounts import UserFactory
from tests.factories.chat import MessageFactory
from tests.factories.requests import RightsRequestFactory

pytestmark = pytest.mark.django_db


def _ready_package(subject) -> ExportPackage:
    rights_request = RightsRequestFactory(
        subject=subject, right=Right.ACCESS, status=Status.FULFILLING, verified_at=timezone.now(), job_status=JobStatus.QUEUED
    )
    return exports.export_package_work(request_id=rights_request.pk)


@pytest.fixture
def subject():
    user = UserFactory()
    MessageFactory(conversation__user=user, content="hello from ada")
    return user


@pytest.fixture
def package(subject):
    return _ready_package(subject)


def _download(token, subject) -> bytes:
    _, chunks = exports.download_open(token=token, subject=subject)
    return b"".join(chunks)


def _messages(data: bytes) -> bytes:
    return zipfile.ZipFile(io.BytesIO(data)).read("data/chat/message.json")


def test_a_link_serves_the_decrypted_package_once(package, subject, mailoutbox, django_capture_on_commit_callbacks):
    token = exports.download_link_issue(package=package, subject=subject)
    with django_capture_on_commit_callbacks(execute=True):
        data = _download(token, subject)
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert b"hello from ada" in archive.read("data/chat/message.json")
    package.refresh_from_db()
    assert package.downloads == 1
    assert DownloadLink.objects.get(package=package).used_at is not None
    assert AuditEvent.objects.filter(action="personal_data.downloaded", subject_ref=subject.subject_ref).count() == 1
    assert [m for m in mailoutbox if "was downloaded" in m.subject]
    with pytest.raises(exports.DownloadError):
        exports.download_open(token=token, subject=subject)  # used up, never again
    package.refresh_from_db()
    assert package.downloads == 1


def test_pm_ix_1_a_link_is_used_up_when_the_download_starts(package, subject):
    token = exports.download_link_issue(package=package, subject=subject)
    exports.download_open(token=token, subject=subject)  # not read at all
    with pytest.raises(exports.DownloadError):
        exports.download_open(token=token, subject=subject)


def test_pm_ix_1_another_subjects_link_never_serves_this_package(package, subject):
    other = UserFactory()
    other_package = _ready_package(other)
    with pytest.raises(exports.DownloadError):
        exports.download_link_issue(package=package, subject=other)
    their_token = exports.download_link_issue(package=other_package, subject=other)
    with pytest.raises(exports.DownloadError):
        exports.download_open(token=their_token, subject=subject)  # a link to someone else's package
    my_token = exports.download_link_issue(package=package, subject=subject)
    with pytest.raises(exports.DownloadError):
        exports.download_open(token=my_token, subject=other)  # my link in someone else's session
    package.refresh_from_db()
    assert package.downloads == 0
    # The refused attempt did not use the link up: its own subject still downloads.
    assert b"hello from ada" in _messages(_download(my_token, subject))


def test_an_unknown_or_expired_link_does_not_work(package, subject):
    with pytest.raises(exports.DownloadError):
        exports.download_open(token="made-up", subject=subject)
    token = exports.download_link_issue(package=package, subject=subject)
    DownloadLink.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    with pytest.raises(exports.DownloadError):
        exports.download_open(token=token, subject=subject)


def test_a_new_link_retires_the_unused_one(package, subject):
    first = exports.download_link_issue(package=package, subject=subject)
    second = exports.download_link_issue(package=package, subject=subject)
    with pytest.raises(exports.DownloadError):
        exports.download_open(token=first, subject=subject)
    assert _download(second, subject)


def test_the_sixth_download_is_refused(package, subject):
    for _ in range(5):
        _download(exports.download_link_issue(package=package, subject=subject), subject)
    with pytest.raises(exports.DownloadError, match="5 times"):
        exports.download_link_issue(package=package, subject=subject)
    # A link issued before the fifth download was used cannot make a sixth either.
    package.refresh_from_db()
    assert package.downloads == 5
    with pytest.raises(IntegrityError), transaction.atomic():
        ExportPackage.objects.filter(pk=package.pk).update(downloads=6)


def test_a_link_issued_earlier_cannot_exceed_five(package, subject):
    for _ in range(4):
        _download(exports.download_link_issue(package=package, subject=subject), subject)
    spare = exports.download_link_issue(package=package, subject=subject)
    ExportPackage.objects.filter(pk=package.pk).update(downloads=5)  # e.g. raced by another session
    with pytest.raises(exports.DownloadError):
        exports.download_open(token=spare, subject=subject)


def test_expiry_deletes_the_file_and_is_idempotent(package, subject, django_capture_on_commit_callbacks):
    name = package.file.name
    assert default_storage.exists(name)
    token = exports.download_link_issue(package=package, subject=subject)
    assert exports.export_packages_expire(now=package.expires_at - datetime.timedelta(seconds=1)) == 0
    with django_capture_on_commit_callbacks(execute=True):  # the file goes after the commit
        assert exports.export_packages_expire(now=package.expires_at) == 1
    package.refresh_from_db()
    assert package.status == ExportPackage.Status.EXPIRED and package.deleted_at is not None and not package.file
    assert not default_storage.exists(name)
    assert exports.export_packages_expire(now=package.expires_at + datetime.timedelta(days=1)) == 0
    with pytest.raises(exports.DownloadError):
        exports.download_open(token=token, subject=subject)
    with pytest.raises(exports.DownloadError):
        exports.download_link_issue(package=package, subject=subject)
    assert AuditEvent.objects.filter(action="rights_request.package_expired").count() == 1


def test_latest_package(package):
    assert exports.latest_package(package.request) == package
