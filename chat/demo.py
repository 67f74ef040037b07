"""Demo and benchmark data for the chat service: fake account holders and everything they leave behind.

Design and invariants:
- Deterministic: every subject draws from its own random generator seeded by (seed, subject number), and
  every timestamp counts back from a fixed `end` day, so the same seed and end give the same rows on any
  database, empty or not, and subject k's rows do not depend on how many subjects are generated. Rows
  reference each other by position, never by database id; ids are assigned only when a chunk is written.
- Bounded memory: subjects are generated one at a time into a chunk of at most CHUNK_ROWS rows (one subject
  is never split), the chunk is written, then dropped. Nothing holds all rows.
- Fast on PostgreSQL: each chunk reserves its ids from the tables' sequences (one `nextval` per row in a
  single query, so a concurrent insert never collides) and streams rows with COPY. Elsewhere the portable
  path uses `bulk_create` in batches, which returns the new ids.
- Fake people only: emails are on example.com/example.net (reserved, RFC 2606) and carry the seed, so two
  seeds never collide; passwords are unusable. Seeding the same seed twice is refused (see `DemoAlreadySeeded`).
- Attachment files are small real files (a plain note, a 1x1 PNG, a short silent WAV, a CSV) written to
  default storage under a name derived from the seed; `files=False` writes the rows only (their file names
  then point at nothing), which big benchmark runs use.
"""

from __future__ import annotations

import abc
import datetime as dt
import hashlib
import json
import random
import struct
import unicodedata
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction

from accounts.models import User

from .models import AccessLog, Attachment, Conversation, Feedback, Message, SupportMessage, UsageEvent

CHUNK_ROWS = 20_000  # rows buffered before a chunk is written; one subject is never split
MAX_PER_SUBJECT = 100_000  # bounds one subject's rows, and so the memory of one chunk
EMAIL_DOMAIN = "example.com"  # RFC 2606: reserved, never a real person's mailbox
SENDER_DOMAIN = "example.net"  # support senders without an account


class DemoAlreadySeeded(Exception):
    """The demo accounts of this seed exist already: a second run would only collide on their emails."""


@dataclass(frozen=True)
class DemoSpec:
    subjects: int
    messages_per_subject: int
    logs_per_subject: int
    events_per_subject: int | None = None  # None: as many usage events as access-log rows
    days: int = 90
    seed: int = 1
    end: dt.date | None = None  # the last day of activity; None: today (UTC)
    attachments_ratio: float = 0.05  # share of user messages with an attachment
    feedback_ratio: float = 0.03  # share of assistant answers rated
    support_ratio: float = 0.05  # share of subjects who wrote to support
    closed_ratio: float = 0.04  # share of accounts closed
    files: bool = True

    def __post_init__(self):
        errors = []
        for name in ("subjects", "messages_per_subject", "logs_per_subject", "days", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                errors.append(f"{name} must be a whole number of 0 or more (got {value!r})")
        if self.events_per_subject is not None and (not isinstance(self.events_per_subject, int) or self.events_per_subject < 0):
            errors.append(f"events_per_subject must be a whole number of 0 or more (got {self.events_per_subject!r})")
        if isinstance(self.subjects, int) and self.subjects < 1:
            errors.append("subjects must be at least 1")
        if isinstance(self.days, int) and self.days < 1:
            errors.append("days must be at least 1")
        for name in ("messages_per_subject", "logs_per_subject", "events_per_subject"):
            value = getattr(self, name)
            if isinstance(value, int) and value > MAX_PER_SUBJECT:
                errors.append(f"{name} must be at most {MAX_PER_SUBJECT:,}")
        for name in ("attachments_ratio", "feedback_ratio", "support_ratio", "closed_ratio"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                errors.append(f"{name} must be between 0 and 1 (got {value!r})")
        if errors:
            raise ValueError("; ".join(errors))

    @property
    def events(self) -> int:
        return self.logs_per_subject if self.events_per_subject is None else self.events_per_subject

    @property
    def end_day(self) -> dt.date:
        return self.end or dt.datetime.now(dt.UTC).date()


# --- What the people are like ------------------------------------------------------------------------

# (country, region or "", time zone, weight)
PLACES = [
    ("US", "US-CA", "America/Los_Angeles", 8),
    ("US", "US-NY", "America/New_York", 6),
    ("US", "US-TX", "America/Chicago", 5),
    ("US", "US-WA", "America/Los_Angeles", 2),
    ("SG", "", "Asia/Singapore", 8),
    ("GB", "GB-ENG", "Europe/London", 5),
    ("DE", "DE-BY", "Europe/Berlin", 3),
    ("DE", "DE-BE", "Europe/Berlin", 2),
    ("FR", "", "Europe/Paris", 3),
    ("NL", "", "Europe/Amsterdam", 2),
    ("ES", "", "Europe/Madrid", 2),
    ("IN", "IN-KA", "Asia/Kolkata", 5),
    ("IN", "IN-MH", "Asia/Kolkata", 3),
    ("JP", "", "Asia/Tokyo", 3),
    ("KR", "", "Asia/Seoul", 2),
    ("MY", "", "Asia/Kuala_Lumpur", 3),
    ("ID", "", "Asia/Jakarta", 3),
    ("PH", "", "Asia/Manila", 2),
    ("VN", "", "Asia/Ho_Chi_Minh", 2),
    ("TH", "", "Asia/Bangkok", 2),
    ("AU", "AU-NSW", "Australia/Sydney", 3),
    ("CA", "CA-ON", "America/Toronto", 3),
    ("BR", "BR-SP", "America/Sao_Paulo", 3),
    ("MX", "", "America/Mexico_City", 2),
    ("NG", "", "Africa/Lagos", 2),
    ("KE", "", "Africa/Nairobi", 1),
]
_PLACE_WEIGHTS = [p[3] for p in PLACES]


def _words(text: str) -> list[str]:
    return text.split("|")


NAMES = {
    "west": (
        _words(
            "Olivia|Emma|Ava|Sophia|Mia|Amelia|Harper|Evelyn|Liam|Noah|Oliver|Elijah|James|William|Lucas|Henry|"
            "Charlotte|Grace|Chloe|Ethan|Jack|Daniel|Matthew|Hannah|Zoe|Nora|Leo|Samuel|Isla|Ruby"
        ),
        _words(
            "Smith|Johnson|Williams|Brown|Jones|Garcia|Miller|Davis|Wilson|Anderson|Taylor|Thomas|Moore|Martin|"
            "Jackson|White|Harris|Clark|Lewis|Walker|Hall|Young|King|Wright|Scott|Green|Baker|Adams|Nelson|O'Brien"
        ),
    ),
    "europe": (
        _words(
            "Lena|Marie|Sophie|Emilia|Hanna|Lukas|Jonas|Felix|Paul|Elias|Camille|Louise|Léa|Chloé|Hugo|Louis|"
            "Lucía|Sofía|Martina|Mateo|Daan|Sem|Julia|Sara|Noé|Inès|Élodie|Jörg|Zoë|Anne-Sophie"
        ),
        _words(
            "Müller|Schmidt|Schneider|Fischer|Weber|Meyer|Wagner|Becker|Martin|Bernard|Dubois|Thomas|Robert|"
            "Richard|Petit|García|Fernández|López|Martínez|de Jong|Jansen|de Vries|van Dijk|Bakker|Visser"
        ),
    ),
    "asia": (
        _words(
            "Wei|Jia Hui|Min|Jun|Xin Yi|Ling|Mei|Hao|Ravi|Priya|Ananya|Arjun|Aditya|Divya|Kavya|Rohan|Yuki|Haruto|"
            "Sakura|Ren|Aoi|Ji-woo|Min-jun|Seo-yeon|Siti|Nur|Ahmad|Budi|Putri|Minh|Linh|Anh|Somchai|Malee"
        ),
        _words(
            "Tan|Lim|Lee|Ng|Ong|Wong|Goh|Chua|Chan|Koh|Sharma|Patel|Iyer|Reddy|Nair|Gupta|Rao|Sato|Suzuki|"
            "Takahashi|Tanaka|Kim|Park|Choi|Abdullah|Rahman|Santoso|Wijaya|Nguyen|Tran|Pham|Srisai|Wongsa"
        ),
    ),
    "latam": (
        _words(
            "Sofía|Valentina|Isabella|Camila|Mariana|Santiago|Mateo|Sebastián|Leonardo|Gabriel|Miguel|Ana|Beatriz|"
            "Lucas|Rafael|Gustavo|Larissa|Fernanda|Diego|Alejandro"
        ),
        _words(
            "Silva|Santos|Oliveira|Souza|Rodrigues|Ferreira|Alves|Pereira|Lima|Gomes|Hernández|González|López|"
            "Martínez|Rodríguez|Pérez|Sánchez|Ramírez|Torres|Flores"
        ),
    ),
    "africa": (
        _words(
            "Chinedu|Ngozi|Emeka|Amara|Oluwaseun|Adaeze|Tunde|Funmi|Wanjiru|Kamau|Achieng|Otieno|Njeri|Baraka|"
            "Zawadi|Imani|Kofi|Ama"
        ),
        _words("Okafor|Adeyemi|Okonkwo|Balogun|Eze|Nwosu|Mwangi|Otieno|Kariuki|Wanjiku|Ochieng|Kimani|Mensah|Boateng"),
    ),
}
_NAME_POOL = {
    **dict.fromkeys(["US", "GB", "AU", "CA"], "west"),
    **dict.fromkeys(["DE", "FR", "NL", "ES"], "europe"),
    **dict.fromkeys(["SG", "IN", "JP", "KR", "MY", "ID", "PH", "VN", "TH"], "asia"),
    **dict.fromkeys(["BR", "MX"], "latam"),
    **dict.fromkeys(["NG", "KE"], "africa"),
}

# (device type, brand, model, browser, user agent)
DEVICES = [
    (
        "desktop",
        "",
        "",
        "Chrome 124",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    ),
    (
        "desktop",
        "Apple",
        "MacBook Pro",
        "Safari 17.4",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    ),
    ("desktop", "", "", "Firefox 125", "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"),
    (
        "desktop",
        "",
        "",
        "Edge 124",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 "
        "Edg/124.0.2478.67",
    ),
    (
        "mobile",
        "Apple",
        "iPhone 15",
        "Mobile Safari 17.4",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
        "Mobile/15E148 Safari/604.1",
    ),
    (
        "mobile",
        "Samsung",
        "Galaxy S24",
        "Samsung Internet 24",
        "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 "
        "Mobile Safari/537.36",
    ),
    (
        "mobile",
        "Google",
        "Pixel 8",
        "Chrome Mobile 124",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    ),
    (
        "mobile",
        "Xiaomi",
        "Redmi Note 13",
        "Chrome Mobile 123",
        "Mozilla/5.0 (Linux; Android 13; 23129RAA4G) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 "
        "Mobile Safari/537.36",
    ),
    (
        "tablet",
        "Apple",
        "iPad Air",
        "Mobile Safari 17.4",
        "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 "
        "Safari/604.1",
    ),
    ("mobile", "Apple", "iPhone 14", "ChatApp iOS 3.2", "ChatApp/3.2.1 (iPhone; iOS 17.4.1; Scale/3.00)"),
    ("mobile", "Samsung", "Galaxy A54", "ChatApp Android 3.2", "ChatApp/3.2.0 (Android 14; SM-A546B)"),
]
_DEVICE_WEIGHTS = [5, 3, 1, 2, 5, 3, 2, 2, 1, 3, 2]

PATHS = [
    ("/", 3),
    ("/chat", 8),
    ("/api/chat/completions", 12),
    ("/api/conversations", 6),
    ("/api/conversations/history", 3),
    ("/api/attachments", 1),
    ("/api/feedback", 1),
    ("/settings/account", 1),
    ("/settings/data-controls", 1),
    ("/help", 1),
    ("/logout", 1),
]
_PATHS = [p for p, _ in PATHS]
_PATH_WEIGHTS = [w for _, w in PATHS]

EVENTS = [
    ("session_started", "app"),
    ("message_sent", "chat"),
    ("message_sent", "chat"),
    ("message_sent", "chat"),
    ("conversation_created", "chat"),
    ("conversation_renamed", "chat"),
    ("voice_input_used", "voice"),
    ("attachment_uploaded", "file-upload"),
    ("search_used", "search"),
    ("feedback_given", "feedback"),
    ("settings_changed", "settings"),
    ("answer_copied", "chat"),
    ("answer_regenerated", "chat"),
]
CONNECTIONS = ["wifi", "wifi", "wifi", "cellular", "cellular", "ethernet", "unknown"]

# (title, openers, follow-ups, answer sentences)
TOPICS = [
    (
        "Weekend trip to Kyoto",
        ["Can you plan a two-day trip to Kyoto for me?", "What should I see in Kyoto in a weekend?"],
        ["Which temples are less crowded early in the morning?", "How do I get from Kyoto station to Arashiyama?"],
        [
            "Start early at Fushimi Inari before the tour groups arrive.",
            "The JR Sagano line takes about fifteen minutes to Saga-Arashiyama.",
            "A one-day bus pass covers most sights in the city centre.",
            "Book the Gion evening walk ahead if you travel in spring.",
        ],
    ),
    (
        "Python list comprehension",
        ["How do I flatten a list of lists in Python?", "Why is my list comprehension slower than a loop?"],
        ["Can you show it with a generator instead?", "What about nested lists of any depth?"],
        [
            "You can write [x for row in rows for x in row]; the loops read left to right.",
            "itertools.chain.from_iterable(rows) avoids building intermediate lists.",
            "For arbitrary depth a small recursive generator is the clearest option.",
            "Measure with timeit before optimising; the difference is often small.",
        ],
    ),
    (
        "Cover letter for a data analyst role",
        ["Help me write a cover letter for a junior data analyst job.", "Can you make my cover letter sound less generic?"],
        ["Make it shorter, around 200 words.", "Can you mention my SQL and Tableau experience?"],
        [
            "Open with the team's problem you want to help solve, not with your CV.",
            "Pick one project and give a concrete number, such as hours saved per week.",
            "Close by asking for a conversation rather than repeating your skills.",
            "Keep each paragraph to three sentences so it reads quickly.",
        ],
    ),
    (
        "Vegetarian dinner ideas",
        ["Give me five quick vegetarian dinners for the week.", "What can I cook with chickpeas, spinach and rice?"],
        ["Which of these freeze well?", "Can you make a shopping list?"],
        [
            "A chickpea and spinach curry takes about twenty-five minutes.",
            "Fried rice with eggs and frozen peas is a good way to use leftovers.",
            "Soups and curries freeze well for up to three months.",
            "Roast the vegetables on one tray to save washing up.",
        ],
    ),
    (
        "Explaining compound interest",
        ["Explain compound interest to a 12-year-old.", "How long does it take money to double at 5%?"],
        ["What is the rule of 72?", "Is monthly compounding much better than yearly?"],
        [
            "Interest is added to your savings, and next year you earn interest on that too.",
            "At 5% a year money roughly doubles in about 14 years.",
            "The rule of 72 divides 72 by the rate to estimate the doubling time.",
            "Monthly compounding adds a little more, but the rate matters far more.",
        ],
    ),
    (
        "Marathon training plan",
        ["I want to run my first marathon in 16 weeks. Where do I start?", "How many kilometres a week should I run?"],
        ["What should I eat before long runs?", "How do I avoid shin splints?"],
        [
            "Build your weekly distance by no more than ten percent a week.",
            "One long slow run a week matters more than speed work at first.",
            "Eat a carbohydrate-rich meal two to three hours before a long run.",
            "Rest days are part of the plan; most injuries come from doing too much too soon.",
        ],
    ),
    (
        "SQL query for monthly sales",
        ["Write a SQL query that sums sales per month.", "How do I group by month in PostgreSQL?"],
        ["How do I include months with no sales?", "Can you add a running total?"],
        [
            "Use date_trunc('month', sold_at) in both the select list and the GROUP BY.",
            "generate_series over the months and a LEFT JOIN fills the empty months.",
            "A window function sum(total) OVER (ORDER BY month) gives the running total.",
            "An index on sold_at helps when you filter on a date range.",
        ],
    ),
    (
        "Email to my landlord",
        ["Help me write a polite email to my landlord about a broken heater.", "How do I ask for a repair in writing?"],
        ["Make it a bit firmer, it has been two weeks.", "Should I mention the tenancy agreement?"],
        [
            "State the problem, when it started and what you have already tried.",
            "Ask for a repair date within a reasonable time, such as seven days.",
            "Keep a copy of the email and any photos of the problem.",
            "A calm, factual tone usually gets the fastest response.",
        ],
    ),
    (
        "Learning Spanish",
        ["What is the best way to learn Spanish in six months?", "Can you quiz me on Spanish verbs?"],
        ["What's the difference between ser and estar?", "Give me ten common phrases for travel."],
        [
            "Fifteen minutes every day beats two hours once a week.",
            "Ser describes what something is; estar describes a state or a location.",
            "Speaking with a partner early helps more than perfect grammar.",
            "Try to learn phrases, not single words, so you can use them right away.",
        ],
    ),
    (
        "Birthday party for a 7-year-old",
        ["Ideas for a dinosaur birthday party for a 7-year-old?", "What games work for ten kids at home?"],
        ["What food can I prepare the day before?", "How long should the party be?"],
        [
            "A fossil dig in a sandbox or a tub of sand is always popular.",
            "Two hours is plenty for this age group.",
            "Sandwiches, fruit skewers and muffins can all be made the day before.",
            "Plan one calm activity, such as colouring, for the middle of the party.",
        ],
    ),
    (
        "Understanding a medical bill",
        ["What does 'deductible' mean on my health insurance bill?", "Why was I charged twice for one visit?"],
        ["How do I ask for an itemised bill?", "What is an explanation of benefits?"],
        [
            "The deductible is what you pay yourself before the insurer starts paying.",
            "Facility and doctor fees are often billed separately for the same visit.",
            "You can ask the provider's billing office for an itemised statement.",
            "Compare the bill with the insurer's explanation of benefits before paying.",
        ],
    ),
    (
        "Fixing a slow laptop",
        ["My laptop is really slow after an update. What can I do?", "How do I see what is using my CPU?"],
        ["Is it worth upgrading to an SSD?", "Should I reinstall the operating system?"],
        [
            "Check the task manager for a process that uses most of the CPU or disk.",
            "Disable programs that start automatically and that you do not need.",
            "Moving from a hard disk to an SSD is the biggest speed-up for older laptops.",
            "Back up your files before reinstalling anything.",
        ],
    ),
    (
        "Summary of a research paper",
        ["Summarise this abstract in three bullet points.", "Explain this paper's method in plain words."],
        ["What are the limitations?", "How does it compare with earlier work?"],
        [
            "The study compares two approaches on the same public data set.",
            "The main result holds for small samples but was not tested at scale.",
            "The authors note that their data covers only one country.",
            "Earlier work used a smaller model and reported similar trends.",
        ],
    ),
    (
        "Houseplants for a dark flat",
        ["Which houseplants survive with little light?", "Why are the leaves of my pothos turning yellow?"],
        ["How often should I water a snake plant?", "Are these safe for cats?"],
        [
            "Snake plants, ZZ plants and pothos cope well with low light.",
            "Yellow leaves usually mean too much water rather than too little.",
            "Water a snake plant only when the soil is dry all the way through.",
            "Pothos is toxic to cats; a parlour palm is a safer choice.",
        ],
    ),
]

SUPPORT_BODIES = [
    "I can't sign in since yesterday; the app says my session expired every time.",
    "Please delete the conversation history of my account.",
    "I was charged twice for my subscription this month. Can you check?",
    "How do I export all my conversations?",
    "The voice input stopped working on my phone after the last update.",
    "My colleague {other} asked me to forward this question about our team account on their behalf.",
    "Can you tell me which data you keep about me and for how long?",
    "Your assistant gave me wrong information about a medication dose; please review it.",
    "I'd like to close my account.",
    "Attachments over 5 MB fail to upload from my laptop.",
]

FEEDBACK_COMMENTS = {
    "up": ["", "", "Very clear, thanks!", "Exactly what I needed.", "Helpful and short."],
    "down": ["", "The answer was out of date.", "Too long.", "It ignored my follow-up question.", "Factually wrong."],
}


# --- Generation ----------------------------------------------------------------------------------------

# Each table's rows: foreign-key references first (positions in the chunk's parent list, or None), then
# the columns. COLUMNS lists every concrete column but the primary key; `_check_columns` proves it.
FKS: dict[type, list[tuple[str, type]]] = {
    User: [],
    Conversation: [("user_id", User)],
    Message: [("conversation_id", Conversation)],
    Attachment: [("message_id", Message)],
    Feedback: [("user_id", User), ("message_id", Message)],
    SupportMessage: [("user_id", User)],
    AccessLog: [("user_id", User)],
    UsageEvent: [("user_id", User)],
}
COLUMNS: dict[type, list[str]] = {
    User: [
        "password",
        "last_login",
        "is_superuser",
        "email",
        "name",
        "subject_ref",
        "country",
        "region",
        "date_of_birth",
        "last_activity_at",
        "closed_at",
        "is_staff",
        "is_active",
        "date_joined",
    ],
    Conversation: ["title", "created", "updated"],
    Message: ["role", "content", "created"],
    Attachment: ["file", "kind", "size", "sha256", "created"],
    Feedback: ["rating", "comment", "conversation_snapshot", "created", "anonymised_at"],
    SupportMessage: ["name", "email", "channel", "body", "third_party_attested", "created", "anonymised_at"],
    AccessLog: [
        "ip_address",
        "device_brand",
        "device_model",
        "device_id",
        "browser",
        "user_agent",
        "path",
        "created",
        "anonymised_at",
    ],
    UsageEvent: [
        "event_type",
        "feature",
        "country",
        "time_zone",
        "user_agent",
        "device_type",
        "connection",
        "created",
        "anonymised_at",
    ],
}
JSON_COLUMNS = {Feedback: {"conversation_snapshot"}}
MODELS = list(FKS)  # foreign-key order: parents before children


def _check_columns() -> None:
    for model in MODELS:
        expected = {f.attname for f in model._meta.concrete_fields if not f.primary_key}
        have = set(COLUMNS[model]) | {fk for fk, _ in FKS[model]}
        if expected != have:
            raise RuntimeError(
                f"chat.demo does not know every column of {model._meta.label}: "
                f"missing {sorted(expected - have)}, unknown {sorted(have - expected)}; update COLUMNS in chat/demo.py"
            )


@dataclass
class Chunk:
    """Rows of a few whole subjects, per model, plus the attachment files to write with them."""

    rows: dict[type, list[tuple]] = field(default_factory=lambda: {m: [] for m in MODELS})
    files: list[tuple[str, bytes]] = field(default_factory=list)
    size: int = 0

    def add(self, model, row: tuple) -> int:
        rows = self.rows[model]
        rows.append(row)
        self.size += 1
        return len(rows) - 1


def _ascii(text: str) -> str:
    """The letters of a name as an email's local part: "Anne-Sophie" -> "annesophie", "Jörg" -> "jorg"."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return "".join(c for c in plain if c.isalnum())


def _ipv4(rng: random.Random) -> str:
    while True:
        first = rng.randint(1, 223)
        if first not in (10, 100, 127, 169, 172, 192, 198, 203):  # private, shared, loopback, link-local, test nets
            return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _ipv6(rng: random.Random) -> str:
    prefix = rng.choice(["2a02", "2a01", "2400", "2405", "2600", "2601", "2804"])
    groups = [f"{rng.randint(1, 0xFFFF):x}" for _ in range(7)]  # no zero group: one spelling on every database
    return ":".join([prefix, *groups])


def _png(rng: random.Random) -> bytes:
    """A valid 1x1 PNG of a random colour."""

    def block(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    pixel = bytes([0, rng.getrandbits(8), rng.getrandbits(8), rng.getrandbits(8)])
    return (
        b"\x89PNG\r\n\x1a\n"
        + block(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
        + block(b"IDAT", zlib.compress(pixel))
        + block(b"IEND", b"")
    )


def _wav(rng: random.Random) -> bytes:
    """A valid WAV of a fraction of a second of silence (8 kHz, 8-bit mono)."""
    frames = 800 * rng.randint(1, 5)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + frames)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 8000, 1, 8)
        + b"data"
        + struct.pack("<I", frames)
        + b"\x80" * frames
    )


def _attachment(rng: random.Random, topic_title: str) -> tuple[str, str, bytes]:
    kind = rng.choices(["text", "image", "audio", "file"], weights=[3, 4, 1, 2])[0]
    if kind == "text":
        return kind, "txt", f"Notes: {topic_title}\n- {rng.randint(2, 9)} points to check\n".encode()
    if kind == "image":
        return kind, "png", _png(rng)
    if kind == "audio":
        return kind, "wav", _wav(rng)
    rows = "\n".join(f"2024-{m:02d},{rng.randint(100, 9999)}" for m in range(1, rng.randint(3, 12)))
    return kind, "csv", f"month,amount\n{rows}\n".encode()


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def generate_subject(spec: DemoSpec, number: int, chunk: Chunk, end: dt.datetime) -> None:
    """Append subject `number`'s account and everything it left behind to `chunk`."""
    rng = random.Random(f"privacyops-demo:{spec.seed}:{number}")  # noqa: S311 - reproducible fake data, not a secret
    span = spec.days * 86400
    us = dt.timedelta(microseconds=1)
    second = dt.timedelta(seconds=1)

    country, region, tz, _ = rng.choices(PLACES, weights=_PLACE_WEIGHTS)[0]
    firsts, lasts = NAMES[_NAME_POOL[country]]
    first, last = rng.choice(firsts), rng.choice(lasts)
    name = f"{first} {last}"
    email = f"{_ascii(first)}.{_ascii(last)}.s{spec.seed}n{number}@{EMAIL_DOMAIN}"

    # Joined within the window (a few joined before it), active until the end or until closure.
    joined = end - dt.timedelta(seconds=rng.uniform(0.05, 1.2) * span)
    closed = None
    active_until = end
    if rng.random() < spec.closed_ratio:
        closed = joined + (end - joined) * rng.uniform(0.3, 0.98)
        active_until = closed - dt.timedelta(minutes=rng.randint(1, 600))
        if active_until <= joined:
            active_until = joined + second
    window_start = max(joined, end - dt.timedelta(days=spec.days))
    if window_start >= active_until:
        window_start = joined
    window = (active_until - window_start).total_seconds()

    def moment() -> dt.datetime:
        return window_start + dt.timedelta(microseconds=int(rng.random() * window * 1_000_000))

    devices = [rng.choices(DEVICES, weights=_DEVICE_WEIGHTS)[0] for _ in range(rng.randint(1, 3))]
    device_ids = [str(_uuid(rng)) for _ in devices]
    ips = [_ipv6(rng) if rng.random() < 0.12 else _ipv4(rng) for _ in range(rng.randint(1, 3))]
    last_activity = None

    user = chunk.add(
        User,
        (
            "!" + f"{rng.getrandbits(160):040x}",  # unusable: Django never accepts a password that starts with "!"
            None,
            False,
            email,
            name,
            _uuid(rng),
            country,
            region,
            None if rng.random() < 0.3 else dt.date(rng.randint(1955, 2006), rng.randint(1, 12), rng.randint(1, 28)),
            None,  # last_activity_at: patched below once the subject's activity is known
            closed,
            False,
            closed is None,
            joined,
        ),
    )

    # Conversations: user and assistant alternate, a minute or so apart.
    remaining = spec.messages_per_subject
    while remaining > 0:
        length = min(remaining, rng.choice([2, 2, 4, 4, 6, 8, 10, 12, 16, 20]))
        remaining -= length
        title, openers, follow_ups, answers = rng.choice(TOPICS)
        started = moment()
        when = started
        conv = chunk.add(Conversation, (user, title if rng.random() < 0.9 else "", started, started))
        snapshot: list[dict] = []
        for k in range(length):
            if k % 2 == 0:
                role = "user"
                content = rng.choice(openers) if k == 0 else rng.choice(follow_ups)
                when += dt.timedelta(seconds=rng.randint(5, 240), microseconds=rng.randint(0, 999_999))
            else:
                role = "assistant"
                content = " ".join(rng.sample(answers, rng.randint(2, len(answers))))
                when += dt.timedelta(seconds=rng.randint(2, 40), microseconds=rng.randint(0, 999_999))
            msg = chunk.add(Message, (conv, role, content, when))
            snapshot.append({"role": role, "content": content, "created": when.isoformat()})
            if role == "user" and rng.random() < spec.attachments_ratio:
                kind, ext, data = _attachment(rng, title)
                name_in_storage = f"chat/attachments/{when:%Y/%m}/demo-{_uuid(rng).hex}.{ext}"
                chunk.add(Attachment, (msg, name_in_storage, kind, len(data), hashlib.sha256(data).hexdigest(), when + us))
                if spec.files:
                    chunk.files.append((name_in_storage, data))
            if role == "assistant" and rng.random() < spec.feedback_ratio:
                rating = "up" if rng.random() < 0.7 else "down"
                chunk.add(
                    Feedback,
                    (
                        user,
                        msg,
                        rating,
                        rng.choice(FEEDBACK_COMMENTS[rating]),
                        list(snapshot),
                        when + dt.timedelta(seconds=rng.randint(3, 120)),
                        None,
                    ),
                )
        chunk.rows[Conversation][conv] = (user, chunk.rows[Conversation][conv][1], started, when)
        last_activity = when if last_activity is None or when > last_activity else last_activity

    # Support: some subjects write from their account's address; a few people without an account write too.
    if rng.random() < spec.support_ratio:
        body = rng.choice(SUPPORT_BODIES).format(other=f"{rng.choice(firsts)} {rng.choice(lasts)}")
        channel = "email" if rng.random() < 0.8 else "social"
        chunk.add(SupportMessage, (user, name, email, channel, body, "colleague" in body, moment(), None))
    if rng.random() < spec.support_ratio / 4:
        sender_first, sender_last = rng.choice(firsts), rng.choice(lasts)
        sender = f"{_ascii(sender_first)}.{_ascii(sender_last)}.s{spec.seed}n{number}@{SENDER_DOMAIN}"
        body = rng.choice(SUPPORT_BODIES).format(other=f"{rng.choice(firsts)} {rng.choice(lasts)}")
        chunk.add(
            SupportMessage,
            (
                None,
                f"{sender_first} {sender_last}",
                sender,
                rng.choice(["email", "social"]),
                body,
                rng.random() < 0.5,
                moment(),
                None,
            ),
        )

    # Access logs and usage events, in time order; a few requests came before sign-in (no account yet).
    for when in sorted(moment() for _ in range(spec.logs_per_subject)):
        d = rng.randrange(len(devices))
        _, brand, model, browser, agent = devices[d]
        path = rng.choices(_PATHS, weights=_PATH_WEIGHTS)[0]
        anonymous = rng.random() < 0.03
        chunk.add(
            AccessLog,
            (
                None if anonymous else user,
                rng.choice(ips),
                brand,
                model,
                device_ids[d],
                browser,
                agent,
                "/login" if anonymous else path,
                when,
                None,
            ),
        )
        if not anonymous and (last_activity is None or when > last_activity):
            last_activity = when
    for when in sorted(moment() for _ in range(spec.events)):
        device_type, _, _, _, agent = rng.choice(devices)
        event_type, feature = rng.choice(EVENTS)
        chunk.add(UsageEvent, (user, event_type, feature, country, tz, agent, device_type, rng.choice(CONNECTIONS), when, None))
        if last_activity is None or when > last_activity:
            last_activity = when

    row = chunk.rows[User][user]
    chunk.rows[User][user] = (*row[:9], last_activity, *row[10:])


def subject_email(*, seed: int, number: int) -> str:
    """The email address generate_subject gives subject `number` of `seed` (without generating the rest)."""
    chunk = Chunk()
    generate_subject(
        DemoSpec(subjects=1, messages_per_subject=0, logs_per_subject=0, events_per_subject=0, seed=seed, files=False),
        number,
        chunk,
        dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
    )
    return chunk.rows[User][0][3]


def chunks(spec: DemoSpec, *, chunk_rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """The subjects of `spec` in chunks of about `chunk_rows` rows (whole subjects), generated lazily."""
    end = dt.datetime.combine(spec.end_day, dt.time(23, 59, 59), tzinfo=dt.UTC)
    chunk = Chunk()
    for number in range(spec.subjects):
        generate_subject(spec, number, chunk, end)
        if chunk.size >= chunk_rows:
            yield chunk
            chunk = Chunk()
    if chunk.size:
        yield chunk


# --- Writing ---------------------------------------------------------------------------------------------


class _Writer(abc.ABC):
    """Writes one chunk's rows table by table, turning chunk positions into database ids."""

    @abc.abstractmethod
    def insert(self, model, columns: list[str], rows: list[tuple]) -> list[int]:
        """Insert `rows` (values for `columns`) into `model`'s table; return their ids in order."""

    def write(self, chunk: Chunk) -> None:
        ids: dict[type, list[int]] = {}
        for model in MODELS:
            fks = FKS[model]
            n = len(fks)
            rows = [
                tuple(None if ref is None else ids[parent][ref] for ref, (_, parent) in zip(row[:n], fks, strict=True)) + row[n:]
                for row in chunk.rows[model]
            ]
            columns = [fk for fk, _ in fks] + COLUMNS[model]
            ids[model] = self.insert(model, columns, rows) if rows else []


class _CopyWriter(_Writer):
    """PostgreSQL: ids reserved from each table's sequence, rows streamed with COPY."""

    def __init__(self, cursor):
        self.cursor = cursor

    def insert(self, model, columns, rows):
        table = model._meta.db_table
        pk = model._meta.pk.column
        self.cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [table, pk, len(rows)],
        )
        ids = [r[0] for r in self.cursor.fetchall()]
        json_at = [i for i, c in enumerate(columns) if c in JSON_COLUMNS.get(model, ())]
        quoted = ", ".join(connection.ops.quote_name(c) for c in [pk, *columns])
        with self.cursor.copy(f"COPY {connection.ops.quote_name(table)} ({quoted}) FROM STDIN") as copy:
            for pk_value, row in zip(ids, rows, strict=True):
                if json_at:
                    row = list(row)
                    for i in json_at:
                        row[i] = json.dumps(row[i])
                copy.write_row((pk_value, *row))
        return ids


class _BulkWriter(_Writer):
    """Any database whose bulk_create returns ids (SQLite 3.35+, PostgreSQL, MariaDB 10.5+)."""

    batch_size = 500

    def insert(self, model, columns, rows):
        objs = [model(**dict(zip(columns, row, strict=True))) for row in rows]
        model.objects.bulk_create(objs, batch_size=self.batch_size)
        return [o.pk for o in objs]


def demo_present(*, seed: int) -> bool:
    return User.objects.filter(email=subject_email(seed=seed, number=0)).exists()


def chat_tables_empty() -> bool:
    return not any(m.objects.exists() for m in (Conversation, Message, AccessLog, UsageEvent, SupportMessage, Feedback))


@dataclass
class SeedResult:
    counts: dict[str, int]
    files: int
    method: str


def seed_demo(spec: DemoSpec, *, method: str | None = None, progress: Callable[[dict], None] | None = None) -> SeedResult:
    """Create the demo subjects of `spec` in one transaction; DemoAlreadySeeded if this seed's accounts exist.

    `method` is "copy" (PostgreSQL only) or "bulk"; by default COPY on PostgreSQL, bulk elsewhere.
    """
    _check_columns()
    if method is None:
        method = "copy" if connection.vendor == "postgresql" else "bulk"
    if method == "copy" and connection.vendor != "postgresql":
        raise ValueError("COPY needs PostgreSQL")
    if method == "bulk" and not connection.features.can_return_rows_from_bulk_insert:
        raise ValueError(f"{connection.vendor} does not return ids from bulk inserts; seed_demo cannot use it")
    if demo_present(seed=spec.seed):
        raise DemoAlreadySeeded(
            f"The demo accounts of seed {spec.seed} exist already (e.g. {subject_email(seed=spec.seed, number=0)}). "
            "Use another --seed, or delete the demo data first."
        )
    counts = {m._meta.label: 0 for m in MODELS}
    files = 0
    with transaction.atomic(), connection.cursor() as cursor:
        writer = _CopyWriter(cursor) if method == "copy" else _BulkWriter()
        for chunk in chunks(spec):
            writer.write(chunk)
            for model in MODELS:
                counts[model._meta.label] += len(chunk.rows[model])
            for name, data in chunk.files:
                if default_storage.exists(name):  # a file of an earlier run of this seed whose rows were deleted
                    default_storage.delete(name)
                default_storage.save(name, ContentFile(data))
                files += 1
            if progress:
                progress(counts)
    return SeedResult(counts=counts, files=files, method=method)
