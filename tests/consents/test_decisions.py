"""`is_processing_allowed`: the one answer (PM-II-2, PM-II-5, PM-III-6, PM-IX-5, PM-IX-6).

The table test runs every jurisdiction × purpose × consent state × restriction on the register as
`loadpolicy` seeds it. Its expectations are two explicit tables: what each purpose rests on in each
jurisdiction (MODE), and what each kind of basis answers for a consent state and a restriction (`expected`).
The seeded register is loaded once for the module inside an outer transaction; every test runs in its own
savepoint on top of it, so the 2,000-odd cases stay fast and leave nothing behind.
"""

from __future__ import annotations

import datetime
import itertools
import uuid

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from consents.decisions import (
    Decision,
    UnknownPurpose,
    UnknownSubject,
    decision_cache_clear,
    is_processing_allowed,
    is_processing_allowed_many,
)
from consents.lapse import lifetime_end
from consents.ledger import consent_record, visitor_link
from consents.models import ConsentEvent, ConsentPurpose
from inventory.models import Jurisdiction, Purpose, PurposeBasis
from tests.factories.accounts import UserFactory
from tests.factories.consents import ConsentPurposeFactory, ProcessingRestrictionFactory

Action = ConsentEvent.Action

# The seeded consent purposes (the `seeded` register); made here too if the seed lacks one.
CONSENT_PURPOSES = {
    "marketing-communications": {"purpose": "marketing", "dpv": "dpv:DirectMarketing"},
    "cookies-necessary": {"purpose": "provide-service", "is_necessary": True, "cookie_category": "necessary"},
    "cookies-functionality": {"purpose": "provide-service", "cookie_category": "functionality", "lifetime": "P13M"},
    "cookies-analytics": {
        "purpose": "support-and-improvement",
        "cookie_category": "analytics",
        "is_sale_or_sharing": True,
        "lifetime": "P13M",
    },
}


def ensure_consent_purposes() -> dict[str, ConsentPurpose]:
    made = {}
    for code, fields in CONSENT_PURPOSES.items():
        values = dict(fields, purpose=Purpose.objects.get(code=fields["purpose"]))
        made[code] = ConsentPurposeFactory(code=code, **values)
    return made


@pytest.fixture(scope="module")
def register(django_db_setup, django_db_blocker):
    """The seeded register and its consent purposes, loaded once for the module inside a transaction that is
    rolled back at its end."""
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            call_command("loadpolicy", verbosity=0)
            ensure_consent_purposes()
            yield
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def isolated(request, register):
    """Every test but the table's (which only reads answers computed once) runs in its own savepoint.
    Savepoints roll chain versions back, so a version can recur: no cached answer may outlive its test."""
    if "table" not in request.fixturenames:
        request.getfixturevalue("db")
    decision_cache_clear()
    yield
    decision_cache_clear()


# --- The table ------------------------------------------------------------------------------------------

# label -> (country, region, the jurisdiction the register gives them)
JURISDICTIONS = {
    "EU": ("FR", "", "EU"),
    "UK": ("GB", "", "UK"),
    "SG": ("SG", "", "SG"),
    "ID": ("ID", "", "ID"),
    "CN": ("CN", "", "CN"),
    "US-CA": ("US", "US-CA", "US-CA"),
    "US-other": ("US", "", "DEFAULT"),
    "unknown": ("", "", "DEFAULT"),
}

CONSENT, OPT_OUT, BASIS, NECESSARY = "consent", "opt-out", "basis", "necessary"
# What the seeded register makes each purpose, per jurisdiction ("*": every jurisdiction not listed).
MODE = {
    "marketing-communications": {"*": (CONSENT, "consent"), "US-CA": (OPT_OUT, "notice-opt-out")},
    "marketing": {"*": (CONSENT, "consent"), "US-CA": (OPT_OUT, "notice-opt-out")},
    "cookies-necessary": {"*": (NECESSARY, "contract")},
    "cookies-functionality": {"*": (CONSENT, "consent")},
    "cookies-analytics": {"*": (CONSENT, "consent")},
    "model-improvement": {"*": (BASIS, "legitimate-interests"), "CN": (BASIS, "contract")},
    "provide-service": {"*": (BASIS, "contract")},
}
# Each table subject gives the same answer to every question we ask (every non-necessary consent purpose is in
# the row's state). This is the consent purpose the answer hangs on, whose lifetime decides whether a consent
# given 14 months ago still counts; for purposes the state must not matter, an unrelated one.
VARIED = {
    "marketing-communications": "marketing-communications",
    "marketing": "marketing-communications",
    "cookies-necessary": "cookies-functionality",
    "cookies-functionality": "cookies-functionality",
    "cookies-analytics": "cookies-analytics",
    "model-improvement": "marketing-communications",
    "provide-service": "cookies-functionality",
}
STATES = ("none", "given", "given-14-months-ago", "refused", "withdrawn", "expired")
RESTRICTIONS = (
    "none",
    "restriction-all",
    "restriction-this",
    "objection-this",
    "objection-other",
    "lifted",
    "ended",
    "starts-later",
)
BLOCKING = {"restriction-all", "restriction-this", "objection-this"}


def effective_state(state: str, varied: str) -> str:
    """A given older than the purpose's lifetime counts as expired; without a lifetime it stays given."""
    if state == "given-14-months-ago":
        return "expired" if CONSENT_PURPOSES[varied].get("lifetime") else "given"
    return state


def expected(mode: str, state: str, restriction: str) -> bool:
    if mode == NECESSARY:
        return True
    if restriction in BLOCKING:
        return False
    if mode == CONSENT:
        return state == "given"
    if mode == OPT_OUT:
        return state not in ("refused", "withdrawn")
    return True  # another basis: the subject's answers to other questions do not matter


def register_code(asked: str) -> str:
    return CONSENT_PURPOSES[asked]["purpose"] if asked in CONSENT_PURPOSES else asked


def subject_in(label: str):
    country, region, _ = JURISDICTIONS[label]
    return UserFactory(country=country, region=region, password=None)


def record(user, purpose, action: str, effective_at, method: str = "api"):
    return consent_record(purpose=purpose, action=action, method=method, subject=user, effective_at=effective_at)


def apply_state(user, purpose: ConsentPurpose, state: str, now) -> None:
    long_ago, yesterday = now - datetime.timedelta(days=430), now - datetime.timedelta(days=1)
    if state == "given":
        record(user, purpose, Action.GIVEN, yesterday)
    elif state == "given-14-months-ago":
        record(user, purpose, Action.GIVEN, long_ago)
    elif state in ("refused", "withdrawn"):
        record(user, purpose, Action.GIVEN, long_ago)
        record(user, purpose, state, yesterday)
    elif state == "expired":
        record(user, purpose, Action.GIVEN, long_ago)
        record(user, purpose, Action.EXPIRED, yesterday, method="expiry")


def apply_restriction(user, restriction: str, now) -> None:
    """ "this" rows cover every register purpose the table asks about; "other" covers none of them."""
    these = list(Purpose.objects.filter(code__in={register_code(asked) for asked in MODE}))
    other = Purpose.objects.get(code="fraud-prevention-security")
    day = datetime.timedelta(days=1)
    rows = {
        "none": [],
        "restriction-all": [{"kind": "restriction", "purpose": None}],
        "restriction-this": [{"kind": "restriction", "purpose": this} for this in these],
        "objection-this": [{"kind": "objection", "purpose": this} for this in these],
        "objection-other": [{"kind": "objection", "purpose": other}],
        "lifted": [{"kind": "restriction", "purpose": None, "starts_at": now - 2 * day, "lifted_at": now - day}],
        "ended": [{"kind": "restriction", "purpose": this, "starts_at": now - 2 * day, "ends_at": now - day} for this in these],
        "starts-later": [{"kind": "objection", "purpose": this, "starts_at": now + day} for this in these],
    }[restriction]
    for row in rows:
        ProcessingRestrictionFactory(subject=user, **{"starts_at": now - day, **row})


@pytest.fixture(scope="module")
def table(register) -> dict[tuple[str, str, str, str], Decision]:
    """(jurisdiction, asked, state, restriction) -> the decision, for every case.

    One subject per (state, restriction); each jurisdiction in turn is given to all of them (their country
    and region are rewritten), and all their questions are asked at once through `is_processing_allowed_many`,
    the same code `is_processing_allowed` runs."""
    now = timezone.now()
    asked = [p for p in ConsentPurpose.objects.filter(code__in=CONSENT_PURPOSES) if not p.is_necessary]
    subjects = {}
    for state, restriction in itertools.product(STATES, RESTRICTIONS):
        user = subject_in("unknown")
        for purpose in asked:
            apply_state(user, purpose, state, now)
        apply_restriction(user, restriction, now)
        subjects[(state, restriction)] = user
    answers = {}
    for jurisdiction, (country, region, _code) in JURISDICTIONS.items():
        User.objects.filter(pk__in=[user.pk for user in subjects.values()]).update(country=country, region=region)
        questions = [(key, code) for key in subjects for code in MODE]
        results = is_processing_allowed_many([(subjects[key].subject_ref, code) for key, code in questions])
        for ((state, restriction), code), result in zip(questions, results, strict=True):
            answers[(jurisdiction, code, state, restriction)] = result
    return answers


CASES = list(itertools.product(JURISDICTIONS, MODE, STATES, RESTRICTIONS))


@pytest.mark.parametrize(("jurisdiction", "asked", "state", "restriction"), CASES, ids=["/".join(case) for case in CASES])
def test_pm_iii_6_pm_ix_5_decision_table(table, jurisdiction, asked, state, restriction):
    decision = table[(jurisdiction, asked, state, restriction)]

    mode, basis = MODE[asked].get(jurisdiction, MODE[asked]["*"])
    assert isinstance(decision, Decision), decision
    assert decision.allowed is expected(mode, effective_state(state, VARIED[asked]), restriction), decision
    assert bool(decision) is decision.allowed
    assert decision.restricted is (restriction in BLOCKING)
    assert decision.basis == basis
    assert decision.jurisdiction == JURISDICTIONS[jurisdiction][2]
    if restriction == "objection-this" and register_code(asked) == "marketing" and mode != NECESSARY:
        assert "Art. 21(3)" in decision.reason


# --- The rules one by one ------------------------------------------------------------------------------------


def test_pm_ii_2_given_consent_says_since_when():
    user = subject_in("EU")
    given_at = timezone.now() - datetime.timedelta(hours=3)
    consent_record(
        purpose=ConsentPurpose.objects.get(code="marketing-communications"),
        action=Action.GIVEN,
        method="api",
        subject=user,
        effective_at=given_at,
    )
    decision = is_processing_allowed(user.subject_ref, "marketing-communications")
    assert decision == Decision(
        allowed=True,
        basis="consent",
        since=given_at,
        restricted=False,
        reason=decision.reason,
        jurisdiction="EU",
    )
    assert decision.as_dict()["since"] == given_at.astimezone(datetime.UTC).isoformat()


def test_pm_ii_2_withdrawal_says_since_when():
    user = subject_in("UK")
    purpose = ConsentPurpose.objects.get(code="marketing-communications")
    consent_record(purpose=purpose, action=Action.GIVEN, method="api", subject=user)
    withdrawn = consent_record(purpose=purpose, action=Action.WITHDRAWN, method="api", subject=user)
    decision = is_processing_allowed(str(user.subject_ref), "marketing")
    assert not decision
    assert decision.since == withdrawn.effective_at
    assert "withdrawn" in decision.reason


def test_pm_iii_6_lapsed_consent_is_not_given_before_the_expiry_job_runs():
    user = subject_in("SG")
    now = timezone.now()
    purpose = ConsentPurpose.objects.get(code="cookies-analytics")
    given_at = now - datetime.timedelta(days=400)
    consent_record(purpose=purpose, action=Action.GIVEN, method="banner", subject=user, effective_at=given_at)
    decision = is_processing_allowed(user, purpose)
    assert not decision
    assert decision.since == lifetime_end(given_at, "P13M")
    assert "expired" in decision.reason
    # The same consent, asked about at a moment within its lifetime, was valid then.
    assert is_processing_allowed(user, purpose, at=given_at + datetime.timedelta(days=30))


def test_pm_iii_6_an_unreadable_lifetime_fails_closed():
    user = subject_in("EU")
    purpose = ConsentPurpose.objects.get(code="cookies-functionality")
    consent_record(purpose=purpose, action=Action.GIVEN, method="api", subject=user)
    ConsentPurpose.objects.filter(pk=purpose.pk).update(lifetime="thirteen months")
    decision = is_processing_allowed(user, "cookies-functionality")
    assert not decision and "expired" in decision.reason


def test_pm_ix_6_objection_to_direct_marketing_wins_over_a_given_consent():
    user = subject_in("EU")
    consent_record(
        purpose=ConsentPurpose.objects.get(code="marketing-communications"), action=Action.GIVEN, method="api", subject=user
    )
    assert is_processing_allowed(user, "marketing")
    objection = ProcessingRestrictionFactory(subject=user, kind="objection", purpose=Purpose.objects.get(code="marketing"))
    decision = is_processing_allowed(user, "marketing-communications")
    assert not decision and decision.restricted
    assert decision.since == objection.starts_at
    assert "Art. 21(3)" in decision.reason


def test_pm_ix_5_restriction_of_everything_stops_every_purpose_but_the_necessary():
    user = subject_in("ID")
    ProcessingRestrictionFactory(subject=user, kind="restriction", purpose=None)
    for code in ("provide-service", "model-improvement", "legal-compliance", "marketing", "cookies-analytics"):
        decision = is_processing_allowed(user, code)
        assert not decision and decision.restricted, code
    necessary = is_processing_allowed(user, "cookies-necessary")
    assert necessary.allowed and necessary.restricted


def test_pm_ii_5_model_improvement_follows_legitimate_interests_until_an_objection():
    user = subject_in("EU")
    assert is_processing_allowed(user, "model-improvement").basis == "legitimate-interests"
    ProcessingRestrictionFactory(subject=user, kind="objection", purpose=Purpose.objects.get(code="model-improvement"))
    decision = is_processing_allowed(user, "model-improvement")
    assert not decision and decision.restricted
    assert "objection" in decision.reason
    assert is_processing_allowed(user, "provide-service")  # the objection covers that one purpose only


def test_pm_ii_2_refusing_a_consent_purpose_is_a_no_even_on_a_basis_that_needs_no_consent():
    """A consent purpose resting on legitimate interests: asked and refused means no (rule 9)."""
    user = subject_in("EU")
    purpose = ConsentPurposeFactory(code="research-panel", purpose=Purpose.objects.get(code="model-improvement"))
    assert is_processing_allowed(user, purpose)  # never asked: the basis carries it
    consent_record(purpose=purpose, action=Action.REFUSED, method="api", subject=user)
    decision = is_processing_allowed(user, "research-panel")
    assert not decision and decision.basis == "legitimate-interests" and not decision.restricted
    assert is_processing_allowed(user, "model-improvement")  # the register purpose itself is unaffected


def test_pm_iii_6_gpc_refusal_under_an_opt_out_basis_means_no():
    """California marketing rests on notice and opt-out; a refusal (e.g. from a GPC signal) is that opt-out."""
    user = subject_in("US-CA")
    assert is_processing_allowed(user, "marketing")
    consent_record(
        purpose=ConsentPurpose.objects.get(code="marketing-communications"),
        action=Action.REFUSED,
        method="gpc",
        subject=user,
        gpc=True,
    )
    decision = is_processing_allowed(user, "marketing")
    assert not decision and decision.basis == "notice-opt-out"


def test_pm_ix_5_no_lawful_basis_in_the_jurisdiction_fails_closed():
    user = subject_in("CN")
    PurposeBasis.objects.filter(purpose__code="model-improvement").delete()
    decision = is_processing_allowed(user, "model-improvement")
    assert not decision and decision.basis is None
    assert "no lawful basis" in decision.reason


def test_pm_ix_5_register_without_default_jurisdiction_fails_closed_but_keeps_necessary():
    user = subject_in("unknown")
    PurposeBasis.objects.filter(jurisdiction__code=Jurisdiction.DEFAULT).delete()
    from requests.models import DeadlineRule  # installed beside consents: its seeded clock rules point at DEFAULT

    DeadlineRule.objects.filter(jurisdiction__code=Jurisdiction.DEFAULT).delete()
    Jurisdiction.objects.filter(code=Jurisdiction.DEFAULT).delete()
    assert not is_processing_allowed(user, "provide-service")
    assert is_processing_allowed(user, "cookies-necessary")


def test_pm_iii_6_consent_based_register_purpose_nobody_collects_consent_for_is_not_allowed():
    user = subject_in("EU")
    ConsentPurpose.objects.filter(code="marketing-communications").update(is_active=False)
    decision = is_processing_allowed(user, "marketing")
    assert not decision
    assert "no consent purpose collects consent" in decision.reason


def test_pm_iii_6_linked_visitor_consent_counts_for_the_account():
    user = subject_in("EU")
    visitor = uuid.uuid4()
    purpose = ConsentPurpose.objects.get(code="cookies-analytics")
    consent_record(purpose=purpose, action=Action.GIVEN, method="api", visitor_id=visitor)
    assert not is_processing_allowed(user, purpose)
    visitor_link(visitor_id=visitor, subject=user, method="signin")
    assert is_processing_allowed(user, purpose)


def test_pm_iii_6_at_reads_the_ledger_as_it_stood():
    user = subject_in("EU")
    purpose = ConsentPurpose.objects.get(code="marketing-communications")
    now = timezone.now()
    consent_record(
        purpose=purpose, action=Action.GIVEN, method="api", subject=user, effective_at=now - datetime.timedelta(days=10)
    )
    consent_record(
        purpose=purpose, action=Action.WITHDRAWN, method="api", subject=user, effective_at=now - datetime.timedelta(days=2)
    )
    assert is_processing_allowed(user, purpose, at=now - datetime.timedelta(days=5))
    assert not is_processing_allowed(user, purpose, at=now - datetime.timedelta(days=1))
    assert not is_processing_allowed(user, purpose, at=now - datetime.timedelta(days=11))
    assert not is_processing_allowed(user, purpose)


def test_pm_ix_5_lifted_restriction_counted_while_it_was_in_force():
    user = subject_in("EU")
    now = timezone.now()
    ProcessingRestrictionFactory(
        subject=user, kind="restriction", starts_at=now - datetime.timedelta(days=5), lifted_at=now - datetime.timedelta(days=1)
    )
    assert not is_processing_allowed(user, "provide-service", at=now - datetime.timedelta(days=3))
    assert is_processing_allowed(user, "provide-service")


# --- Errors -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("subject", [uuid.UUID(int=7), "not-a-uuid", None, 12])
def test_unknown_subject_raises(subject):
    with pytest.raises(UnknownSubject):
        is_processing_allowed(subject, "marketing")


@pytest.mark.parametrize("purpose", ["no-such-purpose", "", "marketing communications", None, 3])
def test_unknown_purpose_raises(purpose):
    user = subject_in("EU")
    with pytest.raises(UnknownPurpose):
        is_processing_allowed(user, purpose)


def test_consent_purpose_code_is_looked_up_before_a_register_code():
    """Two namespaces; a consent purpose named like a register purpose answers for itself."""
    user = subject_in("EU")
    ConsentPurposeFactory(code="provide-service", purpose=Purpose.objects.get(code="marketing"))
    assert is_processing_allowed(user, "provide-service").basis == "consent"
    assert is_processing_allowed(user, Purpose.objects.get(code="provide-service")).basis == "contract"


def test_many_answers_in_order_with_errors_in_place():
    user = subject_in("EU")
    results = is_processing_allowed_many(
        [
            (user, "provide-service"),
            (uuid.UUID(int=1), "marketing"),
            (user, "nope"),
            (user, "marketing"),
            (user, "provide-service"),
        ]
    )
    assert [type(r).__name__ for r in results] == ["Decision", "UnknownSubject", "UnknownPurpose", "Decision", "Decision"]
    assert results[0].allowed and not results[3].allowed and results[4] == results[0]
