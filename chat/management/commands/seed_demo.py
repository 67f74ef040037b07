import argparse
import datetime as dt
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chat.demo import DemoAlreadySeeded, DemoSpec, chat_tables_empty, demo_present, seed_demo


def _whole(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small: give {minimum} or more")
        return value

    return parse


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1")
    return value


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date such as 2025-01-31") from None


class Command(BaseCommand):
    help = (
        "Create fake account holders with conversations, attachments, feedback, support messages, access logs and "
        "usage events (demo and benchmark data). Deterministic for a seed and end day; COPY on PostgreSQL. "
        "Refuses when DEBUG is off unless --force."
    )

    def add_arguments(self, parser):
        parser.add_argument("--subjects", type=_whole(1), default=20, help="Accounts to create (default 20).")
        parser.add_argument("--messages-per-subject", type=_whole(0), default=20, help="Chat messages per account (default 20).")
        parser.add_argument("--logs-per-subject", type=_whole(0), default=20, help="Access-log rows per account (default 20).")
        parser.add_argument(
            "--events-per-subject",
            type=_whole(0),
            default=None,
            help="Usage events per account (default: as --logs-per-subject).",
        )
        parser.add_argument("--days", type=_whole(1), default=90, help="Activity is spread over this many days (default 90).")
        parser.add_argument(
            "--end",
            type=_day,
            default=None,
            help="The last day of activity, YYYY-MM-DD (default: today, UTC). Part of the determinism.",
        )
        parser.add_argument(
            "--seed", type=_whole(0), default=1, help="Random seed; one seed always gives the same rows (default 1)."
        )
        parser.add_argument(
            "--attachments-ratio", type=_ratio, default=0.05, help="Share of user messages with an attachment (default 0.05)."
        )
        parser.add_argument("--feedback-ratio", type=_ratio, default=0.03, help="Share of answers rated (default 0.03).")
        parser.add_argument(
            "--support-ratio", type=_ratio, default=0.05, help="Share of accounts that wrote to support (default 0.05)."
        )
        parser.add_argument("--closed-ratio", type=_ratio, default=0.04, help="Share of accounts closed (default 0.04).")
        parser.add_argument(
            "--no-files", action="store_true", help="Write attachment rows but no files to storage (for big benchmark runs)."
        )
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing (and succeed) when the chat tables already hold data or this seed's accounts exist.",
        )
        parser.add_argument("--force", action="store_true", help="Seed even with DEBUG off (it creates fake accounts).")

    def handle(self, *args, **options):
        if not settings.DEBUG and not options["force"]:
            raise CommandError("DEBUG is off: seed_demo creates fake accounts. Add --force if this database really is a demo.")
        try:
            spec = DemoSpec(
                subjects=options["subjects"],
                messages_per_subject=options["messages_per_subject"],
                logs_per_subject=options["logs_per_subject"],
                events_per_subject=options["events_per_subject"],
                days=options["days"],
                seed=options["seed"],
                end=options["end"] or dt.datetime.now(dt.UTC).date(),
                attachments_ratio=options["attachments_ratio"],
                feedback_ratio=options["feedback_ratio"],
                support_ratio=options["support_ratio"],
                closed_ratio=options["closed_ratio"],
                files=not options["no_files"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        verbose = options["verbosity"] > 0
        if options["if_empty"] and (not chat_tables_empty() or demo_present(seed=spec.seed)):
            if verbose:
                self.stdout.write("Chat data is present already; seed_demo --if-empty did nothing.")
            return

        started = time.monotonic()

        def progress(counts):
            if options["verbosity"] > 1:
                self.stdout.write(f"  {counts['chat.Message']:,} messages, {time.monotonic() - started:.1f}s")

        try:
            result = seed_demo(spec, progress=progress)
        except DemoAlreadySeeded as exc:
            raise CommandError(str(exc)) from exc
        elapsed = time.monotonic() - started
        if not verbose:
            return
        total = sum(result.counts.values())
        for label, n in result.counts.items():
            self.stdout.write(f"  {label:<20} {n:>12,}")
        files = f"{result.files:,} attachment files written" if spec.files else "no attachment files (--no-files)"
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {total:,} rows ({result.method}) in {elapsed:.1f}s, {total / max(elapsed, 1e-9):,.0f} rows/s; {files}. "
                f"Seed {spec.seed}, last day {spec.end_day}."
            )
        )
