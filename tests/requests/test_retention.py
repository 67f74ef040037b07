"""Rights-request records are kept through the subject's erasure, but only for the time the duty lasts:
the seeded rule deletes them 24 months after closure (PM-VI-1), timeline and pauses with them."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from privacyops import privacy
from privacyops.privacy import Erase, Field, RegistryError
from requests.models import RequestEvent, RequestPause, RightsRequest, Status
from retention.engine import purge_run_work
from retention.models import RetentionRule
from retention.services import purge_run_start, rule_confirm
from tests.factories.accounts import StaffFactory
from tests.factories.requests import RightsRequestFactory

pytestmark = pytest.mark.django_db


def _closed(months_ago: int) -> RightsRequest:
    closed_at = timezone.now() - timedelta(days=31 * months_ago)
    request = RightsRequestFactory(
        status=Status.COMPLETED, received_at=closed_at - timedelta(days=20), closed_at=closed_at, outcome="Sent the package."
    )
    RequestEvent.objects.create(request=request, kind=RequestEvent.Kind.MOVE, to_status=Status.COMPLETED, at=closed_at)
    RequestPause.objects.create(
        request=request, reason="internal", stops_clock=False, started_at=closed_at - timedelta(days=10), ended_at=closed_at
    )
    return request


def test_pm_vi_1_the_seeded_rule_deletes_requests_closed_more_than_24_months_ago_with_their_timeline():
    call_command("loadpolicy", verbosity=0)
    rule = RetentionRule.objects.get(code="rights-requests-24m")
    assert (rule.enabled, rule.confirmed_at) == (False, None)  # seeded rules wait for the DPO
    rule_confirm(rule=rule, actor=StaffFactory(is_superuser=True))

    expired, recent = _closed(25), _closed(23)
    still_open = RightsRequestFactory(status=Status.IN_PROGRESS, received_at=timezone.now() - timedelta(days=900))
    still_open.due_at = still_open.received_at + timedelta(days=30)
    still_open.save(update_fields=["due_at"])

    run = purge_run_start(rule=rule, dry_run=False, enqueue=False)
    purge_run_work(run.pk, worker="test")

    assert set(RightsRequest.objects.values_list("pk", flat=True)) == {recent.pk, still_open.pk}
    assert not RequestEvent.objects.filter(request_id=expired.pk).exists()
    assert not RequestPause.objects.filter(request_id=expired.pk).exists()
    assert RequestEvent.objects.filter(request_id=recent.pk).count() == 1


def test_duty_ends_is_only_for_models_that_keep_fields_under_a_legal_duty():
    with pytest.raises(RegistryError, match="duty_ends"):
        privacy.register(
            RequestPause,
            subject="request__subject",
            category="rights-request-records",
            fields={"note": Field("rights-request-records", Erase.REDACT, "A note")},
            not_personal=("id", "request", "reason", "stops_clock", "started_at", "ended_at"),
            duty_ends=True,
        )


def test_pm_vi_4_the_seeded_package_rule_deletes_packages_and_their_links_7_days_after_creation(
    settings, tmp_path, django_capture_on_commit_callbacks
):
    from django.core.files.base import ContentFile

    from requests.models import DownloadLink, ExportPackage

    settings.MEDIA_ROOT = str(tmp_path)
    call_command("loadpolicy", verbosity=0)
    rule = RetentionRule.objects.get(code="rights-request-packages-7d")
    rule_confirm(rule=rule, actor=StaffFactory(is_superuser=True))
    request = RightsRequestFactory(status=Status.COMPLETED, outcome="Sent.")

    def package(days_ago: int) -> ExportPackage:
        created = timezone.now() - timedelta(days=days_ago)
        made = ExportPackage.objects.create(
            request=request, status=ExportPackage.Status.EXPIRED, created_at=created, expires_at=created + timedelta(days=7)
        )
        made.file.save(f"package-{days_ago}.bin", ContentFile(b"ciphertext"), save=True)
        DownloadLink.objects.create(package=made, token_sha256=f"{days_ago:064d}", created_at=created, expires_at=created)
        return made

    old, recent = package(8), package(3)
    old_file = old.file.path
    run = purge_run_start(rule=rule, dry_run=False, enqueue=False)
    with django_capture_on_commit_callbacks(execute=True):  # files go after their rows' commit
        purge_run_work(run.pk, worker="test")

    assert list(ExportPackage.objects.values_list("pk", flat=True)) == [recent.pk]
    assert list(DownloadLink.objects.values_list("package_id", flat=True)) == [recent.pk]
    assert RightsRequest.objects.filter(pk=request.pk).exists()  # the request's record follows its own rule
    import os

    assert not os.path.exists(old_file)
