"""Policy versions: selectors, publication rules, acceptance, the update banner and the workbench (PM-0-1, PM-X-1..3)."""

import datetime
import uuid

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from policies import services as policy_module
from policies.middleware import SESSION_ACCEPTED, PolicyAcceptanceMiddleware, policy_notice
from policies.models import PolicyAcceptance, PolicyNoticeDelivery, PolicyVersion
from policies.selectors import policy_history, policy_last_updated, policy_version_in_force, policy_version_upcoming
from policies.services import policy_accept, policy_acknowledge, policy_version_publish
from privacyops.models import AuditEvent
from tests.factories.accounts import StaffFactory, UserFactory
from tests.factories.consents import PolicyVersionFactory
from tests.factories.inventory import staff_in_role

pytestmark = pytest.mark.django_db

NOW = timezone.now
DAY = datetime.timedelta(days=1)
Method = PolicyAcceptance.Method


@pytest.fixture(autouse=True)
def fresh_cache():
    """The in-force view is cached (policies.selectors.policy_current); each test starts without it."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def queued(monkeypatch):
    """Publication queues the notice task on commit; record the calls instead of sending."""
    calls = []
    monkeypatch.setattr("policies.tasks.policy_notice_batches_send.delay", lambda *a, **k: calls.append((a, k)))
    return calls


def published(label: str, *, effective_at, **kwargs) -> PolicyVersion:
    """A version as if published (and its notice run done) at the time it took effect."""
    return PolicyVersionFactory(
        label=label,
        effective_at=effective_at,
        last_updated=effective_at.date(),
        published_at=min(effective_at, NOW()),
        notice_sent_at=min(effective_at, NOW()),
        **kwargs,
    )


def draft(label: str, *, effective_at, **kwargs) -> PolicyVersion:
    return PolicyVersionFactory(label=label, effective_at=effective_at, last_updated=NOW().date(), **kwargs)


@pytest.fixture
def first():
    return published("2025-04-25", effective_at=NOW() - 200 * DAY)


# --- Selectors -------------------------------------------------------------------------------------


def test_pm_x_1_the_version_in_force_is_the_latest_published_one_that_took_effect(first):
    second = published("2025-09-01", effective_at=NOW() - 10 * DAY)
    published("2026-01-01", effective_at=NOW() + 40 * DAY)
    draft("draft", effective_at=NOW() - DAY)

    assert policy_version_in_force() == second
    assert policy_version_in_force(at=NOW() - 100 * DAY) == first
    assert policy_version_in_force(at=NOW() - 300 * DAY) is None


def test_pm_x_2_the_upcoming_version_is_the_next_published_one_not_yet_in_force(first):
    assert policy_version_upcoming() is None
    later = published("2026-03-01", effective_at=NOW() + 90 * DAY)
    sooner = published("2026-01-01", effective_at=NOW() + 40 * DAY)
    draft("draft", effective_at=NOW() + 5 * DAY)

    assert policy_version_upcoming() == sooner
    assert policy_version_upcoming(at=NOW() + 50 * DAY) == later


def test_pm_x_1_last_updated_is_the_date_of_the_version_in_force(first):
    assert policy_last_updated() == first.last_updated
    assert policy_last_updated(at=NOW() - 300 * DAY) is None


def test_pm_x_1_history_lists_published_versions_newest_first(first):
    second = published("2025-09-01", effective_at=NOW() - 10 * DAY)
    upcoming = published("2026-01-01", effective_at=NOW() + 40 * DAY)
    draft("draft", effective_at=NOW() + DAY)

    assert list(policy_history()) == [upcoming, second, first]


# --- Publishing ------------------------------------------------------------------------------------


def test_pm_x_2_publishing_records_who_and_when_audits_and_queues_the_notices(first, queued, django_capture_on_commit_callbacks):
    dpo = staff_in_role("DPO")
    version = draft("2026-01-01", effective_at=NOW() + 40 * DAY, url="")

    with django_capture_on_commit_callbacks(execute=True):
        policy_version_publish(actor=dpo, version=version)

    version.refresh_from_db()
    assert version.published_at is not None and version.published_by == dpo
    assert version.short_notice_reason == "" and version.url
    event = AuditEvent.objects.get(action="policy.published")
    assert event.details["label"] == "2026-01-01" and event.details["notice_days"] >= 39
    assert len(queued) == 1


def test_pm_x_1_a_published_version_cannot_be_published_again(first, queued):
    with pytest.raises(ValidationError, match="already published"):
        policy_version_publish(actor=None, version=first)


def test_pm_x_2_less_than_the_notice_period_needs_a_reason(first, queued, settings):
    settings.POLICY_NOTICE_DAYS = 30
    version = draft("2025-12-01", effective_at=NOW() + 10 * DAY)

    with pytest.raises(ValidationError) as excinfo:
        policy_version_publish(actor=None, version=version)
    assert "short_notice_reason" in excinfo.value.message_dict

    with pytest.raises(ValidationError) as excinfo:
        policy_version_publish(actor=None, version=version, short_notice_reason="other")
    assert "short_notice_note" in excinfo.value.message_dict
    assert PolicyVersion.objects.get(pk=version.pk).published_at is None

    policy_version_publish(actor=None, version=version, short_notice_reason="legal_change", short_notice_note=" Act 2025 ")

    version.refresh_from_db()
    assert (version.short_notice_reason, version.short_notice_note) == ("legal_change", "Act 2025")


def test_pm_x_2_a_reason_is_not_recorded_when_the_notice_period_is_kept(first, queued):
    version = draft("2026-01-01", effective_at=NOW() + 40 * DAY)

    policy_version_publish(actor=None, version=version, short_notice_reason="correction")

    version.refresh_from_db()
    assert version.short_notice_reason == ""


def test_pm_x_1_a_version_must_take_effect_after_every_published_one(first, queued):
    upcoming = published("2026-03-01", effective_at=NOW() + 90 * DAY)
    before_upcoming = draft("2026-02-01", effective_at=NOW() + 60 * DAY)
    before_in_force = draft("2025-01-01", effective_at=first.effective_at - DAY)
    same_time = draft("same", effective_at=upcoming.effective_at)

    for version in (before_upcoming, before_in_force, same_time):
        with pytest.raises(ValidationError) as excinfo:
            policy_version_publish(actor=None, version=version, short_notice_reason="correction")
        assert "effective_at" in excinfo.value.message_dict


def test_pm_x_1_a_version_without_its_text_cannot_be_published(first, queued):
    version = draft("2026-01-01", effective_at=NOW() + 40 * DAY, text="  ")

    with pytest.raises(ValidationError) as excinfo:
        policy_version_publish(actor=None, version=version)

    assert "text" in excinfo.value.message_dict


def test_a_published_version_cannot_be_edited_or_deleted_through_the_services(first):
    first.summary = "Rewritten history."
    with pytest.raises(ValidationError):
        policy_module.policy_version_save(actor=None, version=first)
    with pytest.raises(ValidationError):
        policy_module.policy_version_delete(actor=None, version=first)
    assert PolicyVersion.objects.get(pk=first.pk).summary != "Rewritten history."


# --- Accepting -------------------------------------------------------------------------------------


def test_pm_0_1_acceptance_is_recorded_once_per_subject_and_version_with_a_keyed_ua_hash(first):
    subject = UserFactory()

    acceptance = policy_accept(subject=subject, version=first, method=Method.SIGNUP, user_agent="Mozilla/5.0 Test")
    again = policy_accept(subject=subject, version=first, method=Method.CONTINUED_USE, client="api")

    assert again.pk == acceptance.pk and again.method == Method.SIGNUP
    assert PolicyAcceptance.objects.count() == 1
    assert acceptance.ua_hash and "Mozilla" not in acceptance.ua_hash and len(acceptance.ua_hash) == 64
    event = AuditEvent.objects.get(action="policy.accepted")
    assert event.subject_ref == subject.subject_ref and event.details["method"] == "signup"


def test_pm_0_1_a_draft_cannot_be_accepted():
    with pytest.raises(ValidationError):
        policy_accept(subject=UserFactory(), version=draft("d", effective_at=NOW()), method=Method.SIGNUP)


def test_pm_x_2_acknowledging_without_an_email_records_an_in_service_delivery_and_the_acceptance(first):
    subject = UserFactory()
    upcoming = published("2026-01-01", effective_at=NOW() + 40 * DAY)

    delivery = policy_acknowledge(user=subject, version=upcoming)

    assert delivery.status == PolicyNoticeDelivery.Status.IN_SERVICE and delivery.acknowledged_at is not None
    assert PolicyAcceptance.objects.get(subject_ref=subject.subject_ref, version=upcoming).method == Method.ACKNOWLEDGEMENT


def test_pm_x_2_acknowledging_after_the_email_marks_the_delivery_and_keeps_its_status(first):
    subject = UserFactory()
    sent = PolicyNoticeDelivery.objects.create(version=first, user=subject, status=PolicyNoticeDelivery.Status.SENT)
    policy_accept(subject=subject, version=first, method=Method.CONTINUED_USE)

    policy_acknowledge(user=subject, version=first)

    sent.refresh_from_db()
    assert sent.status == PolicyNoticeDelivery.Status.SENT and sent.acknowledged_at is not None
    # The first acceptance stands: continued use came first.
    assert PolicyAcceptance.objects.get(subject_ref=subject.subject_ref).method == Method.CONTINUED_USE


# --- Acceptance by continued use (middleware) -----------------------------------------------------


def _request(user, session=None):
    request = RequestFactory().get("/", HTTP_USER_AGENT="Test browser")
    request.user = user
    request.session = session if session is not None else SessionStore()
    return request


def _middleware():
    return PolicyAcceptanceMiddleware(lambda request: None)


def test_pm_x_3_use_after_the_effective_date_is_recorded_once_as_acceptance(first, django_assert_num_queries):
    subject = UserFactory()
    session = SessionStore()

    _middleware()(_request(subject, session))
    with django_assert_num_queries(0):
        _middleware()(_request(subject, session))

    acceptance = PolicyAcceptance.objects.get(subject_ref=subject.subject_ref)
    assert (acceptance.version, acceptance.method, acceptance.client) == (first, Method.CONTINUED_USE, "web")
    assert session[SESSION_ACCEPTED] == first.pk
    # A new session looks once, finds the acceptance and writes nothing.
    _middleware()(_request(subject))
    assert PolicyAcceptance.objects.count() == 1 and AuditEvent.objects.filter(action="policy.accepted").count() == 1


def test_pm_x_3_use_before_the_effective_date_accepts_nothing_new_then_after_it_does(first):
    subject = UserFactory()
    policy_accept(subject=subject, version=first, method=Method.SIGNUP)
    upcoming = published("2026-01-01", effective_at=NOW() + 40 * DAY)
    session = SessionStore()

    _middleware()(_request(subject, session))

    assert not PolicyAcceptance.objects.filter(version=upcoming).exists()

    PolicyVersion.objects.filter(pk=upcoming.pk).update(effective_at=NOW() - DAY)  # the date passes
    cache.clear()
    _middleware()(_request(subject, session))

    assert PolicyAcceptance.objects.get(version=upcoming, subject_ref=subject.subject_ref).method == Method.CONTINUED_USE


def test_staff_and_anonymous_requests_record_nothing_and_anonymous_ones_query_nothing(first, django_assert_num_queries):
    _middleware()(_request(StaffFactory()))
    with django_assert_num_queries(0):
        request = _request(AnonymousUser())
        _middleware()(request)
        assert policy_notice(request) == {}
    assert not PolicyAcceptance.objects.exists()


def test_no_version_in_force_records_nothing():
    _middleware()(_request(UserFactory()))

    assert not PolicyAcceptance.objects.exists()


# --- The update banner -----------------------------------------------------------------------------


def test_pm_x_2_the_banner_shows_an_upcoming_version_until_the_subject_acknowledges_it(first, client):
    subject = UserFactory()
    policy_accept(subject=subject, version=first, method=Method.SIGNUP)
    upcoming = published("2026-01-01", effective_at=NOW() + 40 * DAY, summary="We now keep logs for 90 days.")
    client.force_login(subject)

    page = client.get(reverse("policy:index"))

    assert "I have read this" in page.content.decode() and "We now keep logs for 90 days." in page.content.decode()
    assert "I have read this" in client.get(reverse("policy:index")).content.decode()

    response = client.post(reverse("policy:acknowledge", args=[upcoming.pk]), {"next": "/policy"})

    assert response.status_code == 302 and response["Location"] == "/policy"
    assert "I have read this" not in client.get(reverse("policy:index")).content.decode()
    delivery = PolicyNoticeDelivery.objects.get(user=subject, version=upcoming)
    assert delivery.acknowledged_at is not None
    assert PolicyAcceptance.objects.get(subject_ref=subject.subject_ref, version=upcoming).method == Method.ACKNOWLEDGEMENT


def test_pm_x_2_a_version_in_force_stays_on_the_banner_after_continued_use_until_acknowledged(first, client):
    subject = UserFactory()
    policy_accept(subject=subject, version=first, method=Method.SIGNUP)
    second = published("2025-09-01", effective_at=NOW() - 10 * DAY)
    client.force_login(subject)

    page = client.get(reverse("policy:index")).content.decode()

    assert PolicyAcceptance.objects.get(version=second).method == Method.CONTINUED_USE
    assert "Our privacy policy changed on" in page and "I have read this" in page
    # In another session too: the banner is about acknowledging, not about acceptance.
    other = Client()
    other.force_login(subject)
    assert "I have read this" in other.get(reverse("policy:index")).content.decode()


def test_the_first_version_and_a_version_accepted_at_signup_show_no_banner(first, client):
    subject = UserFactory()
    client.force_login(subject)

    assert "I have read this" not in client.get(reverse("policy:index")).content.decode()

    second = published("2025-09-01", effective_at=NOW() - 10 * DAY)
    newcomer = UserFactory()
    policy_accept(subject=newcomer, version=second, method=Method.SIGNUP)
    cache.clear()
    client.force_login(newcomer)

    assert "I have read this" not in client.get(reverse("policy:index")).content.decode()


def test_the_banner_context_is_read_from_the_session_after_the_first_page(first, django_assert_num_queries):
    subject = UserFactory()
    published("2026-01-01", effective_at=NOW() + 40 * DAY)
    session = SessionStore()
    policy_notice(_request(subject, session))

    with django_assert_num_queries(0):
        context = policy_notice(_request(subject, session))

    assert context["policy_update"]["version"].label == "2026-01-01"


def test_acknowledging_needs_a_csrf_token_a_post_and_a_subject(first):
    upcoming = published("2026-01-01", effective_at=NOW() + 40 * DAY)
    url = reverse("policy:acknowledge", args=[upcoming.pk])
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(UserFactory())

    assert strict.post(url).status_code == 403
    assert strict.get(url).status_code == 405
    assert Client().post(url).status_code == 403
    staff = Client()
    staff.force_login(StaffFactory())
    assert staff.post(url).status_code == 404
    assert not PolicyNoticeDelivery.objects.exists()


def test_acknowledging_never_redirects_off_site(first, client):
    upcoming = published("2026-01-01", effective_at=NOW() + 40 * DAY)
    client.force_login(UserFactory())

    response = client.post(reverse("policy:acknowledge", args=[upcoming.pk]), {"next": "https://evil.example/"})

    assert response["Location"] == "/"


# --- Public pages ----------------------------------------------------------------------------------


def test_pm_x_1_the_policy_pages_show_the_version_in_force_and_history_without_cookies(first, client):
    published("2026-01-01", effective_at=NOW() + 40 * DAY)
    draft("secret-draft", effective_at=NOW() + 80 * DAY)

    index = client.get(reverse("policy:index"))
    version = client.get(reverse("policy:version", args=["2025-04-25"]))

    body = index.content.decode()
    assert index.status_code == 200 and "2025-04-25" in body and "2026-01-01" in body and "secret-draft" not in body
    assert version.status_code == 200 and first.summary in version.content.decode()
    assert not index.cookies and not version.cookies
    assert client.get(reverse("policy:version", args=["secret-draft"])).status_code == 404


# --- Workbench -------------------------------------------------------------------------------------


def _admin(name, *args):
    return reverse(f"admin:policies_{name}", args=args)


def test_pm_x_2_the_dpo_publishes_from_the_workbench_and_is_told_who_gets_the_notice(first, client, dpo, queued):
    UserFactory.create_batch(3)
    StaffFactory()
    version = draft("2026-01-01", effective_at=NOW() + 10 * DAY)

    change = client.get(_admin("policyversion_change", version.pk)).content.decode()
    page = client.get(_admin("policyversion_publish", version.pk))
    refused = client.post(_admin("policyversion_publish", version.pk), {})

    assert _admin("policyversion_publish", version.pk) in change
    assert '<strong class="policy-recipients">3</strong>' in page.content.decode()
    assert "needs the reason for the short notice" in page.content.decode()
    assert refused.status_code == 200 and "give the reason" in refused.content.decode()
    assert PolicyVersion.objects.get(pk=version.pk).published_at is None

    done = client.post(_admin("policyversion_publish", version.pk), {"short_notice_reason": "correction"})

    assert done.status_code == 302
    version.refresh_from_db()
    assert version.published_by == dpo and version.short_notice_reason == "correction"


def test_the_dpo_drafts_a_version_in_the_workbench_audited(client, dpo):
    response = client.post(
        _admin("policyversion_add"),
        {
            "label": "2026-01-01",
            "last_updated": "2025-12-01",
            "effective_at_0": "2026-01-01",
            "effective_at_1": "00:00:00",
            "summary": "What changes.",
            "text": "# Policy",
            "url": "",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    assert PolicyVersion.objects.get(label="2026-01-01").published_at is None
    assert AuditEvent.objects.filter(action="policy.draft_created").count() == 1


def test_a_published_version_is_read_only_in_the_workbench(first, client, dpo):
    page = client.get(_admin("policyversion_change", first.pk)).content.decode()
    client.post(_admin("policyversion_change", first.pk), {"label": "x", "summary": "Rewritten"})

    assert 'name="summary"' not in page and _admin("policyversion_publish", first.pk) not in page
    assert PolicyVersion.objects.get(pk=first.pk).summary == first.summary
    assert client.post(_admin("policyversion_delete", first.pk), {"post": "yes"}).status_code == 403


def test_an_analyst_reads_versions_but_cannot_publish(first, client):
    client.force_login(staff_in_role("Privacy analyst"))
    version = draft("2026-01-01", effective_at=NOW() + 40 * DAY)

    change = client.get(_admin("policyversion_change", version.pk))

    assert change.status_code == 200 and _admin("policyversion_publish", version.pk) not in change.content.decode()
    assert client.get(_admin("policyversion_publish", version.pk)).status_code == 403
    assert client.post(_admin("policyversion_publish", version.pk), {"short_notice_reason": "correction"}).status_code == 403
    assert PolicyVersion.objects.get(pk=version.pk).published_at is None


def test_an_auditor_reads_everything_and_changes_nothing(first, client, auditor):
    version = draft("2026-01-01", effective_at=NOW() + 40 * DAY)
    subject = UserFactory()
    policy_accept(subject=subject, version=first, method=Method.SIGNUP)
    PolicyNoticeDelivery.objects.create(version=first, user=subject)

    for name in ("policyversion_changelist", "policyacceptance_changelist", "policynoticedelivery_changelist"):
        assert client.get(_admin(name)).status_code == 200, name
    assert 'name="summary"' not in client.get(_admin("policyversion_change", version.pk)).content.decode()
    assert client.get(_admin("policyversion_add")).status_code == 403
    assert client.get(_admin("policyversion_publish", version.pk)).status_code == 403


def test_acceptances_and_deliveries_name_subjects_only_by_reference(first, client, dpo):
    subject = UserFactory(email="someone.private@example.org")
    policy_accept(subject=subject, version=first, method=Method.SIGNUP)
    PolicyNoticeDelivery.objects.create(version=first, user=subject)

    for name in ("policyacceptance_changelist", "policynoticedelivery_changelist"):
        found = client.get(_admin(name), {"q": str(subject.subject_ref)}).content.decode()
        missing = client.get(_admin(name), {"q": str(uuid.uuid4())}).content.decode()
        assert str(subject.subject_ref) in found and "someone.private" not in found, name
        assert str(subject.subject_ref) not in missing, name
    delivery = PolicyNoticeDelivery.objects.get()
    assert "someone.private" not in client.get(_admin("policynoticedelivery_change", delivery.pk)).content.decode()


def test_the_version_list_shows_state_and_notice_progress_in_a_fixed_number_of_queries(first, client, dpo):
    subject = UserFactory()
    PolicyNoticeDelivery.objects.create(version=first, user=subject)
    url = _admin("policyversion_changelist")
    client.get(url)  # warm the session and the permission caches
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    for n in range(4):
        published(f"2025-0{n + 5}-01", effective_at=NOW() - (100 - n) * DAY)

    with CaptureQueriesContext(connection) as many:
        page = client.get(url).content.decode()

    assert "in force" in page and "superseded" in page and "1 / 1" in page
    assert len(many) == len(few)
