"""`manage.py verify_consents`: check every consent chain and that the state cache equals the ledger."""

import uuid

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from consents.proof import chains_verify
from privacyops.audit import audit_record


class Command(BaseCommand):
    help = (
        "Verify the consent ledger (PM-0-2): every principal's hash chain (positions, links, hashes, head, "
        "notice texts) and that each principal's current state equals what its ledger says. Prints one line per "
        "broken chain or state mismatch and exits with status 1 if there is any. Audited."
    )

    def add_arguments(self, parser):
        parser.add_argument("--subject", metavar="SUBJECT_REF", help="Check one subject: their chain and their linked visitors'.")
        parser.add_argument("--chunk-size", type=int, default=1000, help="Chains and events read per query (default 1000).")

    def handle(self, *args, subject=None, chunk_size=1000, **options):
        subject_ref = None
        if subject:
            try:
                subject_ref = uuid.UUID(subject)
            except ValueError:
                raise CommandError(f"{subject!r} is not a subject reference (a UUID).") from None
        summary = chains_verify(subject_ref=subject_ref, chunk_size=chunk_size)

        scope = f"subject {subject_ref}" if subject_ref else "all principals"
        self.stdout.write(f"Checked {summary.chains} chains ({summary.events} events) of {scope}.")
        for report in summary.broken:
            for problem in report.problems:
                self.stderr.write(f"BROKEN chain of {report.principal}: {problem}")
        for mismatch in summary.state_mismatches:
            for code, difference in mismatch.differences.items():
                self.stderr.write(
                    f"STATE MISMATCH {mismatch.principal} purpose {code}: the state points at event "
                    f"{difference['state_event']}, the ledger's latest is event {difference['ledger_event']}"
                )
        if summary.orphan_states:
            self.stderr.write(f"STATE MISMATCH {summary.orphan_states} state rows belong to principals with no chain")
        hidden = (summary.broken_chains - len(summary.broken)) + (summary.mismatched_principals - len(summary.state_mismatches))
        if hidden:
            self.stderr.write(f"... and {hidden} more principals with problems (only the first are listed).")

        with transaction.atomic():
            audit_record(
                actor=None,
                action="consent.chains_verified",
                subject=subject_ref,
                details={
                    "chains": summary.chains,
                    "events": summary.events,
                    "broken_chains": summary.broken_chains,
                    "state_mismatches": summary.mismatched_principals,
                    "orphan_states": summary.orphan_states,
                    "ok": summary.ok,
                },
            )
        if not summary.ok:
            raise CommandError(
                f"The consent ledger does not verify: {summary.broken_chains} broken chains, "
                f"{summary.mismatched_principals} principals whose state differs from the ledger, "
                f"{summary.orphan_states} orphan state rows. See docs/consents.md (when verification fails)."
            )
        self.stdout.write("All chains are intact and every state equals its ledger.")
