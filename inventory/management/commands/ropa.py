from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from inventory.ropa import FORMATS, record_of_processing, render


class Command(BaseCommand):
    help = (
        "Print the record of processing activities (GDPR Art. 30(1)(a)–(g)) from the register, as csv (one row per "
        "purpose × data category), json (the whole structure) or jsonld (DPV terms, with the shipped @context embedded)."
    )

    def add_arguments(self, parser):
        # Checked in handle() rather than with argparse choices, so a bad value is a CommandError whose message
        # names every format, from the command line and from call_command alike.
        parser.add_argument("--format", dest="fmt", default="json", help=f"One of {', '.join(FORMATS)} (default: json).")
        parser.add_argument("--output", default=None, help="Write to this file instead of standard output.")

    def handle(self, *args, fmt="json", output=None, **options):
        if fmt not in FORMATS:
            raise CommandError(f"Unknown format “{fmt}”: use --format {' | '.join(FORMATS)}.")
        text = render(record_of_processing(), fmt)
        if output:
            Path(output).write_text(text, encoding="utf-8")
            self.stderr.write(f"Record of processing written to {output} ({fmt}).")
        else:
            self.stdout.write(text, ending="" if text.endswith("\n") else "\n")
