"""One selector counts what the system holds about a subject, per category and per store (PM-I)."""

import pytest

from inventory.selectors import subject_record_counts
from privacyops.audit import audit_record
from privacyops.privacy import registry
from tests.factories.accounts import UserFactory
from tests.factories.chat import (
    AccessLogFactory,
    AttachmentFactory,
    ConversationFactory,
    FeedbackFactory,
    MessageFactory,
    SupportMessageFactory,
    UsageEventFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)


def _holdings(user):
    conversations = ConversationFactory.create_batch(2, user=user)
    messages = [MessageFactory(conversation=c) for c in conversations for _ in range(3)]
    AttachmentFactory(message=messages[0])
    FeedbackFactory(message=messages[1])
    SupportMessageFactory(user=user)
    AccessLogFactory.create_batch(4, user=user)
    UsageEventFactory.create_batch(3, user=user)


def test_pm_i_counts_a_subjects_records_per_category_and_store():
    user = UserFactory(email="mira.salo@example.org")
    other = UserFactory()
    _holdings(user)
    _holdings(other)
    SupportMessageFactory(user=None, email="Mira.Salo@Example.org")  # before she had an account
    SupportMessageFactory(user=None, email="someone.else@example.org")
    SupportMessageFactory(user=other, email="mira.salo@example.org")  # another account's row is not hers
    audit_record(actor=None, action="test.viewed", subject=user)
    audit_record(actor=None, action="test.viewed", subject=other)

    counts = subject_record_counts(user)

    assert counts["categories"]["user-content"] == 2 + 6 + 1
    assert counts["categories"]["feedback"] == 1
    assert counts["categories"]["communication-information"] == 2
    assert counts["categories"]["log-data"] == 4
    assert counts["categories"]["usage-data"] == 3
    assert counts["categories"]["account-information"] == 1
    assert counts["categories"]["audit-records"] == 1
    assert counts["stores"]["django-chat"] == 9 + 1 + 2 + 4 + 3
    assert counts["stores"]["django-accounts"] == 1
    assert counts["stores"]["django-privacyops"] == 1


def test_pm_i_a_subject_with_nothing_but_an_account_has_zeros_elsewhere():
    counts = subject_record_counts(UserFactory())
    assert counts["categories"]["account-information"] == 1
    assert counts["categories"]["user-content"] == counts["categories"]["log-data"] == 0


def test_pm_i_one_count_query_per_model(django_assert_num_queries):
    user = UserFactory()
    _holdings(user)
    findable = [d for d in registry.personal() if d.subject_q(user) is not None]
    with django_assert_num_queries(len(findable)):
        subject_record_counts(user)
