"""Access packages for a request without an account (issue 5 §3 and §4; PM-IX-1, PM-IX-4, PM-IX-9): the rows
found by the address the request was verified by (support e-mails, matched case-insensitively as for an
account), the request's own record, nothing of another address or of an account; the download goes through a
single-use link e-mailed to that address on request from the status page, never on the status link alone."""

import hashlib
import io
import json
import re
import zipfile

import pytest
from django.urls import reverse
from django.utils import timezone

from privacyops.models import AuditEvent
from requests import exports, services
from requests.models import DownloadLink, ExportPackage, JobStatus, Right, RightsRequest, Status
from tests.factories.accounts import UserFactory
from tests.factories.chat import SupportMessageFactory
from tests.factories.inventory import JurisdictionFactory, staff_in_role
from tests.factories.requests import DeadlineRuleFactory, RightsRequestFactory

pytestmark = pytest.mark.django_db

ADDRESS = "dana@example.org"


@pytest.fixture
def singapore():
    jurisdiction = JurisdictionFactory(code="SG", name="Singapore", countries=["SG"], authority_name="PDPC")
    DeadlineRuleFactory(jurisdiction=jurisdiction, period_value=30, period_unit="calendar_days")
    return jurisdiction


@pytest.fixture
def mail_rows():
    """Dana wrote to support twice (once with her address in capitals); someone else wrote once; an account
    holder's message from Dana's address is linked to that account and is not hers to receive here."""
    mine = [
        SupportMessageFactory(user=None, email=ADDRESS, body="where is my order"),
        SupportMessageFactory(user=None, email="Dana@Example.ORG", body="please delete my old address"),
    ]
    SupportMessageFactory(user=None, email="other@example.org", body="someone else's complaint")
    SupportMessageFactory(user=UserFactory(email="holder@example.org"), email=ADDRESS, body="linked to an account")
    return mine


def _job(rights_request: RightsRequest) -> ExportPackage | None:
    return exports.export_package_work(request_id=rights_request.pk)


def _no_account_request(singapore, **kwargs) -> RightsRequest:
    values = {
        "subject": None,
        "contact_email": ADDRESS,
        "jurisdiction": singapore,
        "right": Right.ACCESS,
        "status": Status.FULFILLING,
        "verified_at": timezone.now(),
        "job_status": JobStatus.QUEUED,
    }
    return RightsRequestFactory(**(values | kwargs))


def _plain(package: ExportPackage) -> zipfile.ZipFile:
    from requests import crypto

    with package.file.open("rb") as stored:
        return zipfile.ZipFile(io.BytesIO(b"".join(crypto.decrypt_chunks(stored))))


def _links(mailoutbox) -> list[str]:
    return [re.sub(r"^https?://[^/]+", "", u) for mail in mailoutbox for u in re.findall(r"https?://\S+", mail.body)]


# --- The package --------------------------------------------------------------------------------------------


def test_pm_ix_1_the_package_holds_exactly_the_support_messages_of_the_verified_address(singapore, mail_rows):
    other_request = _no_account_request(singapore, contact_email="other@example.org", job_status="")
    rights_request = _no_account_request(singapore)
    package = _job(rights_request)
    rights_request.refresh_from_db()
    assert package.status == ExportPackage.Status.READY and rights_request.status == Status.COMPLETED

    archive = _plain(package)
    support = json.loads(archive.read("data/chat/supportmessage.json"))
    assert sorted(row["id"] for row in support) == sorted(m.pk for m in mail_rows)
    assert {row["body"] for row in support} == {"where is my order", "please delete my old address"}
    assert all(row["user"] is None for row in support)
    csv_lines = archive.read("data/chat/supportmessage.csv").decode().splitlines()
    assert len(csv_lines) == 1 + len(mail_rows)

    # The request's own record, not the other address's request.
    requests_rows = json.loads(archive.read("data/requests/rightsrequest.json"))
    assert [row["id"] for row in requests_rows] == [rights_request.pk]
    assert other_request.pk not in {row["id"] for row in requests_rows}
    events = json.loads(archive.read("data/requests/requestevent.json"))
    assert {row["request"] for row in events} <= {rights_request.pk}

    # Tables only an account reaches are there, empty, as for an account with no rows, and the overview says why.
    assert json.loads(archive.read("data/chat/message.json")) == []
    assert json.loads(archive.read("data/accounts/user.json")) == []
    assert json.loads(archive.read("data/privacyops/auditevent.json")) == []
    index = archive.read("index.html").decode()
    assert "You have no account with us" in index and ADDRESS in index
    processing = json.loads(archive.read("processing.json"))
    assert processing["disclosures"] == [] and processing["jurisdiction"] == "SG"


def test_the_manifest_matches_every_member_and_the_counts(singapore, mail_rows):
    package = _job(_no_account_request(singapore))
    archive = _plain(package)
    manifest = json.loads(archive.read("manifest.json"))
    names = {entry["name"] for entry in manifest["files"]}
    assert names == set(archive.namelist()) - {"manifest.json"}
    for entry in manifest["files"]:
        data = archive.read(entry["name"])
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
    assert manifest["request"] == package.request.reference
    assert manifest["rows"]["chat.SupportMessage"] == len(mail_rows)
    assert manifest["rows"]["chat.Message"] == 0
    assert package.rows == sum(manifest["rows"].values())


def test_pm_ix_9_an_unverified_request_without_an_account_gets_no_package(singapore, mail_rows, mailoutbox):
    rights_request = _no_account_request(singapore, verified_at=None)
    _job(rights_request)
    rights_request.refresh_from_db()
    assert rights_request.job_status == JobStatus.FAILED and "not verified" in rights_request.job_error
    assert not ExportPackage.objects.filter(request=rights_request, status=ExportPackage.Status.READY).exists()


# --- Downloading it -----------------------------------------------------------------------------------------


def test_pm_ix_1_from_the_public_form_to_one_download_through_an_emailed_link(
    client, singapore, mail_rows, mailoutbox, django_capture_on_commit_callbacks
):
    # Dana asks without an account and confirms by the link e-mailed to her address.
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("requests:public_new"),
            {"contact_email": ADDRESS, "jurisdiction": singapore.pk, "right": Right.ACCESS, "details": "All of it."},
        )
    verify = next(u for u in _links(mailoutbox) if "/requests/verify/" in u)
    status_path = next(u for u in _links(mailoutbox) if "/requests/status/" in u)
    client.post(verify)
    rights_request = RightsRequest.objects.get()
    assert rights_request.subject is None and rights_request.verified_at is not None

    # Staff approve; the job (eager in tests) builds the package and e-mails her the status page.
    dpo = staff_in_role("DPO")
    services.rights_request_move(rights_request=rights_request, to_status=Status.AWAITING_APPROVAL, actor=dpo)
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.rights_request_approve(rights_request=rights_request, actor=dpo)
    ready = next(m for m in mailoutbox if "ready to download" in m.subject)
    assert ready.to == [ADDRESS] and "Sign in" not in ready.body
    assert status_path in _links([ready])

    # The status page offers a link by e-mail; pressing it shows no link, it sends one to the address.
    page = client.get(status_path).content.decode()
    assert "E-mail me a download link" in page
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        sent = client.post(status_path + "/download", follow=True)
    assert sent.status_code == 200 and "We sent a download link" in sent.content.decode()
    [link_mail] = [m for m in mailoutbox if "download link" in m.subject]
    assert link_mail.to == [ADDRESS]
    download_path = next(u for u in _links([link_mail]) if "/requests/download/" in u)
    token = download_path.rsplit("/", 1)[1]
    assert token not in sent.content.decode()
    assert DownloadLink.objects.get(token_sha256=hashlib.sha256(token.encode()).hexdigest()).used_at is None

    # Opening the link (as a mail scanner does) uses nothing; the button downloads, once.
    confirm = client.get(download_path)
    assert confirm.status_code == 200 and "Download my data" in confirm.content.decode()
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(download_path)
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert len(json.loads(archive.read("data/chat/supportmessage.json"))) == len(mail_rows)
    package = ExportPackage.objects.get(request=rights_request)
    assert package.downloads == 1
    assert AuditEvent.objects.filter(action="personal_data.downloaded", target_id=str(package.pk)).count() == 1
    [downloaded] = [m for m in mailoutbox if "was downloaded" in m.subject]
    assert downloaded.to == [ADDRESS] and "e-mail password" in downloaded.body

    # A used link never works again, whether opened or pressed.
    assert client.get(download_path).status_code == 410
    again = client.post(download_path)
    assert again.status_code == 410 and "used up" in again.content.decode()
    package.refresh_from_db()
    assert package.downloads == 1


def test_the_status_link_alone_never_downloads_and_links_are_per_package_kind(singapore, mail_rows):
    package = _job(_no_account_request(singapore))
    with pytest.raises(exports.DownloadError):
        exports.download_link_issue(package=package, subject=None)  # a token handed back to a page: refused
    account_package = _job(RightsRequestFactory(status=Status.FULFILLING, verified_at=timezone.now(), job_status="queued"))
    with pytest.raises(exports.DownloadError):
        exports.download_link_send(package=account_package)  # an account's holder re-authenticates instead
    token = exports.download_link_issue(package=account_package, subject=account_package.request.subject)
    with pytest.raises(exports.DownloadError):
        exports.download_open(token=token, subject=None)  # an account's link on the public download page
    with pytest.raises(exports.DownloadError):
        exports.download_link_package(token=token)


def test_pm_ix_9_no_link_goes_out_for_a_request_that_is_not_verified(
    client, singapore, mail_rows, mailoutbox, django_capture_on_commit_callbacks
):
    from requests.verification import status_token

    rights_request = _no_account_request(singapore)
    package = _job(rights_request)
    RightsRequest.objects.filter(pk=rights_request.pk).update(verified_at=None)  # e.g. a verification undone
    with pytest.raises(exports.DownloadError, match="not verified"):
        exports.download_link_send(package=package)
    mailoutbox.clear()
    status_path = reverse("requests:status", kwargs={"token": status_token(rights_request)})
    assert "E-mail me a download link" not in client.get(status_path).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        refused = client.post(status_path + "/download", follow=True)
    assert "not verified" in refused.content.decode()
    assert not mailoutbox and not DownloadLink.objects.filter(package=package).exists()


def test_asking_for_links_is_rate_limited_and_a_new_link_retires_the_old(client, singapore, mail_rows, settings):
    from requests import views
    from requests.verification import status_token

    package = _job(_no_account_request(singapore))
    status_path = reverse("requests:status", kwargs={"token": status_token(package.request)})
    for _ in range(views.DOWNLOAD_LINKS_PER_HOUR):
        assert client.post(status_path + "/download").status_code == 302
    assert client.post(status_path + "/download").status_code == 429
    links = DownloadLink.objects.filter(package=package)
    assert links.count() == views.DOWNLOAD_LINKS_PER_HOUR
    assert links.filter(expires_at__gt=timezone.now()).count() == 1  # only the latest works
