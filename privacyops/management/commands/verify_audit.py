"""`manage.py verify_audit`: walk the audit chain and check it against the external anchors."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from privacyops.audit import audit_anchors_verify, audit_chain_verify


class Command(BaseCommand):
    help = (
        "Verify the audit trail: every event's hash and link to the one before it, then every anchored head "
        "hash (default: settings.AUDIT_ANCHOR_LOG when the file exists). Exits non-zero naming the first "
        "event that does not verify."
    )

    def add_arguments(self, parser):
        parser.add_argument("--anchors", metavar="FILE", help="Anchor file to check against (one JSON anchor per line).")
        parser.add_argument("--no-anchors", action="store_true", help="Check the chain only.")

    def handle(self, *args, anchors=None, no_anchors=False, **options):
        chain = audit_chain_verify()
        failures = []
        if chain.ok:
            self.stdout.write(f"Checked {chain.checked} events: the chain is intact.")
            self.stdout.write(
                f"Head: #{chain.head_id} {chain.head_hash}" if chain.head_id else f"Head: (empty) {chain.head_hash}"
            )
        else:
            self.stdout.write(f"Checked {chain.checked} events before the first that does not verify.")
            failures.append(f"event #{chain.first_bad_id} does not verify: {chain.problem}")

        path = anchors or (None if no_anchors else settings.AUDIT_ANCHOR_LOG)
        if anchors and not Path(anchors).is_file():
            raise CommandError(f"Anchor file {anchors} does not exist.")
        if path and Path(path).is_file():
            report = audit_anchors_verify(path=path)
            if report.ok:
                self.stdout.write(f"Anchors: {report.checked} checked against {report.path}; all match.")
            else:
                self.stdout.write(
                    f"Anchors: {report.checked} checked against {report.path}; {len(report.problems)} do not match."
                )
                failures.extend(f"anchor: {problem}" for problem in report.problems)
        elif not no_anchors:
            self.stdout.write(f"Anchors: no anchor file at {path}; only the chain was checked.")

        if failures:
            for failure in failures:
                self.stderr.write(f"FAILED: {failure}")
            raise CommandError(f"The audit trail does not verify: {failures[0]}. See docs/audit.md.")
