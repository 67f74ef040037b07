"""Expired chat data for the purge benchmark and the kill test, written with COPY (PostgreSQL only).

The shape follows what a retention purge meets in production: subjects with conversations of ten messages
(text long enough to be realistic, short of TOAST), attachment rows on a tenth of the messages (no files on
disk), feedback on one message in twenty (its FK to the message is SET_NULL), and as many access-log rows
as messages, a tenth of them anonymous. One subject in a hundred is under a legal hold (subject scope);
one more subject has a hold that was lifted, which must not keep anything.

Nearly everything is long expired (200 to 400 days old). A few rows are fresh on purpose, so that "kept"
is exercised: one conversation in fifty has a recent message (the conversation stays, its old messages
go), and one access log in fifty is recent.

The same `rows` and `seed` give the same rows and ids every time (ids are written explicitly and the
sequences moved past them), so two databases built alike can be compared row for row.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import random
import tempfile
import uuid
from dataclasses import dataclass, field

MESSAGES_PER_CONVERSATION = 10
SUBJECT_EVERY = 100  # one subject per this many messages
HELD_EVERY = 100  # one subject in this many is held
ATTACHMENT_EVERY = 10
FEEDBACK_EVERY = 20
FRESH_EVERY = 50
BLOCK_BYTES = 1 << 20  # COPY data per write

USER_CONTENT_PERIOD = datetime.timedelta(days=30)
LOG_DATA_PERIOD = datetime.timedelta(days=180)

# Tables the comparison covers, in the order the purge must empty them (children first).
TABLES = ("chat_attachment", "chat_feedback", "chat_message", "chat_conversation", "chat_accesslog")

_PROMPTS = (
    "please summarise the attached report and list the three main risks for the project next quarter "
    "the meeting notes mention a delay in the supplier contract so draft a polite reminder email "
    "translate this paragraph into french keeping the technical terms as they are in english "
    "what is the difference between a data controller and a processor under the regulation "
    "write a short poem about autumn rain on the city streets for my daughter's school project "
    "explain how to set up a python virtual environment and install the requirements file "
    "suggest a recipe with lentils spinach and coconut milk that takes under thirty minutes",
)
_WORDS = " ".join(_PROMPTS).split()
_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36",
)
_DEVICES = (("Apple", "iPhone 15", "Safari"), ("Google", "Pixel 8", "Chrome"), ("", "", "Firefox"), ("Samsung", "S24", "Chrome"))
_PATHS = ("/chat/", "/chat/c/{}", "/api/messages/", "/settings/", "/api/feedback/", "/login/")
_KINDS = ("text", "image", "audio", "file")


@dataclass
class Dataset:
    """What `build` wrote: the sizes, and which subjects are held (ids)."""

    rows: int
    seed: int
    now: datetime.datetime
    subjects: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    lifted: list[int] = field(default_factory=list)
    written: dict[str, int] = field(default_factory=dict)

    @property
    def user_content_cutoff(self) -> datetime.datetime:
        return self.now - USER_CONTENT_PERIOD

    @property
    def log_data_cutoff(self) -> datetime.datetime:
        return self.now - LOG_DATA_PERIOD


def _ts(value: datetime.datetime) -> str:
    return value.isoformat()


def _text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(_WORDS, k=rng.randint(low, high)))


class _Copy:
    """Collects text-format COPY lines for one table in a temporary file, then sends them in one COPY.

    A connection runs one COPY at a time, and a conversation's messages, attachments and feedback are
    generated together; spooling keeps memory flat whatever the row count.
    """

    def __init__(self, cursor, table: str, columns: tuple[str, ...]):
        self._cursor, self._sql = cursor, f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        self._file = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 -- closed in close()
        self.count = 0

    def row(self, *values) -> None:
        self._file.write("\t".join(r"\N" if v is None else str(v) for v in values) + "\n")
        self.count += 1

    def close(self) -> int:
        self._file.seek(0)
        with self._cursor.copy(self._sql) as copy:
            while block := self._file.read(BLOCK_BYTES):
                copy.write(block)
        self._file.close()
        return self.count


def _next_id(cursor, table: str) -> int:
    cursor.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {table}")
    return cursor.fetchone()[0]


def _move_sequence(cursor, table: str) -> None:
    cursor.execute(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT MAX(id) FROM {table}), 1))",
    )


def build(cursor, *, rows: int, logs: int | None = None, seed: int = 1, now: datetime.datetime | None = None) -> Dataset:
    """Write the data set through `cursor` (a psycopg 3 cursor); the caller commits.

    `rows` expired messages (plus a fresh one in one conversation out of fifty) and `logs` access logs
    (default: as many as messages).
    """
    rng = random.Random(seed)
    now = now or datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    data = Dataset(rows=rows, seed=seed, now=now)
    day = datetime.timedelta(days=1)

    # Subjects: accounts with an unusable password.
    subject_count = max(10, rows // SUBJECT_EVERY)
    first_user = _next_id(cursor, "accounts_user")
    users = _Copy(
        cursor,
        "accounts_user",
        ("id", "password", "email", "name", "subject_ref", "country", "region", "is_staff", "is_active", "is_superuser",
         "date_joined", "last_activity_at"),
    )  # fmt: skip
    for index in range(subject_count):
        user_id = first_user + index
        joined = now - day * rng.randint(420, 900)
        users.row(
            user_id, "!", f"subject{user_id}.s{seed}@bench.example", f"Subject {user_id}",
            uuid.UUID(int=rng.getrandbits(128), version=4), "SG", "", "f", "t", "f", _ts(joined), _ts(now - day * 5),
        )  # fmt: skip
        data.subjects.append(user_id)
    data.written["accounts_user"] = users.close()
    held_count = max(1, subject_count // HELD_EVERY)
    picked = rng.sample(data.subjects, held_count + 1)
    data.held, data.lifted = sorted(picked[:held_count]), picked[held_count:]

    # Conversations, messages, attachments, feedback.
    conversation_id = first_conversation = _next_id(cursor, "chat_conversation")
    message_id = _next_id(cursor, "chat_message")
    attachment_id = _next_id(cursor, "chat_attachment")
    feedback_id = _next_id(cursor, "chat_feedback")
    conversations = _Copy(cursor, "chat_conversation", ("id", "user_id", "title", "created", "updated"))
    messages = _Copy(cursor, "chat_message", ("id", "conversation_id", "role", "content", "created"))
    attachments = _Copy(cursor, "chat_attachment", ("id", "message_id", "file", "kind", "size", "sha256", "created"))
    feedback = _Copy(
        cursor, "chat_feedback", ("id", "user_id", "message_id", "rating", "comment", "conversation_snapshot", "created")
    )
    written = 0
    while written < rows:
        owner = rng.choice(data.subjects)
        started = now - day * rng.uniform(200, 400)
        count = min(MESSAGES_PER_CONVERSATION, rows - written)
        fresh = (conversation_id - first_conversation) % FRESH_EVERY == FRESH_EVERY - 1
        stamps = [started + datetime.timedelta(minutes=2 * k) for k in range(count)]
        if fresh:
            stamps.append(now - day * rng.uniform(1, 10))
        conversations.row(conversation_id, owner, _text(rng, 2, 6), _ts(stamps[0]), _ts(stamps[-1]))
        snapshot: list[dict] = []
        for k, stamp in enumerate(stamps):
            role = "user" if k % 2 == 0 else "assistant"
            content = _text(rng, 8, 60)
            messages.row(message_id, conversation_id, role, content, _ts(stamp))
            snapshot.append({"role": role, "content": content[:80]})
            if rng.randrange(ATTACHMENT_EVERY) == 0:
                kind = rng.choice(_KINDS)
                attachments.row(
                    attachment_id, message_id, f"chat/attachments/{stamp:%Y/%m}/bench-{attachment_id}.{kind[:3]}", kind,
                    rng.randint(100, 5_000_000), f"{rng.getrandbits(256):064x}", _ts(stamp),
                )  # fmt: skip
                attachment_id += 1
            if role == "assistant" and rng.randrange(FEEDBACK_EVERY // 2) == 0:
                feedback.row(
                    feedback_id, owner, message_id, rng.choice(("up", "down")), _text(rng, 0, 12),
                    json.dumps(snapshot[-4:]).replace("\\", "\\\\"), _ts(stamp + datetime.timedelta(minutes=1)),
                )  # fmt: skip
                feedback_id += 1
            message_id += 1
        written += count
        conversation_id += 1
    for name, copy in (("chat_conversation", conversations), ("chat_message", messages)):
        data.written[name] = copy.close()
    data.written["chat_attachment"] = attachments.close()
    data.written["chat_feedback"] = feedback.close()

    # Access logs: a tenth anonymous, one in fifty recent.
    access_logs = _Copy(
        cursor,
        "chat_accesslog",
        ("id", "user_id", "ip_address", "device_brand", "device_model", "device_id", "browser", "user_agent", "path",
         "created"),
    )  # fmt: skip
    log_id = _next_id(cursor, "chat_accesslog")
    for index in range(rows if logs is None else logs):
        user = None if rng.randrange(10) == 0 else rng.choice(data.subjects)
        fresh = index % FRESH_EVERY == FRESH_EVERY - 1
        stamp = now - day * (rng.uniform(1, 30) if fresh else rng.uniform(200, 400))
        brand, model, browser = rng.choice(_DEVICES)
        access_logs.row(
            log_id + index, user, f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}", brand, model,
            hashlib.sha256(f"{seed}-{user}".encode()).hexdigest()[:16] if user else "", browser, rng.choice(_AGENTS),
            rng.choice(_PATHS).format(rng.randrange(1, 10**6)), _ts(stamp),
        )  # fmt: skip
    data.written["chat_accesslog"] = access_logs.close()

    # Holds: subject scope, active; one lifted.
    holds = _Copy(cursor, "retention_legalhold", ("subject_id", "reason", "reference", "placed_at", "lifted_at", "lift_reason"))
    for user_id in data.held:
        holds.row(user_id, "Benchmark: a pending claim.", f"BENCH-{user_id}", _ts(now - day), None, "")
    for user_id in data.lifted:
        holds.row(
            user_id, "Benchmark: a claim that was settled.", f"BENCH-{user_id}", _ts(now - 3 * day), _ts(now - day), "Settled."
        )
    data.written["retention_legalhold"] = holds.close()

    for table in ("accounts_user", *TABLES, "retention_legalhold"):
        _move_sequence(cursor, table)
    return data


_ACTIVE_HOLD = "SELECT 1 FROM retention_legalhold h WHERE h.subject_id = {} AND h.lifted_at IS NULL"
_HELD_ROWS = {
    "chat_conversation": f"SELECT count(*) FROM chat_conversation c WHERE EXISTS ({_ACTIVE_HOLD.format('c.user_id')})",
    "chat_message": "SELECT count(*) FROM chat_message m JOIN chat_conversation c ON c.id = m.conversation_id "
    f"WHERE EXISTS ({_ACTIVE_HOLD.format('c.user_id')})",
    "chat_attachment": "SELECT count(*) FROM chat_attachment a JOIN chat_message m ON m.id = a.message_id "
    f"JOIN chat_conversation c ON c.id = m.conversation_id WHERE EXISTS ({_ACTIVE_HOLD.format('c.user_id')})",
    # A held feedback row is changed if its message link is nulled: count the links.
    "chat_feedback": "SELECT count(*) FROM chat_feedback f WHERE f.message_id IS NOT NULL "
    f"AND EXISTS ({_ACTIVE_HOLD.format('f.user_id')})",
    "chat_accesslog": f"SELECT count(*) FROM chat_accesslog l WHERE EXISTS ({_ACTIVE_HOLD.format('l.user_id')})",
}


def held_rows(cursor) -> dict[str, int]:
    """Per table, the rows of subjects under an active hold (feedback: those still linked to their message)."""
    counts = {}
    for table, sql in _HELD_ROWS.items():
        cursor.execute(sql)
        counts[table] = cursor.fetchone()[0]
    return counts


def fingerprint(cursor) -> dict[str, tuple[int, str]]:
    """Per table, the row count and a digest of the remaining ids (feedback: ids with their message link)."""
    result = {}
    for table in TABLES:
        key = "id::text || ':' || COALESCE(message_id::text, '-')" if table == "chat_feedback" else "id::text"
        cursor.execute(f"SELECT count(*), md5(COALESCE(string_agg({key}, ',' ORDER BY id), '')) FROM {table}")
        count, digest = cursor.fetchone()
        result[table] = (count, digest)
    return result
