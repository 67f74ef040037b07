"""`manage.py training_dataset --out FILE`: build the de-identified model-improvement dataset (PM-II-5).

The command acts as the system (its audit event has no staff actor, like the scheduled task's); whoever can
run `manage.py` on the server already holds the database. Arguments are checked before anything is read,
and the file appears only when complete (see `training.services`).
"""

from __future__ import annotations

import datetime

from django.core.management.base import BaseCommand, CommandError

from consents.decisions import DecisionError
from training.services import DEFAULT_BATCH_SIZE, TrainingDatasetError, training_dataset_build


def _day(value: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"{value!r} is not a date: use YYYY-MM-DD.") from exc


class Command(BaseCommand):
    help = (
        "Write the de-identified model-improvement dataset (PM-II-5) as JSON Lines: only subjects for whom the "
        "purpose is allowed, pseudonymous tokens, contact details and the account's own name and e-mail redacted, "
        "days instead of times. Prints the counts that the run's audit event records."
    )

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, help="The file to write (its directory must exist).")
        parser.add_argument("--since", help="First day of content to include (YYYY-MM-DD, UTC).")
        parser.add_argument("--until", help="Last day of content to include (YYYY-MM-DD, UTC), included.")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="Subjects per batch.")

    def handle(self, *args, out, since=None, until=None, batch_size=DEFAULT_BATCH_SIZE, **options):
        since_day = _day(since) if since else None
        until_day = _day(until) if until else None
        if since_day and until_day and since_day > until_day:
            raise CommandError("--since must not be after --until.")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            run = training_dataset_build(out_path=out, actor=None, since=since_day, until=until_day, batch_size=batch_size)
        except TrainingDatasetError as exc:
            raise CommandError(str(exc)) from exc
        except DecisionError as exc:  # the register lacks the purpose: nothing was written
            raise CommandError(f"{exc} Load the register first (manage.py loadpolicy).") from exc
        except OSError as exc:
            raise CommandError(f"Could not write {out}: {exc.strerror or exc}") from exc

        counts = run.counts()
        write = self.stdout.write
        write(self.style.SUCCESS(f"Wrote {run.out_path}: {counts['records']} records, {counts['bytes']} bytes."))
        write(f"Run {counts['run_id']}  sha256 {counts['sha256']}")
        write(f"Subjects: {counts['subjects_considered']} considered, {counts['subjects_included']} included")
        for reason, n in counts["subjects_excluded"].items():
            write(f"  excluded, {reason.replace('_', ' ')}: {n}")
        write(f"Messages: {counts['messages']}  Feedback: {counts['feedback']}")
        write(
            f"Left out: {counts['feedback_without_subject']} feedback without a subject, "
            f"{counts['content_before_minimum_age']} items from before the minimum age"
        )
        write("Redactions: " + ", ".join(f"{kind.replace('_', ' ')} {n}" for kind, n in counts["redactions"].items()))
