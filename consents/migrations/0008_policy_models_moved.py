# The policy models now belong to the `policies` app (its 0001 took them over in the state). Here they
# leave the consents state, and the ledger's policy_version points at policies.PolicyVersion: the same
# table, so the database's foreign key is already right and no SQL runs.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("consents", "0007_consent_event_no_unique_hash"),
        ("policies", "0001_initial"),
    ]

    state_operations = [
        migrations.AlterField(
            model_name="consentevent",
            name="policy_version",
            field=models.ForeignKey(
                blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="policies.policyversion"
            ),
        ),
        migrations.DeleteModel(name="PolicyNoticeDelivery"),
        migrations.DeleteModel(name="PolicyAcceptance"),
        migrations.DeleteModel(name="PolicyVersion"),
    ]

    operations = [migrations.SeparateDatabaseAndState(state_operations=state_operations, database_operations=[])]
