"""Fixtures for retention tests: the register rows holds and rules point at, rules, and a run helper."""

from datetime import timedelta

import pytest
from django.utils import timezone

from retention.engine import purge_run_work
from retention.models import RetentionRule
from retention.services import purge_run_start
from tests.factories.inventory import DataCategoryFactory, DataStoreFactory

CATEGORIES = (
    "account-information",
    "user-content",
    "feedback",
    "communication-information",
    "log-data",
    "usage-data",
    "retention-records",
    "audit-records",
)


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Attachment files go to the test's own directory."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return settings.MEDIA_ROOT


@pytest.fixture
def register(db):
    """The data categories and django stores the chat and accounts models live in."""
    categories = {code: DataCategoryFactory(code=code) for code in CATEGORIES}
    stores = {
        code: DataStoreFactory(code=code, kind="django", app_label=code.removeprefix("django-"))
        for code in ("django-chat", "django-accounts", "django-retention")
    }
    return {"categories": categories, "stores": stores}


def days_ago(days: float):
    return timezone.now() - timedelta(days=days)


@pytest.fixture
def make_rule(register):
    """An enabled, confirmed rule (written directly: the engine tests are not about rule_save)."""

    def make(category, *, code=None, period="P30D", counts_from="created", action="delete", store=None, timestamp_field="", **kw):
        return RetentionRule.objects.create(
            code=code or f"rule-{category}-{RetentionRule.objects.count()}",
            name=f"Test rule for {category}",
            category=register["categories"][category],
            store=register["stores"][store] if store else None,
            period=period,
            counts_from=counts_from,
            timestamp_field=timestamp_field,
            action=action,
            enabled=kw.pop("enabled", True),
            confirmed_at=kw.pop("confirmed_at", timezone.now()),
            **kw,
        )

    return make


def run_inline(rule, *, dry_run=False, batch_size=None, worker="test-worker", **work):
    """Start a run without queueing it and work it here to the end (or as far as `work` allows)."""
    run = purge_run_start(rule=rule, dry_run=dry_run, batch_size=batch_size, enqueue=False)
    return purge_run_work(run.pk, worker=worker, **work)


@pytest.fixture
def run_rule_inline():
    return run_inline
