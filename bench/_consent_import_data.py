"""Accounts and a CSV of historical consents for bench/consent_import.py, the same for the same seed.

Accounts are written with COPY (their subject refs come from the seeded generator, so a file written for
one database names the accounts of every copy of it). The file has the shape of an export from an earlier
consent tool: about EVENTS_PER_SUBJECT events per account in no particular order, over the three
purposes that can be refused and the necessary one (only ever "given"), spread over the six years before
the run, mostly in UTC with a "Z", some with an offset or a fraction of a second, a few in French or German,
a few naming the notice version or the jurisdiction.
"""

from __future__ import annotations

import csv
import datetime
import random
import uuid

EVENTS_PER_SUBJECT = 10
PURPOSES = ("marketing-communications", "cookies-functionality", "cookies-analytics")
NECESSARY = "cookies-necessary"
ACTIONS = ("given", "refused", "withdrawn")
HEADER = ("subject_ref", "purpose", "action", "effective_at", "language", "jurisdiction", "notice_version")
PLACES = (("FR", ""), ("DE", ""), ("SG", ""), ("US", "US-CA"), ("US", "US-NY"), ("", ""), ("GB", ""))


def subject_refs(count: int, *, seed: int) -> list[uuid.UUID]:
    rng = random.Random(f"subjects-{seed}")
    return [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(count)]


def accounts_write(cursor, refs: list[uuid.UUID], *, seed: int, now: datetime.datetime) -> None:
    """One account per subject ref (no usable password: they never sign in)."""
    rng = random.Random(f"accounts-{seed}")
    columns = "password, is_superuser, email, name, subject_ref, country, region, is_staff, is_active, date_joined"
    with cursor.copy(f"COPY accounts_user ({columns}) FROM STDIN") as copy:
        for n, ref in enumerate(refs):
            country, region = PLACES[rng.randrange(len(PLACES))]
            copy.write_row(("!", False, f"bench-{n}@example.org", f"Subject {n}", ref, country, region, False, True, now))


def csv_write(path, refs: list[uuid.UUID], *, rows: int, seed: int, now: datetime.datetime) -> None:
    rng = random.Random(f"consents-{seed}-{rows}")
    start = now - datetime.timedelta(days=6 * 365)
    span = int((now - datetime.timedelta(days=1) - start).total_seconds())
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for _ in range(rows):
            moment = start + datetime.timedelta(seconds=rng.randrange(span))
            shape = rng.random()
            if shape < 0.8:
                when = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
            elif shape < 0.9:
                when = moment.astimezone(datetime.timezone(datetime.timedelta(hours=2))).isoformat()
            else:
                when = moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{rng.randrange(1000):03d}"
            if rng.random() < 0.05:
                purpose, action = NECESSARY, "given"
            else:
                purpose, action = PURPOSES[rng.randrange(len(PURPOSES))], ACTIONS[rng.randrange(len(ACTIONS))]
            language = ("fr", "de")[rng.randrange(2)] if rng.random() < 0.05 else "en"
            jurisdiction = "EU" if rng.random() < 0.05 else ""
            notice_version = "1" if rng.random() < 0.1 else ""
            writer.writerow((refs[rng.randrange(len(refs))], purpose, action, when, language, jurisdiction, notice_version))
