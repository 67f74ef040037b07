from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.roles import RoleConfigurationError, sync_roles
from privacyops.audit import audit_record


class Command(BaseCommand):
    help = "Make the staff groups (DPO, Privacy analyst, Auditor, Support agent) hold exactly the permissions of the role matrix."

    def handle(self, *args, **options):
        try:
            with transaction.atomic():
                changes = sync_roles()
                changed = {role: c for role, c in changes.items() if c.changed}
                if changed:
                    # A change of staff privileges is accountable: one event per run that changed something.
                    audit_record(
                        actor=None,
                        action="roles.synced",
                        details={
                            role: {"created": c.created, "added": c.added, "removed": c.removed} for role, c in changed.items()
                        },
                    )
        except RoleConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        for role, change in changes.items():
            if not change.changed:
                self.stdout.write(f"{role}: unchanged")
                continue
            parts = ["group created"] if change.created else []
            if change.added:
                parts.append(f"added {len(change.added)}: {', '.join(change.added)}")
            if change.removed:
                parts.append(f"removed {len(change.removed)}: {', '.join(change.removed)}")
            self.stdout.write(f"{role}: " + "; ".join(parts))
