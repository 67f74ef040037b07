"""The de-identified model-improvement dataset (PM-II-5): who is in it, what is removed, how it is written."""

import dataclasses
import datetime
import hashlib
import io
import json
import re
import tracemalloc
import uuid
from collections import Counter

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat.models import Feedback, Message
from consents.decisions import decision_cache_clear, is_processing_allowed
from consents.ledger import consent_record
from consents.models import ConsentEvent, ProcessingRestriction
from consents.services import restriction_lift, restriction_place
from inventory.models import Jurisdiction, LawfulBasis, Purpose, PurposeBasis
from privacyops.models import AuditEvent
from retention.services import hold_place
from tests.factories.accounts import StaffFactory, UserFactory
from tests.factories.chat import ConversationFactory, FeedbackFactory, MessageFactory
from tests.factories.consents import ConsentPurposeFactory
from training import services as training
from training import tasks
from training.services import (
    EXCLUSION_REASONS,
    REDACTION_KINDS,
    Redactor,
    TrainingDatasetError,
    training_dataset_build,
    training_subject_token,
)

pytestmark = pytest.mark.django_db
# The register as loadpolicy seeds it (the model-improvement purpose and its bases); the redaction tests need none.
with_register = pytest.mark.usefixtures("seeded")

UTC = datetime.UTC
RECORD_KEYS = {"type", "subject", "conversation", "message", "turn", "role", "content", "rating", "comment", "day"}
TOKEN = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(autouse=True)
def quick_passwords(settings):
    """Accounts here never sign in: hashing their factory passwords slowly would only slow the tests."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def restrict(subject, *, kind="restriction", purpose="model-improvement", lifted=False, **kwargs):
    """A restriction or objection recorded through the ledger service (it bumps the subject's decision cache)."""
    restriction = restriction_place(
        actor=None, subject=subject, kind=kind, reason="Asked by the subject", purpose=purpose, **kwargs
    )
    if lifted:
        restriction_lift(actor=None, restriction=restriction, reason="Withdrawn by the subject")
    return restriction


def records(path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def speak(user, *texts, created=None):
    conversation = ConversationFactory(user=user)
    return [MessageFactory(conversation=conversation, content=t, **({"created": created} if created else {})) for t in texts]


def build(tmp_path, name="dataset.jsonl", **kwargs):
    out = tmp_path / name
    return training_dataset_build(out_path=out, **kwargs), out


# --- Who is in it ------------------------------------------------------------------------------------


@with_register
def test_pm_ii_5_only_subjects_the_purpose_is_allowed_for_appear(tmp_path):
    people = {
        "allowed": UserFactory(),
        "held": UserFactory(),  # a legal hold stops deletion, not use
        "restricted_elsewhere": UserFactory(),  # a restriction of another purpose does not cover this one
        "lifted": UserFactory(),  # a lifted restriction no longer counts
        "restricted": UserFactory(),
        "objected": UserFactory(),
        "objected_to_everything": UserFactory(),
        "restricted_for_claims": UserFactory(),  # restricted and held: the restriction wins
        "closed": UserFactory(date_joined=timezone.now() - datetime.timedelta(days=30), closed_at=timezone.now()),
        "inactive": UserFactory(is_active=False),
        "staff": StaffFactory(),
        "minor": UserFactory(date_of_birth=timezone.now().date() - datetime.timedelta(days=365 * 16)),
    }
    for label, user in people.items():
        speak(user, f"message of {label}")
    hold_place(actor=None, reason="Claim", reference="CLAIM-1", subject=people["held"])
    restrict(people["restricted_elsewhere"], purpose="marketing")
    restrict(people["lifted"], lifted=True)
    restrict(people["restricted"])
    restrict(people["objected"], kind="objection")
    restrict(people["objected_to_everything"], kind="objection", purpose=None)
    restrict(people["restricted_for_claims"], purpose=None, for_legal_claims=True)

    run, out = build(tmp_path)

    contents = {r["content"] for r in records(out)}
    assert contents == {f"message of {x}" for x in ("allowed", "held", "restricted_elsewhere", "lifted")}
    counts = run.as_dict()
    assert counts["subjects_considered"] == 12 and counts["subjects_included"] == 4
    assert counts["subjects_excluded"] == {
        "staff_account": 1,
        "account_closed": 1,
        "account_inactive": 1,
        "under_minimum_age": 1,
        "restricted_or_objected": 4,
        "not_allowed": 0,
    }


@with_register
def test_pm_ii_5_where_the_purpose_rests_on_consent_only_a_current_consent_lets_content_in(tmp_path):
    """A DPO may make model improvement consent-based in a jurisdiction; then a withdrawal keeps the person out."""
    purpose = Purpose.objects.get(code="model-improvement")
    PurposeBasis.objects.create(
        purpose=purpose, basis=LawfulBasis.objects.get(code="consent"), jurisdiction=Jurisdiction.objects.get(code="EU")
    )
    asked = ConsentPurposeFactory(code="model-training", purpose=purpose)
    given, withdrawn, never_asked, elsewhere = (UserFactory(country=c) for c in ("FR", "DE", "IT", "SG"))
    for user in (given, withdrawn, never_asked, elsewhere):
        speak(user, f"message of {user.country}")
    for user in (given, withdrawn):
        consent_record(purpose=asked, action=ConsentEvent.Action.GIVEN, method=ConsentEvent.Method.API, subject=user)
    consent_record(purpose=asked, action=ConsentEvent.Action.WITHDRAWN, method=ConsentEvent.Method.API, subject=withdrawn)

    run, out = build(tmp_path)

    assert sorted(r["content"] for r in records(out)) == ["message of FR", "message of SG"]
    assert run.subjects_excluded["not_allowed"] == 2 and run.subjects_excluded["restricted_or_objected"] == 0


@with_register
def test_pm_ii_5_every_subject_is_asked_through_the_decision_function(tmp_path, monkeypatch):
    asked = []
    yes, no = UserFactory(), UserFactory()
    speak(yes, "in")
    speak(no, "out")
    real = training.is_processing_allowed_many

    def recording(checks, *, at=None):
        checks = list(checks)
        asked.extend((subject.pk, purpose) for subject, purpose in checks)
        answers = real(checks, at=at)
        return [
            dataclasses.replace(d, allowed=False, restricted=False) if subject == no else d
            for (subject, _), d in zip(checks, answers, strict=True)
        ]

    monkeypatch.setattr(training, "is_processing_allowed_many", recording)
    run, out = build(tmp_path)

    assert sorted(asked) == sorted([(yes.pk, "model-improvement"), (no.pk, "model-improvement")])
    assert [r["content"] for r in records(out)] == ["in"]
    assert run.subjects_excluded["not_allowed"] == 1


@with_register
def test_pm_ii_5_the_batch_answers_agree_with_is_processing_allowed(tmp_path):
    """The run asks in batches; each answer is the one `is_processing_allowed` gives for that subject."""
    users = [UserFactory(country=c) for c in ("SG", "FR", "CN", "US", "GB")]
    restrict(users[1], kind="objection")
    restrict(users[3], purpose=None)
    for user in users:
        speak(user, f"message of {user.country}")

    _, out = build(tmp_path, batch_size=2)

    expected = {f"message of {u.country}" for u in users if is_processing_allowed(u, "model-improvement")}
    assert {r["content"] for r in records(out)} == expected == {"message of SG", "message of CN", "message of GB"}


@with_register
def test_pm_ii_5_a_restriction_placed_after_one_run_keeps_the_subject_out_of_the_next(tmp_path):
    user = UserFactory()
    speak(user, "hello")
    first, _ = build(tmp_path, "first.jsonl")
    restrict(user, kind="objection")
    second, out = build(tmp_path, "second.jsonl")
    assert first.subjects_included == 1
    assert second.subjects_included == 0 and records(out) == []


@with_register
def test_pm_ii_5_content_written_before_the_minimum_age_stays_out(tmp_path, settings):
    today = timezone.now().date()
    user = UserFactory(date_of_birth=today.replace(year=today.year - settings.SIGNUP_MINIMUM_AGE - 1))
    long_ago = timezone.now() - datetime.timedelta(days=2 * 366)
    speak(user, "written as a minor", created=long_ago)
    FeedbackFactory(message=MessageFactory(conversation=ConversationFactory(user=user), created=long_ago), created=long_ago)
    speak(user, "written as an adult")

    run, out = build(tmp_path)

    assert [r["content"] for r in records(out)] == ["written as an adult"]
    assert run.content_before_minimum_age == 3  # two messages and the feedback


@with_register
def test_pm_ii_5_feedback_without_a_subject_cannot_be_checked_and_never_leaves(tmp_path):
    user = UserFactory()
    kept = FeedbackFactory(message=MessageFactory(conversation=ConversationFactory(user=user)), comment="Too long.")
    FeedbackFactory(user=None, message=None, comment="anonymised by retention")
    FeedbackFactory(message=MessageFactory(conversation=ConversationFactory(user=user)), comment="erased")
    Feedback.objects.filter(comment="erased").update(anonymised_at=timezone.now())

    run, out = build(tmp_path)

    feedback = [r for r in records(out) if r["type"] == "feedback"]
    assert [f["comment"] for f in feedback] == ["Too long."]
    assert feedback[0]["rating"] == kept.rating
    assert run.feedback == 1 and run.feedback_without_subject == 2


# --- What a record holds ----------------------------------------------------------------------------


@with_register
def test_pm_ii_5_records_hold_tokens_role_redacted_content_and_the_day_only(tmp_path):
    user = UserFactory(name="Ingrid Okonkwo", email="ingrid.o@example.org")
    at = datetime.datetime(2025, 4, 25, 17, 43, 12, tzinfo=UTC)
    conversation = ConversationFactory(user=user)
    question = MessageFactory(conversation=conversation, content="Hi, I'm Ingrid, mail ingrid.o@example.org", created=at)
    answer = MessageFactory(
        conversation=conversation, role=Message.Role.ASSISTANT, content="Hello!", created=at + datetime.timedelta(seconds=5)
    )
    FeedbackFactory(message=answer, rating="up", comment="Call me on +65 6123 4567", created=at)

    run, out = build(tmp_path)

    first, second, rating = records(out)
    token = training_subject_token(subject=user, run_id=run.run_id)
    assert first == {
        "type": "message",
        "subject": token,
        "conversation": first["conversation"],
        "message": first["message"],
        "turn": 0,
        "role": "user",
        "content": "Hi, I'm [name], mail [email]",
        "day": "2025-04-25",
    }
    assert (second["turn"], second["role"], second["content"]) == (1, "assistant", "Hello!")
    assert second["conversation"] == first["conversation"] and second["message"] != first["message"]
    assert rating == {
        "type": "feedback",
        "subject": token,
        "conversation": first["conversation"],
        "message": second["message"],
        "rating": "up",
        "comment": "Call me on [phone]",
        "day": "2025-04-25",
    }
    assert question.pk and run.redactions == Counter({"subject_name": 1, "subject_email": 1, "phone": 1})


@with_register
def test_pm_ii_5_no_identifier_of_the_subject_is_written(tmp_path):
    user = UserFactory(name="Marguerite Lindqvist-Abara", email="marguerite.lindqvist@example.org", country="FR")
    speak(
        user,
        "My name is MARGUERITE LINDQVIST-ABARA and my address is Marguerite.Lindqvist@Example.org.",
        "Lindqvist here again; abara is my other surname, write to marguerite (dot) lindqvist (at) example (dot) org",
        f"My reference is {user.subject_ref}",
    )
    FeedbackFactory(message=MessageFactory(conversation=ConversationFactory(user=user)), comment="Signed, marguerite")

    _, out = build(tmp_path)

    text = out.read_text(encoding="utf-8")
    folded = text.casefold()
    for identifier in ("marguerite.lindqvist@example.org", "marguerite", "lindqvist", "abara"):
        assert identifier not in folded
    assert str(user.subject_ref) not in text and user.subject_ref.hex not in text
    for record in records(out):
        assert set(record) <= RECORD_KEYS  # no user, user_id, subject_ref, email, name or IP field
        for key in ("subject", "conversation", "message"):
            assert record[key] is None or TOKEN.fullmatch(record[key]), (key, record[key])
    assert "[reference]" in text and "[email]" in text and "[name]" in text


@with_register
def test_pm_ii_5_pseudonyms_are_stable_within_a_run_and_differ_between_runs(tmp_path):
    alice, bob = UserFactory(), UserFactory()
    speak(alice, "one", "two")
    speak(alice, "three")
    speak(bob, "four")

    run_1, out_1 = build(tmp_path, "a.jsonl")
    run_2, out_2 = build(tmp_path, "b.jsonl")

    by_content = {r["content"]: r for r in records(out_1)}
    assert by_content["one"]["subject"] == by_content["two"]["subject"] == by_content["three"]["subject"]
    assert by_content["one"]["conversation"] == by_content["two"]["conversation"] != by_content["three"]["conversation"]
    assert by_content["four"]["subject"] != by_content["one"]["subject"]
    assert by_content["one"]["subject"] == training_subject_token(subject=alice, run_id=run_1.run_id)
    assert training_subject_token(subject=alice.subject_ref, run_id=run_1.run_id) == by_content["one"]["subject"]

    tokens_1 = {r["subject"] for r in records(out_1)} | {r["conversation"] for r in records(out_1)}
    tokens_2 = {r["subject"] for r in records(out_2)} | {r["conversation"] for r in records(out_2)}
    assert run_1.run_id != run_2.run_id and not tokens_1 & tokens_2


@with_register
def test_pm_ii_5_since_and_until_are_whole_utc_days(tmp_path):
    user = UserFactory()
    for day in (1, 2, 3, 4):
        speak(user, f"day {day}", created=datetime.datetime(2025, 3, day, 23, 59, tzinfo=UTC))

    run, out = build(tmp_path, since=datetime.date(2025, 3, 2), until=datetime.date(2025, 3, 3))

    assert [r["content"] for r in records(out)] == ["day 2", "day 3"]
    assert run.as_dict()["since"] == "2025-03-02T00:00:00+00:00" and run.as_dict()["until"] == "2025-03-04T00:00:00+00:00"


@with_register
def test_pm_ii_5_a_subject_with_content_only_outside_the_window_is_not_considered(tmp_path):
    speak(UserFactory(), "old", created=datetime.datetime(2020, 1, 1, tzinfo=UTC))
    run, _ = build(tmp_path, since=datetime.date(2025, 1, 1))
    assert run.subjects_considered == 0


# --- Redaction ----------------------------------------------------------------------------------------

EMAILS = [
    "jane.doe@example.com",
    "JANE.DOE@EXAMPLE.COM",
    "j+tag@mail.example.co.uk",
    "first_last-99@sub-domain.example.org",
    "o'brien@example.ie",
    "用户@例子.中国",
    "jane [at] example [dot] com",
    "jane(at)example(dot)com",
    "x@y.io",
]

INTERNATIONAL_PHONES = [
    "+1 (202) 555-0143",
    "+1-202-555-0143",
    "+44 20 7946 0958",
    "+44 (0)20 7946 0958",
    "+86 138 1234 5678",
    "+8613812345678",
    "+65 6123 4567",
    "+33 1 23 45 67 89",
    "+49 30 1234567",
    "+91 98765 43210",
    "+62 812-3456-7890",
    "+61 4 1234 5678",
    "0049 30 1234567",
]

LOCAL_PHONES = [
    "(555) 123-4567",
    "555-123-4567",
    "555.123.4567",
    "555 - 123 - 4567",
    "020 7946 0958",
    "07700 900123",
    "0412 345 678",
    "6123 4567",
    "91234567",
    "13812345678",
    "010-12345678",
    "03-1234-5678",
    "555-0123",
    "1-800-555-0199",
    "01 23 45 67 89",
    "030 12345678",
]

NOT_PHONES = [
    "2025-04-25",
    "25.04.2025",
    "04/25/2025",
    "20250425",
    "2019-2024",
    "1,000,000",
    "3.14159265",
    "192.168.100.200",
    "version 1.2.3",
    "10:30",
    "1 2 3 4 5 6 7",
    "12 cats",
    "order 1234567",
    "ISBN 978-3-16-148410-0",
    "in 2024 and 2025",
    "SKU-12345678",
    "a1234567890",
]


@pytest.mark.parametrize("address", EMAILS)
def test_pm_ii_5_email_addresses_are_redacted(address):
    redactor = Redactor()
    assert redactor.redact(f"Write to {address}, please.") == "Write to [email], please."
    assert redactor.counts == Counter({"email": 1})


@pytest.mark.parametrize("number", INTERNATIONAL_PHONES + LOCAL_PHONES)
def test_pm_ii_5_phone_numbers_are_redacted(number):
    redactor = Redactor()
    assert redactor.redact(f"Call {number} tonight.") == "Call [phone] tonight."
    assert redactor.counts == Counter({"phone": 1})


@pytest.mark.parametrize("text", NOT_PHONES)
def test_pm_ii_5_dates_amounts_versions_and_ids_are_not_taken_for_phone_numbers(text):
    redactor = Redactor()
    assert redactor.redact(f"See {text} here") == f"See {text} here"
    assert not redactor.counts


def test_pm_ii_5_several_contacts_in_one_text_are_each_counted():
    redactor = Redactor()
    text = "a@example.com, b@example.com; +1 202 555 0143 or 020 7946 0958."
    assert redactor.redact(text) == "[email], [email]; [phone] or [phone]."
    assert redactor.counts == Counter({"email": 2, "phone": 2})


@pytest.mark.parametrize(
    "text",
    [
        "I am Ingrid Okonkwo.",
        "I am ingrid okonkwo.",
        "I am INGRID   OKONKWO.",
        "I am Ingrid.",
        "I am okonkwo.",
        "I am OKONKWO.",
    ],
)
def test_pm_ii_5_the_subjects_name_is_redacted_in_any_case(text):
    redactor = Redactor(name="Ingrid Okonkwo", email="io@example.org")
    assert redactor.redact(text) == "I am [name]."
    assert redactor.counts == Counter({"subject_name": 1})


@pytest.mark.parametrize(
    "text", ["Mail INGRID.O@EXAMPLE.ORG now", "Mail Ingrid.O@example.org now", "Mail ingrid.o@example.org now"]
)
def test_pm_ii_5_the_subjects_email_is_redacted_in_any_case(text):
    redactor = Redactor(name="Ingrid Okonkwo", email="ingrid.o@example.org")
    assert redactor.redact(text) == "Mail [email] now"
    assert redactor.counts == Counter({"subject_email": 1})


def test_pm_ii_5_the_subjects_reference_from_a_pasted_receipt_is_redacted():
    ref = uuid.uuid4()
    redactor = Redactor(subject_ref=ref)
    text = f'{{"piiPrincipalId": "{str(ref).upper()}"}} and {ref.hex}'
    assert redactor.redact(text) == '{"piiPrincipalId": "[reference]"} and [reference]'
    assert redactor.counts == Counter({"subject_reference": 2})


def test_pm_ii_5_the_local_part_of_the_subjects_email_is_redacted_as_a_handle():
    redactor = Redactor(name="", email="skywalker77@example.org")
    assert redactor.redact("I post as Skywalker77 online") == "I post as [email] online"


def test_pm_ii_5_accented_names_match_unaccented_spelling():
    redactor = Redactor(name="José Müller")
    assert redactor.redact("jose and MULLER and José and Müller") == "[name] and [name] and [name] and [name]"


def test_pm_ii_5_short_name_parts_and_particles_are_not_redacted_alone():
    redactor = Redactor(name="Li Wu van der Berg")
    text = "Li Wu van der Berg: li is, wu was, van der park, berg"
    assert redactor.redact(text) == "[name]: li is, wu was, van der park, [name]"


def test_pm_ii_5_name_parts_that_are_common_words_are_redacted_only_when_capitalised():
    redactor = Redactor(name="Will Young")
    text = "Will said he will be young forever; WILL YOUNG, will young, Young."
    assert redactor.redact(text) == "[name] said he will be young forever; [name], [name], [name]."


def test_pm_ii_5_cjk_names_are_redacted_without_word_boundaries():
    redactor = Redactor(name="王小明")
    assert redactor.redact("我是王小明你好") == "我是[name]你好"


def test_pm_ii_5_a_third_persons_name_is_not_known_and_stays():
    """The documented limit: we redact the account's own name; other people's names in free text remain."""
    redactor = Redactor(name="Ingrid Okonkwo")
    assert redactor.redact("My colleague Tomasz Brzeczyszczykiewicz") == "My colleague Tomasz Brzeczyszczykiewicz"


# --- Audit, bounds and files ------------------------------------------------------------------------


@with_register
def test_pm_ii_5_every_run_is_audited_with_its_counts(tmp_path):
    user = UserFactory(name="Ingrid Okonkwo")
    speak(user, "Ingrid here, +65 6123 4567")
    restrict(UserFactory(), kind="objection")
    speak(ProcessingRestriction.objects.get().subject, "objected")

    run, out = build(tmp_path)

    event = AuditEvent.objects.get(action="training.dataset_built")
    assert event.actor_id is None and event.actor_label == AuditEvent.SYSTEM_ACTOR
    assert event.target_type == "consents.trainingdataset" and event.target_id == str(run.run_id)
    details = event.details
    assert details["subjects_considered"] == 2 and details["subjects_included"] == 1
    assert details["subjects_excluded"]["restricted_or_objected"] == 1
    assert set(details["subjects_excluded"]) == set(EXCLUSION_REASONS)
    assert details["messages"] == 1 and details["feedback"] == 0
    assert details["redactions"] == {"subject_reference": 0, "subject_email": 0, "email": 0, "subject_name": 1, "phone": 1}
    assert set(details["redactions"]) == set(REDACTION_KINDS)
    assert details["sha256"] == run.sha256 and len(run.sha256) == 64
    assert hashlib.sha256(out.read_bytes()).hexdigest() == run.sha256
    assert details["records"] == 1 and details["bytes"] == out.stat().st_size
    assert details["file_name"] == "dataset.jsonl"
    assert "Ingrid" not in json.dumps(details)


@with_register
def test_pm_ii_5_the_audit_event_names_the_staff_member_who_asked(tmp_path):
    staff = StaffFactory()
    build(tmp_path, actor=staff)
    assert AuditEvent.objects.get(action="training.dataset_built").actor_id == staff.pk


def _queries(tmp_path, name, **kwargs) -> int:
    decision_cache_clear()  # every measurement starts without cached decisions (shared and per-process)
    with CaptureQueriesContext(connection) as ctx:
        build(tmp_path, name, **kwargs)
    return len(ctx.captured_queries)


@with_register
def test_pm_ii_5_queries_do_not_grow_with_the_number_of_messages(tmp_path):
    subjects = [UserFactory() for _ in range(3)]
    conversations = [ConversationFactory(user=u) for u in subjects]
    for c in conversations:
        MessageFactory(conversation=c)
    few = _queries(tmp_path, "few.jsonl")

    Message.objects.bulk_create(Message(conversation=c, role="user", content=f"m{i}") for c in conversations for i in range(300))
    many = _queries(tmp_path, "many.jsonl")

    assert many == few
    assert few <= 4 * len(subjects) + 15  # the decision's reads per subject, a handful per batch and per run


@with_register
def test_pm_ii_5_subjects_are_read_in_batches(tmp_path):
    for _ in range(5):
        speak(UserFactory(), "x")
    one_batch = _queries(tmp_path, "one.jsonl", batch_size=10)
    five_batches = _queries(tmp_path, "five.jsonl", batch_size=1)
    run, out = build(tmp_path, "check.jsonl", batch_size=2)
    assert five_batches > one_batch and run.subjects_included == 5 and len(records(out)) == 5


def _peak(tmp_path, name) -> int:
    tracemalloc.start()
    try:
        build(tmp_path, name, batch_size=100)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@with_register
def test_pm_ii_5_memory_stays_bounded_whatever_the_number_of_messages(tmp_path):
    user = UserFactory()
    conversation = ConversationFactory(user=user)
    body = "A sentence of ordinary length about a question. " * 20  # about 1 kB

    Message.objects.bulk_create(Message(conversation=conversation, role="user", content=body) for _ in range(500))
    small = _peak(tmp_path, "small.jsonl")
    Message.objects.bulk_create(Message(conversation=conversation, role="user", content=body) for _ in range(3000))
    large = _peak(tmp_path, "large.jsonl")

    # Holding the 3,500 messages at once would take well over 3.5 MB; streaming keeps the peak where it was.
    assert large - small < 1_000_000, (small, large)


@with_register
def test_pm_ii_5_a_failed_run_leaves_no_file_and_keeps_the_previous_one(tmp_path, monkeypatch):
    user = UserFactory()
    speak(user, *[f"message {i}" for i in range(10)])
    out = tmp_path / "dataset.jsonl"
    out.write_text("previous dataset\n")
    calls = 0
    real = Redactor.redact

    def failing(self, text):
        nonlocal calls
        calls += 1
        if calls == 5:
            raise RuntimeError("killed mid-run")
        return real(self, text)

    monkeypatch.setattr(Redactor, "redact", failing)
    with pytest.raises(RuntimeError):
        training_dataset_build(out_path=out)

    assert out.read_text() == "previous dataset\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["dataset.jsonl"]
    assert not AuditEvent.objects.filter(action="training.dataset_built").exists()


@with_register
def test_pm_ii_5_a_run_whose_audit_event_fails_writes_no_file(tmp_path, monkeypatch):
    speak(UserFactory(), "hello")

    def broken(**kwargs):
        raise RuntimeError("audit trail unavailable")

    monkeypatch.setattr(training, "audit_record", broken)
    with pytest.raises(RuntimeError):
        build(tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == []


@with_register
def test_pm_ii_5_the_file_is_readable_by_its_owner_only(tmp_path):
    speak(UserFactory(), "hello")
    _, out = build(tmp_path)
    assert out.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"since": datetime.date(2025, 3, 2), "until": datetime.date(2025, 3, 1)}, "window is empty"),
        ({"batch_size": 0}, "batch size"),
        ({"since": "2025-01-01"}, "date or a datetime"),
    ],
)
def test_pm_ii_5_bad_arguments_are_refused_before_anything_is_written(tmp_path, kwargs, message):
    with pytest.raises(TrainingDatasetError, match=message):
        build(tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_pm_ii_5_no_pseudonym_key_no_dataset(tmp_path, settings):
    settings.PSEUDONYM_KEY = ""
    with pytest.raises(TrainingDatasetError, match="PSEUDONYM_KEY"):
        build(tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- Command and task -----------------------------------------------------------------------------------


def command(*args) -> str:
    out = io.StringIO()
    call_command("training_dataset", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@with_register
def test_pm_ii_5_command_writes_the_file_and_prints_the_counts(tmp_path):
    user = UserFactory()
    speak(user, "reach me at someone@example.com", created=datetime.datetime(2025, 3, 2, 12, tzinfo=UTC))
    speak(user, "too early", created=datetime.datetime(2025, 2, 1, 12, tzinfo=UTC))
    out = tmp_path / "out.jsonl"

    printed = command("--out", str(out), "--since", "2025-03-01", "--until", "2025-03-31")

    assert [r["content"] for r in records(out)] == ["reach me at [email]"]
    assert f"Wrote {out}: 1 records" in printed
    assert "Subjects: 1 considered, 1 included" in printed
    assert "excluded, restricted or objected: 0" in printed
    assert "email 1" in printed and "phone 0" in printed
    event = AuditEvent.objects.get(action="training.dataset_built")
    assert event.actor_id is None and event.details["sha256"] in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "not a date"),
        (["--until", "2025-13-01"], "not a date"),
        (["--since", "2025-03-02", "--until", "2025-03-01"], "must not be after"),
        (["--batch-size", "0"], "at least 1"),
    ],
)
def test_pm_ii_5_command_refuses_bad_arguments(tmp_path, args, message):
    with pytest.raises(CommandError, match=message):
        command("--out", str(tmp_path / "out.jsonl"), *args)
    assert list(tmp_path.iterdir()) == []


def test_pm_ii_5_command_refuses_an_unusable_destination(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(CommandError, match="does not exist"):
        command("--out", str(tmp_path / "missing" / "out.jsonl"))
    with pytest.raises(CommandError, match="is a directory"):
        command("--out", str(tmp_path))
    with pytest.raises(CommandError, match="does not exist"):
        command("--out", str(tmp_path / "a-file" / "out.jsonl"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
    assert not AuditEvent.objects.filter(action="training.dataset_built").exists()


def test_pm_ii_5_command_without_the_register_says_so_and_writes_nothing(tmp_path):
    speak(UserFactory(), "hello")
    with pytest.raises(CommandError, match="loadpolicy"):
        command("--out", str(tmp_path / "out.jsonl"))
    assert list(tmp_path.iterdir()) == []


def test_pm_ii_5_command_needs_an_output_file():
    with pytest.raises(CommandError, match="--out"):
        command()


@with_register
def test_pm_ii_5_task_runs_eagerly_and_writes_the_file(tmp_path):
    speak(UserFactory(), "from the task")
    out = tmp_path / "task.jsonl"

    result = tasks.training_dataset_build.delay(str(out)).get()

    assert [r["content"] for r in records(out)] == ["from the task"]
    assert result["messages"] == 1 and result["out_path"] == str(out)
    assert json.loads(json.dumps(result)) == result
    assert AuditEvent.objects.get(action="training.dataset_built").details["run_id"] == result["run_id"]
