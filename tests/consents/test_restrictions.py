"""Restrictions and objections (PM-IX-5), and the legal hold a restriction kept for legal claims places
(GDPR Art. 18(1)(c)), checked with retention's own hold queries and a real purge run."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from chat.models import AccessLog
from consents.models import ConsentChain, ProcessingRestriction
from consents.services import restriction_lift, restriction_place
from privacyops.models import AuditEvent
from retention.engine import purge_run_work
from retention.models import RetentionRule
from retention.selectors import active_holds, hold_kept_counts
from retention.services import purge_run_start
from tests.factories.accounts import UserFactory
from tests.factories.chat import AccessLogFactory
from tests.factories.consents import ConsentPurposeFactory
from tests.factories.inventory import DataCategoryFactory, DataStoreFactory, PurposeFactory, staff_with_permissions

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketing(db):
    return PurposeFactory(code="marketing", name="Marketing communications")


@pytest.fixture
def analyst(db):
    return staff_with_permissions("consents.add_processingrestriction", "consents.lift_processingrestriction")


def _version(user) -> int:
    chain = ConsentChain.objects.filter(subject_ref=user.subject_ref).first()
    return chain.version if chain else 0


def _audit(action):
    return AuditEvent.objects.filter(action=action).order_by("-id").first()


def test_pm_ix_5_a_restriction_is_recorded_bumps_the_subjects_version_and_is_audited(analyst, marketing):
    subject = UserFactory()
    before = _version(subject)
    restriction = restriction_place(
        actor=analyst,
        subject=subject,
        kind="restriction",
        reason="Accuracy contested by letter",
        purpose=marketing,
        reference="REQ-7",
    )
    assert restriction.is_active()
    assert (restriction.purpose, restriction.created_by, restriction.legal_hold) == (marketing, analyst, None)
    assert _version(subject) == before + 1
    event = _audit("consent.restriction_placed")
    assert event.subject_ref == subject.subject_ref
    assert event.details["purpose"] == "marketing"
    assert event.details["kind"] == "restriction"
    assert event.details["reference"] == "REQ-7"
    assert "Accuracy contested" not in str(event.details)  # the reason is free text: it stays out of the audit trail


def test_pm_ix_5_an_objection_has_its_own_audit_action_and_may_cover_every_purpose(analyst):
    subject = UserFactory()
    objection = restriction_place(actor=analyst, subject=subject, kind="objection", reason="Art. 21 objection")
    assert objection.purpose is None
    assert _audit("consent.objection_recorded").details["purpose"] is None


def test_pm_ix_5_the_purpose_may_be_named_by_register_or_consent_purpose_code(analyst, marketing):
    ConsentPurposeFactory(code="marketing-communications", purpose=marketing)
    subject = UserFactory()
    by_register = restriction_place(actor=analyst, subject=subject, kind="objection", reason="No e-mails", purpose="marketing")
    by_consent = restriction_place(
        actor=analyst, subject=subject, kind="objection", reason="No e-mails", purpose="marketing-communications"
    )
    assert by_register.purpose == by_consent.purpose == marketing
    with pytest.raises(ValidationError, match="no-such-purpose"):
        restriction_place(actor=analyst, subject=subject, kind="objection", reason="x", purpose="no-such-purpose")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "suspension"}, "kind"),
        ({"reason": "   "}, "reason"),
        ({"ends_at": timezone.now() - timedelta(days=1)}, "ends_at"),
        ({"kind": "objection", "for_legal_claims": True}, "for_legal_claims"),
    ],
)
def test_pm_ix_5_a_restriction_that_makes_no_sense_is_refused(analyst, kwargs, field):
    arguments = {"actor": analyst, "subject": UserFactory(), "kind": "restriction", "reason": "Asked by letter", **kwargs}
    with pytest.raises(ValidationError) as refused:
        restriction_place(**arguments)
    assert field in refused.value.message_dict
    assert not ProcessingRestriction.objects.exists()


def test_pm_ix_5_staff_without_the_permission_cannot_record_but_the_subject_may_object_for_themselves(db):
    subject = UserFactory()
    with pytest.raises(PermissionDenied):
        restriction_place(actor=staff_with_permissions(), subject=subject, kind="objection", reason="No")
    assert restriction_place(actor=subject, subject=subject, kind="objection", reason="Stop the e-mails").created_by == subject


# --- Legal claims: the hold -------------------------------------------------------------------------------


@pytest.fixture
def log_rule(db):
    """A confirmed rule deleting access logs older than 30 days, in the register the engine reads."""
    DataStoreFactory(code="django-chat", kind="django", app_label="chat")
    return RetentionRule.objects.create(
        code="logs-30-days",
        name="Access logs for 30 days",
        category=DataCategoryFactory(code="log-data"),
        period="P30D",
        counts_from="created",
        action="delete",
        enabled=True,
        confirmed_at=timezone.now(),
    )


def _purge(rule):
    run = purge_run_start(rule=rule, enqueue=False)
    return purge_run_work(run.pk, worker="test")


def test_pm_ix_5_a_restriction_for_legal_claims_places_a_hold_the_purge_respects(analyst, log_rule):
    claimant, other = UserFactory(), UserFactory()
    old = timezone.now() - timedelta(days=90)
    kept = AccessLogFactory(user=claimant, created=old)
    AccessLogFactory(user=other, created=old)

    restriction = restriction_place(
        actor=analyst, subject=claimant, kind="restriction", reason="Needs the logs for a court claim", for_legal_claims=True
    )

    hold = restriction.legal_hold
    assert hold is not None and hold.subject == claimant and hold.is_active
    assert hold in active_holds()
    assert hold_kept_counts(hold)["chat.AccessLog"] == 1
    assert _audit("retention.hold_placed").subject_ref == claimant.subject_ref
    assert _audit("consent.restriction_placed").details["legal_hold"] == hold.pk

    run = _purge(log_rule)
    assert list(AccessLog.objects.values_list("pk", flat=True)) == [kept.pk]
    assert run.counts["chat.AccessLog"]["held"] == 1


def test_pm_ix_5_lifting_the_restriction_leaves_its_hold_for_the_dpo(analyst, log_rule):
    claimant = UserFactory()
    kept = AccessLogFactory(user=claimant, created=timezone.now() - timedelta(days=90))
    restriction = restriction_place(
        actor=analyst,
        subject=claimant,
        kind="restriction",
        reason="Court claim",
        for_legal_claims=True,
        ends_at=timezone.now() + timedelta(days=60),
    )
    assert restriction.legal_hold.review_date == restriction.ends_at.date()
    before = _version(claimant)

    lifted = restriction_lift(actor=analyst, restriction=restriction, reason="Claim settled")

    assert (lifted.lifted_by, lifted.lift_reason) == (analyst, "Claim settled")
    assert not lifted.is_active()
    assert _version(claimant) == before + 1
    event = _audit("consent.restriction_lifted")
    assert event.details["legal_hold_kept"] == restriction.legal_hold_id
    assert "DPO" in event.details["legal_hold_note"]
    restriction.legal_hold.refresh_from_db()
    assert restriction.legal_hold.is_active
    _purge(log_rule)
    assert AccessLog.objects.filter(pk=kept.pk).exists()


def test_pm_ix_5_lifting_is_audited_as_an_objection_withdrawn_and_happens_once(analyst):
    subject = UserFactory()
    objection = restriction_place(actor=analyst, subject=subject, kind="objection", reason="No profiling")
    restriction_lift(actor=analyst, restriction=objection, reason="Subject changed their mind")
    assert "legal_hold_kept" not in _audit("consent.objection_withdrawn").details
    with pytest.raises(ValidationError, match="already been lifted"):
        restriction_lift(actor=analyst, restriction=objection, reason="Again")


def test_pm_ix_5_lifting_needs_a_reason_and_the_permission(analyst):
    subject = UserFactory()
    restriction = restriction_place(actor=analyst, subject=subject, kind="restriction", reason="Contested")
    with pytest.raises(ValidationError):
        restriction_lift(actor=analyst, restriction=restriction, reason="")
    with pytest.raises(PermissionDenied):
        restriction_lift(actor=staff_with_permissions("consents.add_processingrestriction"), restriction=restriction, reason="x")
    with pytest.raises(PermissionDenied):  # the subject lifts only what they recorded themselves
        restriction_lift(actor=subject, restriction=restriction, reason="x")
    own = restriction_place(actor=subject, subject=subject, kind="objection", reason="No e-mails")
    assert restriction_lift(actor=subject, restriction=own, reason="E-mails are fine again").lifted_at is not None
