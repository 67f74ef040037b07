"""DeadlineRule: the yes/no `rolls_to_working_day` becomes `roll`, a choice of how a period that ends on a
non-working day rolls; new `clock_starts` and `holiday_calendar`.

Existing rows keep their meaning: a row that rolled (Saturday or Sunday to Monday) rolls to the next
business day, with no holiday calendar of its own; one that did not roll does not; every clock starts at
receipt, as before. Only `loadpolicy --reset` (or the DPO) brings the seed's new readings in.
"""

from django.db import migrations, models


def forwards(apps, schema_editor):
    DeadlineRule = apps.get_model("requests", "DeadlineRule")
    DeadlineRule.objects.filter(rolls_to_working_day=True).update(roll="business_day")


def backwards(apps, schema_editor):
    DeadlineRule = apps.get_model("requests", "DeadlineRule")
    DeadlineRule.objects.exclude(roll="none").update(rolls_to_working_day=True)


class Migration(migrations.Migration):
    dependencies = [
        ("requests", "0002_fulfilment"),
    ]

    operations = [
        migrations.AddField(
            model_name="deadlinerule",
            name="clock_starts",
            field=models.CharField(
                choices=[
                    ("receipt", "at receipt of the request"),
                    ("verification", "when the proof of identity asked for arrives (or at receipt, if later)"),
                ],
                default="receipt",
                help_text="When the period starts: at receipt, or when the proof of identity we asked for arrives.",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="deadlinerule",
            name="roll",
            field=models.CharField(
                choices=[
                    ("none", "no roll: it ends that day"),
                    ("sunday_or_holiday", "to the next day that is neither a Sunday nor a public holiday"),
                    ("business_day", "to the next business day (not a Saturday, Sunday or public holiday)"),
                ],
                default="none",
                max_length=20,
                verbose_name="when a period ends on a non-working day",
            ),
        ),
        migrations.AddField(
            model_name="deadlinerule",
            name="holiday_calendar",
            field=models.CharField(
                blank=True,
                help_text=(
                    "Public holidays that count for the roll and for business days: a country or country-region "
                    "code (SG, US-CA, GB-ENG). Empty: the jurisdiction's own, when it covers one country or region; "
                    "none when it covers several."
                ),
                max_length=10,
            ),
        ),
        migrations.RunPython(forwards, backwards),
        migrations.RemoveField(model_name="deadlinerule", name="rolls_to_working_day"),
        migrations.AlterField(
            model_name="deadlinerule",
            name="period_unit",
            field=models.CharField(
                choices=[
                    ("calendar_months", "calendar months"),
                    ("calendar_days", "calendar days"),
                    ("business_days", "business days (Monday to Friday, public holidays excepted)"),
                    ("hours", "hours"),
                ],
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="deadlinerule",
            name="extension_unit",
            field=models.CharField(
                blank=True,
                choices=[
                    ("calendar_months", "calendar months"),
                    ("calendar_days", "calendar days"),
                    ("business_days", "business days (Monday to Friday, public holidays excepted)"),
                    ("hours", "hours"),
                ],
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="deadlinerule",
            name="acknowledge_unit",
            field=models.CharField(
                blank=True,
                choices=[
                    ("calendar_months", "calendar months"),
                    ("calendar_days", "calendar days"),
                    ("business_days", "business days (Monday to Friday, public holidays excepted)"),
                    ("hours", "hours"),
                ],
                max_length=16,
            ),
        ),
        migrations.AddConstraint(
            model_name="deadlinerule",
            constraint=models.CheckConstraint(
                condition=models.Q(("roll__in", ["none", "sunday_or_holiday", "business_day"])),
                name="deadline_rule_known_roll",
            ),
        ),
        migrations.AddConstraint(
            model_name="deadlinerule",
            constraint=models.CheckConstraint(
                condition=models.Q(("clock_starts__in", ["receipt", "verification"])),
                name="deadline_rule_known_clock_start",
            ),
        ),
    ]
