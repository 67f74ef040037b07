"""manage.py import_consents FILE.csv: historical consents into the ledger, all lines or none.

See consents/imports/file_import.py for the two paths (COPY on PostgreSQL, portable elsewhere) and docs/consent-import.md
for the file format.
"""

from django.core.management.base import BaseCommand, CommandError

from accounts.selectors import account_by_email
from consents.imports.file_import import ENGINES, consent_file_import, errors_text


class Command(BaseCommand):
    help = "Import historical consent events from a CSV file: every line is checked first; one bad line imports nothing."

    def add_arguments(self, parser):
        parser.add_argument("file", help="CSV with the columns subject_ref, purpose, action, effective_at[, language, ...]")
        parser.add_argument("--dry-run", action="store_true", help="check every line and write nothing")
        parser.add_argument("--max-errors", type=int, default=100, help="list at most this many problems (default 100)")
        parser.add_argument(
            "--actor", help="e-mail of the staff member responsible for the import (named on every event and in the audit trail)"
        )
        parser.add_argument(
            "--engine", choices=ENGINES, default="auto", help="copy (PostgreSQL), portable, or auto (copy where possible)"
        )

    def handle(self, *args, **options):
        actor = None
        if options["actor"]:
            actor = account_by_email(options["actor"])
            if actor is None or not actor.is_staff:
                raise CommandError(f"No active staff member has the e-mail {options['actor']}.")
        verbosity = options["verbosity"]

        def progress(message: str) -> None:
            if verbosity >= 1:
                self.stdout.write(f"  {message}")
                self.stdout.flush()

        try:
            report = consent_file_import(
                path=options["file"],
                actor=actor,
                dry_run=options["dry_run"],
                max_errors=max(0, options["max_errors"]),
                engine=options["engine"],
                progress=progress,
            )
        except (OSError, ValueError) as e:
            raise CommandError(str(e)) from e

        total = sum(report.timings.values())
        if not report.ok:
            self.stderr.write(errors_text(report), ending="")
            raise CommandError(
                f"Nothing was imported: {report.error_count} problem(s) on {report.error_lines} line(s) of "
                f"{report.source.name} ({report.engine} path, {total:.1f}s)."
            )
        if report.dry_run:
            self.stdout.write(
                self.style.SUCCESS(f"Dry run: all {report.rows} lines are valid; nothing was written ({report.engine} path).")
            )
            return
        result = report.result
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {result.events} events for {result.subjects} subjects ({result.chains_created} new chains, "
                f"{result.states_changed} consent states changed) in {total:.1f}s through the {report.engine} path; "
                f"audit event #{result.audit_event_id}."
            )
        )
