"""`manage.py sync_schedules`: write settings.PERIODIC_TASKS to django-celery-beat's tables."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from privacyops.schedules import periodic_tasks_sync


class Command(BaseCommand):
    help = (
        "Create or update the beat schedule from settings.PERIODIC_TASKS; disable (never delete) tasks this "
        "command created that are no longer in code. Admin edits survive until the code of that task changes."
    )

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="Also overwrite admin edits of tasks whose code did not change.")

    def handle(self, *args, force=False, **options):
        try:
            report = periodic_tasks_sync(tasks=settings.PERIODIC_TASKS, force=force)
        except ValueError as exc:
            raise CommandError(f"settings.PERIODIC_TASKS: {exc}") from exc
        for name in report.created:
            self.stdout.write(f"created: {name}")
        for name in report.adopted:
            self.stdout.write(f"adopted: {name} (existed without our marker; now follows code)")
        for name, fields in report.updated.items():
            self.stdout.write(f"updated: {name} ({', '.join(fields)})")
        for name, fields in report.kept_admin_edits.items():
            self.stdout.write(
                f"kept: {name} differs from code in {', '.join(fields)} (edited in the admin; --force restores code)"
            )
        for name in report.disabled:
            self.stdout.write(f"disabled: {name} (no longer in code)")
        summary = (
            f"{len(report.created)} created, {len(report.updated) + len(report.adopted)} updated, "
            f"{len(report.disabled)} disabled, {len(report.unchanged) + len(report.kept_admin_edits)} unchanged."
        )
        self.stdout.write(self.style.SUCCESS(summary) if report.changed else summary)
