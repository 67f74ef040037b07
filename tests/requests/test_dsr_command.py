"""`manage.py dsr` (issue 5 §5): export a plain package, preview and carry out an erasure, replay the erasure
log; every action audited; clear errors for unknown subjects and bad dates."""

import datetime
import io
import zipfile

import pytest
from django.core.management import CommandError, call_command

from accounts.models import User
from chat.models import Message
from privacyops.models import AuditEvent
from requests import erasure
from retention.models import LegalHold
from tests.factories.accounts import UserFactory
from tests.factories.chat import AccessLogFactory, ConversationFactory, MessageFactory
from tests.factories.inventory import DataCategoryFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def erasure_log(settings, tmp_path):
    settings.ERASURE_LOG_PATH = str(tmp_path / "offsite" / "erasure-log.jsonl")


@pytest.fixture
def subject(db):
    user = UserFactory(email="alex@example.org", country="SG")
    conversation = ConversationFactory(user=user)
    MessageFactory.create_batch(3, conversation=conversation)
    AccessLogFactory.create_batch(2, user=user)
    return user


def run(*args) -> str:
    out = io.StringIO()
    call_command("dsr", *args, stdout=out)
    return out.getvalue()


def test_erase_without_yes_prints_the_preview_and_changes_nothing(subject):
    output = run("erase", "--subject", "ALEX@example.org")
    assert "user-content" in output and "Nothing was erased" in output
    assert User.objects.filter(pk=subject.pk).exists() and Message.objects.count() == 3
    assert AuditEvent.objects.filter(action="dsr.erase_previewed", subject_ref=subject.subject_ref).exists()


def test_erase_with_yes_erases_logs_and_audits(subject, settings):
    output = run("erase", "--subject", "alex@example.org", "--yes")
    assert "Erased." in output
    assert not User.objects.filter(pk=subject.pk).exists() and not Message.objects.exists()
    assert AuditEvent.objects.filter(action="erasure.subject_erased", subject_ref=subject.subject_ref).exists()
    with open(settings.ERASURE_LOG_PATH) as handle:
        assert '"request": "manage.py dsr erase"' in handle.read()


def test_erase_lists_a_hold_and_keeps_its_rows(subject):
    category = DataCategoryFactory(code="user-content")
    LegalHold.objects.create(subject=subject, category=category, reason="Regulator inquiry", reference="INQ-3")
    output = run("erase", "--subject", "alex@example.org", "--yes")
    assert "Regulator inquiry" in output and Message.objects.count() == 3


def test_unknown_subject_and_bad_date_are_clear_errors(db):
    with pytest.raises(CommandError, match="No account has that email address"):
        run("erase", "--subject", "nobody@example.org")
    with pytest.raises(CommandError, match="No account has that email address"):
        run("export", "--subject", "nobody@example.org", "--out", "x.zip")
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        run("replay-erasures", "--since", "31/12/2025")


def test_replay_erasures_reports_counts(subject):
    backup = [User.objects.get(pk=subject.pk), subject.conversations.get(), *Message.objects.all()]
    run("erase", "--subject", "alex@example.org", "--yes")
    for instance in backup:  # the restore: rows as the older backup has them
        instance.save()
    output = run("replay-erasures", "--since", datetime.date.today().isoformat())
    assert "1 entries, 1 re-applied, 0 with no account left" in output
    assert not User.objects.filter(pk=subject.pk).exists() and not Message.objects.exists()
    assert AuditEvent.objects.filter(action="erasure.replayed").exists()
    assert erasure.erasures_replay(since=datetime.date.today())["not_found"] == 1


def test_export_writes_a_plain_zip_and_audits(subject, tmp_path):
    out = tmp_path / "package.zip"
    output = run("export", "--subject", "alex@example.org", "--out", str(out))
    assert "Wrote the package" in output
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
    assert "manifest.json" in names and any(name.startswith("data/chat/") for name in names)
    event = AuditEvent.objects.get(action="dsr.export_written")
    assert event.subject_ref == subject.subject_ref and "alex@" not in str(event.details)
