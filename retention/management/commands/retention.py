"""Retention for operators: preview and run rules, place and lift legal holds (POLICY-MAP VI).

The command acts as the system (its audit events have no staff actor, like a scheduled job's) with a
DPO's authority: whoever can run `manage.py` on the server already holds the database. Runs are worked
inline in this process, batch by batch, exactly as a worker would.
"""

from __future__ import annotations

import os
import socket

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.selectors import account_by_email
from inventory.models import DataCategory, DataStore
from retention.engine import COUNT_KEYS, purge_run_work
from retention.models import LegalHold, PurgeRun, RetentionRule
from retention.selectors import hold_kept_counts
from retention.services import hold_lift, hold_place, purge_run_start


def _messages(exc: ValidationError) -> str:
    return "; ".join(exc.messages)


class Command(BaseCommand):
    help = (
        "Retention rules and legal holds (POLICY-MAP VI). `preview` and `run` work inline in this process and "
        "print the counts per model; `hold` and `lift` manage legal holds. The command acts as the system with "
        "a DPO's authority; its audit events carry no staff name."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="{preview,run,hold,lift}")

        preview = sub.add_parser("preview", help="Dry run: count what a run would delete or anonymise; change nothing.")
        preview.add_argument("--rule", dest="rule", help="Rule code (default: every rule, enabled or not).")
        preview.add_argument("--batch-size", type=int, default=None)

        run = sub.add_parser("run", help="Run rules now (default: every enabled, confirmed rule).")
        run.add_argument("--rule", dest="rule", help="Rule code.")
        run.add_argument("--dry-run", action="store_true", help="Count only, as `preview` does.")
        run.add_argument("--batch-size", type=int, default=None)

        hold = sub.add_parser("hold", help="Place a legal hold on a subject (and/or a category, a store).")
        hold.add_argument("--subject", help="The account's email address.")
        hold.add_argument("--category", help="Data category code.")
        hold.add_argument("--store", help="Data store code.")
        hold.add_argument("--reason", required=True)
        hold.add_argument("--reference", required=True, help="Court order, claim or case number.")

        lift = sub.add_parser("lift", help="Lift a legal hold.")
        lift.add_argument("hold_id", type=int)
        lift.add_argument("--reason", default="")

    def handle(self, *args, action, **options):
        self.verbosity = options["verbosity"]
        if action == "preview":
            return self.run_rules(options.get("rule"), dry_run=True, batch_size=options["batch_size"])
        if action == "run":
            return self.run_rules(options.get("rule"), dry_run=options["dry_run"], batch_size=options["batch_size"])
        if action == "hold":
            return self.place_hold(**options)
        return self.lift_hold(options["hold_id"], options["reason"])

    def say(self, text=""):
        if self.verbosity:
            self.stdout.write(text)

    # --- preview / run -----------------------------------------------------------------------------

    def run_rules(self, code: str | None, *, dry_run: bool, batch_size: int | None):
        rules = RetentionRule.objects.select_related("category", "store").order_by("code")
        if code:
            rules = rules.filter(code=code)
            if not rules:
                known = ", ".join(RetentionRule.objects.order_by("code").values_list("code", flat=True)) or "none"
                raise CommandError(f"No retention rule {code!r}. Known rules: {known}.")
        elif not dry_run:
            rules = rules.filter(enabled=True, confirmed_at__isnull=False)
        if not rules:
            self.say("No rule to run: a rule runs once a DPO has confirmed it in the workbench.")
            return
        worker = f"command:{socket.gethostname()}:{os.getpid()}"
        failed = []
        for rule in rules:
            try:
                run = purge_run_start(rule=rule, dry_run=dry_run, batch_size=batch_size, enqueue=False)
            except ValidationError as exc:
                failed.append(rule.code)
                self.stderr.write(f"{rule.code}: {_messages(exc)}")
                continue
            run = purge_run_work(run.pk, worker=worker)
            self.report(rule, run)
            if run.status != PurgeRun.Status.COMPLETED:
                failed.append(rule.code)
        if failed:
            raise CommandError(f"Not completed: {', '.join(failed)}.")

    def report(self, rule: RetentionRule, run: PurgeRun):
        where = f"store {rule.store.code}" if rule.store_id else "all stores"
        kind = "Preview" if run.dry_run else "Run"
        self.say(
            f"{kind} {run.pk} of {rule.code} ({rule.category.code}, {where}): {rule.get_action_display().lower()} "
            f"rows whose clock ({rule.get_counts_from_display().lower()}) started before {run.cutoff:%Y-%m-%d %H:%M} UTC"
        )
        width = max([len("model"), *(len(label) for label in run.counts)])
        self.say("  " + "model".ljust(width) + "".join(key.rjust(12) for key in COUNT_KEYS))
        for label in run.position.get("plan", []):
            counts = run.counts.get(label, {})
            self.say("  " + label.ljust(width) + "".join(str(counts.get(key, 0)).rjust(12) for key in COUNT_KEYS))
        if run.status == PurgeRun.Status.COMPLETED:
            self.say(self.style.SUCCESS(f"  {run.get_status_display()} in {run.batches_done} batch(es)."))
        else:
            self.stderr.write(f"  {rule.code}: {run.get_status_display()} after {run.batches_done} batch(es). {run.error}")
        self.say()

    # --- holds -------------------------------------------------------------------------------------

    def place_hold(self, *, subject=None, category=None, store=None, reason, reference, **_):
        account = None
        if subject:
            account = account_by_email(subject, active_only=False)
            if account is None:
                raise CommandError(f"No account with the email address {subject!r}.")
        category_row = self._by_code(DataCategory, category, "data category")
        store_row = self._by_code(DataStore, store, "data store")
        try:
            hold = hold_place(
                actor=None, subject=account, category=category_row, store=store_row, reason=reason, reference=reference
            )
        except ValidationError as exc:
            raise CommandError(_messages(exc)) from exc
        self.say(self.style.SUCCESS(f"Hold {hold.pk} placed ({reference}). It now keeps:"))
        for label, count in sorted(hold_kept_counts(hold).items()):
            if count:
                self.say(f"  {label}: {count}")

    def _by_code(self, model, code, what):
        if not code:
            return None
        row = model.objects.filter(code=code).first()
        if row is None:
            known = ", ".join(model.objects.order_by("code").values_list("code", flat=True)) or "none"
            raise CommandError(f"No {what} {code!r}. Known: {known}.")
        return row

    def lift_hold(self, hold_id: int, reason: str):
        hold = LegalHold.objects.filter(pk=hold_id).first()
        if hold is None:
            raise CommandError(f"No legal hold {hold_id}.")
        try:
            hold_lift(hold=hold, actor=None, reason=reason)
        except (ValidationError, PermissionDenied) as exc:
            raise CommandError(_messages(exc) if isinstance(exc, ValidationError) else str(exc)) from exc
        self.say(self.style.SUCCESS(f"Hold {hold_id} ({hold.reference}) lifted; its rows follow the rules again."))
