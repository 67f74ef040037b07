from django.core.management.base import BaseCommand, CommandError

from inventory.policy import DEFAULT_POLICY_PATH, PolicyFileError, register_policy_load


class Command(BaseCommand):
    help = (
        "Load the register of processing declared by the privacy policy (POLICY-MAP I–V) from the seed file. "
        "Idempotent; rows the DPO has edited are kept unless --reset is given."
    )

    def add_arguments(self, parser):
        parser.add_argument("--file", dest="path", default=None, help=f"Seed file to load (default: {DEFAULT_POLICY_PATH}).")
        parser.add_argument(
            "--reset", action="store_true", help="Overwrite rows the DPO has edited with the values in the seed file."
        )

    def handle(self, *args, path=None, reset=False, **options):
        try:
            report = register_policy_load(actor=None, path=path, reset=reset)
        except PolicyFileError as exc:
            raise CommandError(str(exc)) from exc
        if options["verbosity"] == 0:
            return
        for line in report.lines():
            self.stdout.write(line)
        if report.changed:
            self.stdout.write(self.style.SUCCESS(f"Register loaded from {report.path} (audit event #{report.audit_event_id})."))
        else:
            self.stdout.write(f"Register already matches {report.path}; nothing written.")
