"""The de-identified model-improvement dataset (PM-II-5): the one path by which user content leaves for training.

Why this shape:
- One gate per subject. Each account is asked `is_processing_allowed(subject, "model-improvement")` (in its
  batch form, `is_processing_allowed_many`: the same rules) just before its content is read, so a restriction,
  an objection or a withdrawn consent (where the subject's jurisdiction makes the purpose consent-based) keeps
  it out of every run that starts after the change. Before that, local rules leave out accounts the purpose
  does not cover: staff (the register names account holders), closed or deactivated accounts (the person has
  left; what we keep of them is kept for other purposes), and people under the service's minimum age, whose
  content never trains a model; content an adult wrote before reaching that age stays out too. A legal hold
  does not exclude: it stops deletion, not use. Content without a subject (feedback that retention anonymised)
  cannot be checked, so it never leaves.
- De-identified, not anonymous. The subject becomes a keyed pseudonym scoped to the run (a fresh random run
  id), so two datasets cannot be joined on their tokens, while the DPO, who holds the key and finds the run
  id in the audit trail, can still find one person's rows in a delivered file (`training_subject_token`)
  when they object or ask for erasure later. Conversations and messages get run-scoped tokens too. Content
  is redacted of e-mail addresses, phone numbers and the account's own name, e-mail and reference; a third
  person named in free text is unknown to us and stays. Times are cut to the UTC day; the order of turns is
  kept as an index. What is never read cannot leak: no IP, device, log or usage data, no account field but
  those used for redaction, no attachments, no conversation titles, no feedback snapshots (a snapshot would
  bring back messages the subject has since deleted).
- Bounded memory and queries. Subjects are read in keyset batches by primary key; each batch's messages and
  feedback are streamed with `iterator(chunk_size=...)`. The number of queries grows with the number of
  subject batches and the decision checks, never with the number of messages.
- No half files. Records go to a temporary file beside `out_path` (same directory, so the final rename is
  atomic; created private to the server's user); only a complete, fsynced file is renamed into place, inside
  the transaction that writes the run's audit event. A killed or failed run leaves the previous file (if
  any) untouched and no new one. Call it outside a transaction (the command and the task do): the audit
  event must commit with the rename.
"""

from __future__ import annotations

import calendar
import contextlib
import datetime
import hashlib
import json
import os
import re
import tempfile
import unicodedata
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from chat.models import Feedback, Message
from consents.decisions import DecisionError, is_processing_allowed_many
from privacyops.audit import audit_record
from privacyops.privacy.registry import RegistryError
from privacyops.privacy.strategies import pseudonym

PURPOSE = "model-improvement"
AUDIT_ACTION = "training.dataset_built"
DEFAULT_BATCH_SIZE = 500
TOKEN_LENGTH = 32  # hex characters: 128 bits of the keyed hash

# Why a subject is left out, in the order the rules are applied (the first that applies is counted).
EXCLUSION_REASONS = (
    "staff_account",
    "account_closed",
    "account_inactive",
    "under_minimum_age",
    "restricted_or_objected",
    "not_allowed",
)
REDACTION_KINDS = ("subject_reference", "subject_email", "email", "subject_name", "phone")

EMAIL_MARKER = "[email]"
PHONE_MARKER = "[phone]"
NAME_MARKER = "[name]"
REFERENCE_MARKER = "[reference]"


class TrainingDatasetError(ValueError):
    """The dataset cannot be built as asked: a bad window, an unusable destination, no pseudonym key."""


# --- Redaction ------------------------------------------------------------------------------------

# An address, also in the common obfuscated form "jane [at] example [dot] com". Unicode letters are allowed in
# both parts; the top-level domain must be letters, which keeps "v1.2@3.4" style text out.
_AT = r"(?:@|\s?[\[(]\s?at\s?[\])]\s?)"
_DOT = r"(?:\.|\s?[\[(]\s?dot\s?[\])]\s?)"
_LOCAL = r"[\w.!#$%&'*+/=?^`{|}~-]"
# The local part starts only where a run of its characters starts: a long run without "@" is scanned once,
# not once per starting position.
_EMAIL = re.compile(rf"(?<!{_LOCAL}){_LOCAL}+{_AT}(?:[\w-]+{_DOT})+[^\W\d_]{{2,63}}(?![\w-])", re.IGNORECASE)

# A run of digits that could be a phone number: an optional "+", groups of digits (one of them may be in
# parentheses, "(555) 123-4567", "+44 (0)20 7946 0958") joined by one separator each (space, dot, dash,
# optionally spaced). Separators are mandatory between plain digit groups, so matching stays linear.
# `_is_phone` then decides from the digits what the run really is.
_SEP = r"(?: ?[.\-] ?|[ \u00a0])"
_GROUP = r"(?:\(\d{1,6}\)[ \u00a0]?\d{1,15}|\(\d{1,6}\)|\d{1,15})"
_PHONE_RUN = re.compile(rf"(?<![\w.+\-/])(?:\+[ \u00a0]?)?{_GROUP}(?:{_SEP}{_GROUP})*(?![\w/]|[.\-]\d)")
_DIGIT_GROUPS = re.compile(r"\d+")
_SEPARATORS = re.compile(r"[ \u00a0.\-()]")
_YEAR_RANGE = re.compile(r"^(19|20)\d\d ?[.\-] ?(19|20)\d\d$")
_IPV4 = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$")
_DECIMAL = re.compile(r"^\d+\.\d+$")

PHONE_MIN_DIGITS = 7  # a local number without its area code
PHONE_MAX_DIGITS = 15  # E.164
PLAIN_PHONE_MIN_DIGITS = 8  # an unformatted run of fewer digits is more likely a count, an amount or an id


def _is_date(groups: list[str]) -> bool:
    """Three groups that read as a calendar date (2025-04-25, 25.04.2025, 04/25/2025) or a compact 20250425."""
    if len(groups) == 1 and len(groups[0]) == 8:
        text = groups[0]
        groups = [text[:4], text[4:6], text[6:]]
    if len(groups) != 3:
        return False
    numbers = [int(g) for g in groups]
    if len(groups[0]) == 4:
        year, month, day = numbers
    elif len(groups[2]) == 4:
        year = numbers[2]
        month, day = numbers[1], numbers[0]
        if month > 12:  # US order: month first
            month, day = day, month
    else:
        return False
    return 1900 <= year <= 2099 and 1 <= month <= 12 and 1 <= day <= 31


def _is_phone(run: str) -> bool:
    groups = _DIGIT_GROUPS.findall(run)
    digits = sum(len(g) for g in groups)
    if not PHONE_MIN_DIGITS <= digits <= PHONE_MAX_DIGITS:
        return False
    international = run.startswith("+")
    formatted = bool(_SEPARATORS.search(run))
    if not international and not formatted:
        return digits >= PLAIN_PHONE_MIN_DIGITS and not _is_date(groups)
    if _is_date(groups) or _YEAR_RANGE.match(run) or _IPV4.match(run) or _DECIMAL.match(run):
        return False
    # "1 2 3 4 5 6 7" is a list; real formats have at most one one-digit group (a country or trunk code).
    return sum(1 for g in groups if len(g) == 1) <= 1


# Name parts that are also ordinary English words: redacted only when written with a capital, where they are
# most likely the name ("Will said", not "I will").
_COMMON_WORD_NAMES = """
    april august autumn baker bell bill black brown bush cash chance chase cook crystal dale dawn day
    dean faith fisher ford fox frank gay gold grace green guy hall hill holly hope hunter iris ivy jack
    jay joy june king lane lee long love low major mark marsh may mercy miles mills miller moon new page
    park pearl penny price rich river rose ruby sage sky summer sun stone taylor wall ward west white
    will win winter wood woods young
"""
COMMON_WORD_NAMES = frozenset(_COMMON_WORD_NAMES.split())
# Particles that join names ("van der Berg", "bin Ahmad"): never redacted on their own.
_NAME_PARTICLES = "al bin binti da das de del della der di dos du el la le van von zu"
NAME_PARTICLES = frozenset(_NAME_PARTICLES.split())
NAME_PART_MIN_LENGTH = 3
CJK_NAME_PART_MIN_LENGTH = 2  # one CJK character is a syllable: two make a given name or a compound surname
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def _letter_pattern(char: str) -> str:
    """A character, or its unaccented form too ("José" also matches "Jose")."""
    base = "".join(c for c in unicodedata.normalize("NFD", char) if not unicodedata.combining(c))
    if base and base != char:
        return f"[{re.escape(char)}{re.escape(base)}]"
    return re.escape(char)


def _word_body(word: str) -> str:
    return "".join(_letter_pattern(c) for c in word)


def _word_pattern(word: str) -> str:
    body = _word_body(word)
    if _CJK.search(word):
        return body  # CJK text has no spaces between words: no boundaries to ask for
    return rf"(?<!\w){body}(?!\w)"


def _name_parts(name: str) -> tuple[list[str], list[str]]:
    """The parts of a name worth redacting alone: (case-insensitive ones, capitalised-only ones)."""
    anywhere, capitalised = [], []
    words = re.split(r"[\s\-]+", name)
    candidates = [*words, *(w for w in name.split() if "-" in w)]
    for raw in candidates:
        part = raw.strip(".,;:()\"'")
        low = part.casefold()
        minimum = CJK_NAME_PART_MIN_LENGTH if _CJK.search(part) else NAME_PART_MIN_LENGTH
        if len(part) < minimum or low in NAME_PARTICLES:
            continue
        (capitalised if low in COMMON_WORD_NAMES else anywhere).append(part)
    return anywhere, capitalised


def _alternation(words: list[str]) -> str:
    unique = sorted(set(words), key=lambda w: (-len(w), w))
    return "|".join(_word_pattern(w) for w in unique)


class Redactor:
    """Removes contact details, and one account's own name and e-mail, from that account's text (PM-II-5).

    Order matters: the account's `subject_ref` first (it is printed on the subject's consent receipts, which
    they may paste into a chat), then its own address (counted as `subject_email`), then any address, then
    the account's name (the whole name before its parts), then phone numbers; the markers hold no digits,
    so later steps never see earlier ones' output as a number.
    """

    def __init__(self, *, name: str = "", email: str = "", subject_ref=None, counts: Counter | None = None):
        self.counts = counts if counts is not None else Counter()
        self._reference = None
        if subject_ref:
            ref = uuid.UUID(str(subject_ref))
            self._reference = re.compile(f"{re.escape(str(ref))}|{ref.hex}", re.IGNORECASE)
        self._subject_email = re.compile(re.escape(email), re.IGNORECASE) if email else None
        local = email.partition("@")[0] if email else ""
        self._local_part = (
            re.compile(_word_pattern(local), re.IGNORECASE)
            if len(local) >= NAME_PART_MIN_LENGTH + 1 and local.casefold() not in COMMON_WORD_NAMES
            else None
        )
        name = " ".join(name.split())
        full = []
        if name:
            full_pattern = r"\s+".join(_word_body(w) for w in name.split(" "))
            full.append(full_pattern if _CJK.search(name) else rf"(?<!\w){full_pattern}(?!\w)")
        anywhere, capitalised = _name_parts(name)
        parts = _alternation(anywhere)
        self._name_ci = re.compile("|".join([*full, parts] if parts else full), re.IGNORECASE) if full else None
        cap_forms = [w[:1].upper() + w[1:].casefold() for w in capitalised] + [w.upper() for w in capitalised]
        self._name_cap = re.compile(_alternation(cap_forms)) if cap_forms else None

    def _sub(self, pattern, marker: str, kind: str, text: str) -> str:
        if pattern is None:
            return text
        text, n = pattern.subn(marker, text)
        if n:
            self.counts[kind] += n
        return text

    def _phone(self, match: re.Match) -> str:
        if _is_phone(match.group(0)):
            self.counts["phone"] += 1
            return PHONE_MARKER
        return match.group(0)

    def redact(self, text: str) -> str:
        if not text:
            return text
        text = self._sub(self._reference, REFERENCE_MARKER, "subject_reference", text)
        text = self._sub(self._subject_email, EMAIL_MARKER, "subject_email", text)
        text = self._sub(_EMAIL, EMAIL_MARKER, "email", text)
        text = self._sub(self._local_part, EMAIL_MARKER, "subject_email", text)
        text = self._sub(self._name_ci, NAME_MARKER, "subject_name", text)
        text = self._sub(self._name_cap, NAME_MARKER, "subject_name", text)
        return _PHONE_RUN.sub(self._phone, text)


# --- The run --------------------------------------------------------------------------------------


@dataclass
class TrainingRun:
    """What one build wrote, in counts only (the same counts go into its audit event)."""

    run_id: uuid.UUID
    out_path: str
    since: datetime.datetime | None = None
    until: datetime.datetime | None = None
    started_at: datetime.datetime | None = None
    finished_at: datetime.datetime | None = None
    subjects_considered: int = 0
    subjects_included: int = 0
    subjects_excluded: Counter = field(default_factory=Counter)
    messages: int = 0
    feedback: int = 0
    feedback_without_subject: int = 0
    content_before_minimum_age: int = 0
    redactions: Counter = field(default_factory=Counter)
    records: int = 0
    bytes: int = 0
    sha256: str = ""

    def counts(self) -> dict:
        return {
            "run_id": str(self.run_id),
            "purpose": PURPOSE,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "subjects_considered": self.subjects_considered,
            "subjects_included": self.subjects_included,
            "subjects_excluded": {reason: self.subjects_excluded.get(reason, 0) for reason in EXCLUSION_REASONS},
            "messages": self.messages,
            "feedback": self.feedback,
            "feedback_without_subject": self.feedback_without_subject,
            "content_before_minimum_age": self.content_before_minimum_age,
            "redactions": {kind: self.redactions.get(kind, 0) for kind in REDACTION_KINDS},
            "records": self.records,
            "bytes": self.bytes,
            "sha256": self.sha256,
        }

    def as_dict(self) -> dict:
        return {
            **self.counts(),
            "out_path": self.out_path,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


def _scope(run_id, kind: str) -> str:
    # The scope kept the name it had when this lived in consents: tokens of files delivered before the move
    # must still be found (`training_subject_token`).
    return f"consents.training:{run_id}:{kind}"


def training_subject_token(*, subject, run_id) -> str:
    """The token a subject carries in the dataset of run `run_id` (found in its audit event).

    Lets the DPO find one person's records in a delivered file, e.g. after a later objection or erasure."""
    subject_ref = getattr(subject, "subject_ref", subject)
    return pseudonym(str(subject_ref), scope=_scope(run_id, "subject"))[:TOKEN_LENGTH]


def _token(run_id, kind: str, value) -> str:
    return pseudonym(str(value), scope=_scope(run_id, kind))[:TOKEN_LENGTH]


def _as_utc(value, *, end: bool) -> datetime.datetime | None:
    """A date means the whole day (from its start, or through its end); a datetime is taken as it is."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value if timezone.is_aware(value) else value.replace(tzinfo=datetime.UTC)
    if isinstance(value, datetime.date):
        day = value + datetime.timedelta(days=1) if end else value
        return datetime.datetime.combine(day, datetime.time.min, tzinfo=datetime.UTC)
    raise TrainingDatasetError(f"Expected a date or a datetime, not {value!r}.")


def _destination(out_path) -> Path:
    out = Path(out_path)
    if out.is_dir():
        raise TrainingDatasetError(f"{out} is a directory; give a file name.")
    if not out.parent.is_dir():
        raise TrainingDatasetError(f"The directory {out.parent} does not exist.")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise TrainingDatasetError(f"The directory {out.parent} is not writable.")
    return out


def _adult_from(date_of_birth: datetime.date | None) -> datetime.date | None:
    """The day a person reaches the service's minimum age (29 February counts from 1 March)."""
    if date_of_birth is None:
        return None
    year = date_of_birth.year + settings.SIGNUP_MINIMUM_AGE
    if date_of_birth.month == 2 and date_of_birth.day == 29 and not calendar.isleap(year):
        return datetime.date(year, 3, 1)
    return date_of_birth.replace(year=year)


def _local_exclusion(user, *, today: datetime.date) -> str | None:
    """Why the purpose does not cover an account at all, before anyone's choices are read."""
    if user.is_staff:
        return "staff_account"
    if user.closed_at is not None:
        return "account_closed"
    if not user.is_active:
        return "account_inactive"
    adult = _adult_from(user.date_of_birth)
    if adult is not None and adult > today:
        return "under_minimum_age"
    return None


def _exclusions(users: list, *, today: datetime.date) -> dict[int, str | None]:
    """pk -> why the account is out of the dataset, or None when it is in (PM-II-5, PM-IX-5).

    The accounts that pass the local rules are asked together through `is_processing_allowed_many`, the
    batch form of `is_processing_allowed` (the same rules; one read of the subjects and one cache round trip
    per batch). A question the register cannot answer (no model-improvement purpose) stops the run.
    """
    reasons = {user.pk: _local_exclusion(user, today=today) for user in users}
    asked = [user for user in users if reasons[user.pk] is None]
    answers = is_processing_allowed_many([(user, PURPOSE) for user in asked]) if asked else []
    for user, decision in zip(asked, answers, strict=True):
        if isinstance(decision, DecisionError):
            raise decision
        if not decision:
            reasons[user.pk] = "restricted_or_objected" if decision.restricted else "not_allowed"
    return reasons


class _Writer:
    """JSON Lines into an open binary file, hashing exactly the bytes written."""

    def __init__(self, fh):
        self.fh = fh
        self.digest = hashlib.sha256()
        self.records = 0
        self.bytes = 0

    def write(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        self.fh.write(line)
        self.digest.update(line)
        self.records += 1
        self.bytes += len(line)


def _window(field_name: str, since, until) -> Q:
    q = Q()
    if since is not None:
        q &= Q(**{f"{field_name}__gte": since})
    if until is not None:
        q &= Q(**{f"{field_name}__lt": until})
    return q


def _subject_batches(*, since, until, batch_size: int):
    """Accounts with messages or feedback in the window, by primary key, `batch_size` at a time."""
    User = get_user_model()
    has_messages = Message.objects.filter(_window("created", since, until), conversation__user=OuterRef("pk"))
    has_feedback = Feedback.objects.filter(_window("created", since, until), user=OuterRef("pk"), anonymised_at__isnull=True)
    candidates = User.objects.filter(Exists(has_messages) | Exists(has_feedback)).order_by("pk")
    last = 0
    while True:
        batch = list(candidates.filter(pk__gt=last)[:batch_size])
        if not batch:
            return
        yield batch
        last = batch[-1].pk


def _day(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).date().isoformat()


def _write_subject_batch(subjects: dict, *, run: TrainingRun, writer: _Writer, since, until, batch_size: int) -> None:
    """Stream the messages, then the feedback, of one batch of allowed subjects into the file."""
    run_id = run.run_id
    messages = (
        Message.objects.filter(_window("created", since, until), conversation__user_id__in=list(subjects))
        .order_by("conversation_id", "created", "id")
        .values_list("id", "conversation_id", "conversation__user_id", "role", "content", "created")
    )
    conversation, turn = None, 0
    for message_id, conversation_id, user_id, role, content, created in messages.iterator(chunk_size=batch_size):
        token, redactor, adult = subjects[user_id]
        if conversation_id != conversation:
            conversation, turn = conversation_id, 0
        if adult is not None and created.astimezone(datetime.UTC).date() < adult:
            run.content_before_minimum_age += 1
            continue
        writer.write(
            {
                "type": "message",
                "subject": token,
                "conversation": _token(run_id, "conversation", conversation_id),
                "message": _token(run_id, "message", message_id),
                "turn": turn,
                "role": role,
                "content": redactor.redact(content),
                "day": _day(created),
            }
        )
        turn += 1
        run.messages += 1

    feedback = (
        Feedback.objects.filter(_window("created", since, until), user_id__in=list(subjects), anonymised_at__isnull=True)
        .exclude(rating="", comment="")
        .order_by("user_id", "created", "id")
        .values_list("user_id", "message_id", "message__conversation_id", "rating", "comment", "created")
    )
    for user_id, message_id, conversation_id, rating, comment, created in feedback.iterator(chunk_size=batch_size):
        token, redactor, adult = subjects[user_id]
        if adult is not None and created.astimezone(datetime.UTC).date() < adult:
            run.content_before_minimum_age += 1
            continue
        writer.write(
            {
                "type": "feedback",
                "subject": token,
                "conversation": _token(run_id, "conversation", conversation_id) if conversation_id else None,
                "message": _token(run_id, "message", message_id) if message_id else None,
                "rating": rating or None,
                "comment": redactor.redact(comment),
                "day": _day(created),
            }
        )
        run.feedback += 1


def _fsync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def training_dataset_build(*, out_path, actor=None, since=None, until=None, batch_size: int = DEFAULT_BATCH_SIZE) -> TrainingRun:
    """Write the de-identified model-improvement dataset to `out_path` as JSON Lines (PM-II-5).

    Only accounts for which `is_processing_allowed(subject, "model-improvement")` allows it are read (see the
    module docstring for who else is left out). `since` and `until` are dates (whole UTC days, both included)
    or datetimes (`until` excluded) on the content's creation time. The run is audited as
    `training.dataset_built` with its counts; `actor` is the staff member who asked, None for the system.
    Raises TrainingDatasetError for a bad window or destination; nothing is written then.
    """
    if batch_size < 1:
        raise TrainingDatasetError("The batch size must be at least 1.")
    since_at, until_at = _as_utc(since, end=False), _as_utc(until, end=True)
    if since_at and until_at and since_at >= until_at:
        raise TrainingDatasetError("The window is empty: `since` must come before `until`.")
    out = _destination(out_path)
    run = TrainingRun(run_id=uuid.uuid4(), out_path=str(out), since=since_at, until=until_at, started_at=timezone.now())
    try:
        _token(run.run_id, "subject", "")  # fail before touching the disk when there is no pseudonym key
    except RegistryError as exc:
        raise TrainingDatasetError(str(exc)) from exc
    today = timezone.now().astimezone(datetime.UTC).date()

    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial")
    tmp = Path(tmp_name)
    renamed = False
    try:
        with os.fdopen(fd, "wb") as fh:
            writer = _Writer(fh)
            for batch in _subject_batches(since=since_at, until=until_at, batch_size=batch_size):
                allowed = {}
                reasons = _exclusions(batch, today=today)
                for user in batch:
                    run.subjects_considered += 1
                    reason = reasons[user.pk]
                    if reason:
                        run.subjects_excluded[reason] += 1
                        continue
                    run.subjects_included += 1
                    redactor = Redactor(name=user.name, email=user.email, subject_ref=user.subject_ref, counts=run.redactions)
                    allowed[user.pk] = (
                        training_subject_token(subject=user, run_id=run.run_id),
                        redactor,
                        _adult_from(user.date_of_birth),
                    )
                if allowed:
                    _write_subject_batch(allowed, run=run, writer=writer, since=since_at, until=until_at, batch_size=batch_size)
            run.feedback_without_subject = Feedback.objects.filter(
                Q(user__isnull=True) | Q(anonymised_at__isnull=False), _window("created", since_at, until_at)
            ).count()
            fh.flush()
            os.fsync(fh.fileno())
        run.records, run.bytes, run.sha256 = writer.records, writer.bytes, writer.digest.hexdigest()
        run.finished_at = timezone.now()
        with transaction.atomic():
            audit_record(
                actor=actor,
                action=AUDIT_ACTION,
                target=("consents.trainingdataset", str(run.run_id)),  # as before the move: one target type in the trail
                details={**run.counts(), "file_name": out.name},
            )
            os.replace(tmp, out)
            renamed = True
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if renamed:  # the audit event did not commit: the file must not stay without it
            with contextlib.suppress(FileNotFoundError):
                out.unlink()
        raise
    _fsync_directory(out.parent)
    return run
