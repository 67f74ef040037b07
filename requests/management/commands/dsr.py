"""Rights requests for operators (issue 5 §5): a decrypted export for postal delivery, an erasure, and the
replay of logged erasures after a restore from backup (PM-IX-1, PM-IX-2).

The command acts as the system (its audit events carry no staff actor, like a scheduled job's) with a
DPO's authority: whoever can run `manage.py` on the server already holds the database. Work runs inline
in this process, batch by batch, through the same functions the workers use.
"""

from __future__ import annotations

import datetime
import os

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.selectors import account_by_email
from privacyops.audit import audit_record
from requests.erasure import erasure_preview, erasures_replay, subject_erase
from requests.exports import package_write_plain

PREVIEW_COLUMNS = ("erased", "anonymised", "held", "kept", "legal_duty")


def _account(email: str):
    account = account_by_email(email, active_only=False)
    if account is None:
        raise CommandError("No account has that email address (nothing was done).")
    return account


def _date(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--since takes a date as YYYY-MM-DD, not {text!r}.") from None


class Command(BaseCommand):
    help = (
        "Rights requests for operators: `export` writes a subject's data package (unencrypted ZIP), `erase` shows "
        "what erasing a subject would do and, with --yes, does it, `replay-erasures` re-applies logged erasures "
        "after a restore from backup. Every action is an audit event."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="{export,erase,replay-erasures}")
        export = sub.add_parser("export", help="Write the subject's data package as a plain ZIP (for post).")
        export.add_argument("--subject", required=True, help="The account's email address.")
        export.add_argument("--out", required=True, help="Where to write the ZIP.")
        erase = sub.add_parser("erase", help="Erase a subject across every registered store (preview without --yes).")
        erase.add_argument("--subject", required=True, help="The account's email address.")
        erase.add_argument("--yes", action="store_true", help="Really erase; without it only the preview is printed.")
        replay = sub.add_parser("replay-erasures", help="Re-apply the erasure log after a restore from backup.")
        replay.add_argument("--since", required=True, help="First day (YYYY-MM-DD) of the log to re-apply.")

    def handle(self, *args, action, **options):
        if action == "export":
            return self._export(options["subject"], options["out"])
        if action == "erase":
            return self._erase(options["subject"], options["yes"])
        return self._replay(_date(options["since"]))

    def _export(self, email: str, out: str) -> None:
        account = _account(email)
        result = package_write_plain(subject=account, out=out) or {}
        with transaction.atomic():
            audit_record(
                actor=None,
                action="dsr.export_written",
                target=("accounts.user", str(account.pk)),
                subject=account,
                details={"files": result.get("files"), "rows": result.get("rows"), "out": os.path.basename(out)},
            )
        self.stdout.write(f"Wrote the package to {out}: {result.get('files', '?')} files, {result.get('rows', '?')} rows.")

    def _erase(self, email: str, yes: bool) -> None:
        account = _account(email)
        if not yes:
            preview = erasure_preview(subject=account)
            with transaction.atomic():
                audit_record(
                    actor=None,
                    action="dsr.erase_previewed",
                    target=("accounts.user", str(account.pk)),
                    subject=account,
                    details={"categories": [row["category"] for row in preview]},
                )
            self._table(preview)
            self.stdout.write("Nothing was erased. Run again with --yes to erase.")
            return
        summary = subject_erase(account=account, reference="manage.py dsr erase")
        self._table([{"category": code, **c} for code, c in summary["categories"].items()])
        for hold in summary["holds"]:
            self.stdout.write(f"Kept under hold {hold['reference']}: {hold['reason']} ({hold['rows']})")
        self.stdout.write(self.style.SUCCESS("Erased." if not summary["holds"] else "Erased, except rows under a hold."))

    def _table(self, rows) -> None:
        self.stdout.write(f"{'category':32} " + " ".join(f"{name:>10}" for name in PREVIEW_COLUMNS))
        for row in rows:
            self.stdout.write(f"{row['category']:32} " + " ".join(f"{row.get(name, 0):>10}" for name in PREVIEW_COLUMNS))
            for reason in row.get("hold_reasons", []):
                self.stdout.write(f"    kept: {reason}")

    def _replay(self, since: datetime.date) -> None:
        report = erasures_replay(since=since)
        self.stdout.write(
            f"Erasure log since {since.isoformat()}: {report['entries']} entries, {report['replayed']} re-applied, "
            f"{report['not_found']} with no account left to erase."
        )
        for code, c in sorted(report["rows"].items()):
            self.stdout.write(f"  {code}: {c.get('erased', 0)} erased, {c.get('anonymised', 0)} anonymised")
