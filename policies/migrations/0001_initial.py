# The policy models move here from consents with their tables and rows: this migration only tells Django's
# state that they now belong to `policies` (db_table keeps the consents_* names). On a new database the
# tables were already created by consents 0001/0002, which this depends on; on an existing one nothing
# is touched. consents 0008 then drops them from the consents state and points ConsentEvent.policy_version here.

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("consents", "0007_consent_event_no_unique_hash"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    state_operations = [
        migrations.CreateModel(
            name="PolicyVersion",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("label", models.CharField(help_text="E.g. 2025-04-25.", max_length=40, unique=True)),
                ("last_updated", models.DateField(help_text='The "last updated" date the policy shows.')),
                ("effective_at", models.DateTimeField(help_text="When this version takes effect.")),
                ("summary", models.TextField(help_text="What changed, in plain words; the notice e-mail carries it.")),
                ("text", models.TextField(blank=True, help_text="The full policy text (Markdown).")),
                ("url", models.URLField(blank=True, help_text="Where the published policy lives.")),
                (
                    "short_notice_reason",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("", "—"),
                            ("legal_change", "A change in the law"),
                            ("correction", "A correction that changes no processing"),
                            ("other", "Other (explained in the note)"),
                        ],
                        max_length=20,
                    ),
                ),
                ("short_notice_note", models.TextField(blank=True)),
                ("published_at", models.DateTimeField(blank=True, editable=False, null=True)),
                (
                    "notice_sent_at",
                    models.DateTimeField(blank=True, editable=False, help_text="When the last notice went out.", null=True),
                ),
                ("seed_digest", models.CharField(blank=True, editable=False, max_length=64)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                (
                    "published_by",
                    models.ForeignKey(
                        blank=True,
                        editable=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "db_table": "consents_policyversion",
                "ordering": ["-effective_at"],
                "permissions": [("publish_policyversion", "Can publish a policy version")],
                "get_latest_by": "effective_at",
            },
        ),
        migrations.CreateModel(
            name="PolicyAcceptance",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("subject_ref", models.UUIDField(db_index=True)),
                ("accepted_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "method",
                    models.CharField(
                        choices=[
                            ("signup", "Agreed at sign-up"),
                            ("acknowledgement", "Acknowledged the update banner"),
                            ("continued_use", "Used the service after the effective date"),
                            ("import", "Imported from an earlier system"),
                        ],
                        max_length=20,
                    ),
                ),
                (
                    "client",
                    models.CharField(blank=True, help_text='Where: "web", "api", or the client that reported it.', max_length=40),
                ),
                ("ua_hash", models.CharField(blank=True, max_length=64)),
                (
                    "version",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="acceptances", to="policies.policyversion"
                    ),
                ),
            ],
            options={
                "db_table": "consents_policyacceptance",
                "ordering": ["-accepted_at"],
                "default_permissions": ("view",),
                "constraints": [models.UniqueConstraint(fields=("subject_ref", "version"), name="policy_acceptance_unique")],
            },
        ),
        migrations.CreateModel(
            name="PolicyNoticeDelivery",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("queued", "Queued (claimed by a notice run, not yet attempted)"),
                            ("sending", "Sending (unconfirmed if it stays so)"),
                            ("sent", "E-mail sent"),
                            ("failed", "E-mail refused or failed"),
                            ("in_service", "Acknowledged in the service before any e-mail"),
                        ],
                        default="sent",
                        max_length=10,
                    ),
                ),
                (
                    "sent_at",
                    models.DateTimeField(
                        default=django.utils.timezone.now,
                        help_text="When the e-mail was sent (queued or sending: when claimed).",
                    ),
                ),
                ("acknowledged_at", models.DateTimeField(blank=True, null=True)),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="policy_notices", to=settings.AUTH_USER_MODEL
                    ),
                ),
                (
                    "version",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="deliveries", to="policies.policyversion"
                    ),
                ),
            ],
            options={
                "db_table": "consents_policynoticedelivery",
                "default_permissions": ("view",),
                "indexes": [models.Index(fields=["version", "status"], name="policy_notice_status_idx")],
                "constraints": [
                    models.UniqueConstraint(fields=("version", "user"), name="policy_notice_once"),
                    models.CheckConstraint(
                        condition=models.Q(("status__in", ["queued", "sending", "sent", "failed", "in_service"])),
                        name="policy_notice_known_status",
                    ),
                ],
            },
        ),
    ]

    operations = [migrations.SeparateDatabaseAndState(state_operations=state_operations, database_operations=[])]
