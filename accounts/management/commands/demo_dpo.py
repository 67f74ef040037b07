"""Create the demo DPO account that `script/server` offers on a local machine.

Invariants: it runs only with DEBUG on, because it makes an account with a password that lands in a file
and on the terminal; it creates the account once (a second run changes nothing and prints the stored
credentials again); the account is staff in the DPO group, never a superuser, so the demo shows the
permissions a real DPO gets from the role and nothing more. The password is random per machine and kept
in `var/demo-dpo.txt`, readable by its owner only.
"""

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import User
from accounts.roles import ROLE_DPO
from privacyops.audit import audit_record

DEMO_DPO_EMAIL = "dpo@privacyops.local"


def _write_credentials(path: Path, email: str, password: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"email: {email}\npassword: {password}\n")
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to a file that already existed


def _read_credentials(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(": ")
        values[key] = value
    return values


class Command(BaseCommand):
    help = "Create the demo DPO account once (DEBUG only) and print its sign-in; later runs print it again."

    def add_arguments(self, parser):
        parser.add_argument(
            "--credentials-file",
            type=Path,
            default=None,
            help="Where the password is kept (default: var/demo-dpo.txt).",
        )
        parser.add_argument(
            "--reset-password",
            action="store_true",
            help="Give the existing demo account a new random password (for when the credentials file was lost).",
        )

    def handle(self, *args, credentials_file, reset_password, **options):
        if not settings.DEBUG:
            raise CommandError(
                "demo_dpo makes an account whose password is printed and kept in a file: it runs only with DEBUG on, "
                "never in production. Create real staff with `manage.py createsuperuser` and the admin."
            )
        path = credentials_file or Path(settings.VAR_DIR) / "demo-dpo.txt"
        user = User.objects.filter(email=DEMO_DPO_EMAIL).first()

        if user is None:
            password = secrets.token_urlsafe(15)
            with transaction.atomic():
                group, _ = Group.objects.get_or_create(name=ROLE_DPO)
                user = User.objects.create_user(DEMO_DPO_EMAIL, password, name="Demo DPO", is_staff=True, is_superuser=False)
                user.groups.add(group)
                audit_record(actor=None, action="account.demo_dpo_created", target=user, details={"group": ROLE_DPO})
                # Inside the transaction: if writing fails, no account exists whose password nobody knows.
                _write_credentials(path, DEMO_DPO_EMAIL, password)
            self._print("Created the demo DPO account (staff, group DPO, not a superuser).", DEMO_DPO_EMAIL, password, path)
            return

        if reset_password:
            password = secrets.token_urlsafe(15)
            with transaction.atomic():
                user.set_password(password)
                user.save(update_fields=["password"])
                audit_record(actor=None, action="account.demo_dpo_password_reset", target=user)
                _write_credentials(path, DEMO_DPO_EMAIL, password)
            self._print("Gave the demo DPO account a new password.", DEMO_DPO_EMAIL, password, path)
            return

        if path.exists():
            stored = _read_credentials(path)
            self._print(
                "The demo DPO account exists (the password below is the one it was given; if you changed it, use yours).",
                stored.get("email", DEMO_DPO_EMAIL),
                stored.get("password", "?"),
                path,
            )
            return

        self.stdout.write(
            f"The demo DPO account {DEMO_DPO_EMAIL} exists, but its password is not in {path}. "
            "Run `manage.py demo_dpo --reset-password` to give it a new one."
        )

    def _print(self, headline: str, email: str, password: str, path: Path) -> None:
        self.stdout.write(self.style.SUCCESS(headline))
        self.stdout.write(f"    email:    {email}\n    password: {password}")
        self.stdout.write(f"Kept in {path} (owner-only) and printed again at each start.")
