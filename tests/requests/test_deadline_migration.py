"""PM-IX-9: the migration that turned `rolls_to_working_day` into `roll` keeps what existing rows meant.

It runs the real migration on the test database: back to requests 0002, rows written with the old shape,
forward again, and the rows read with the new one.
"""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("requests", "0002_fulfilment")
AFTER = ("requests", "0003_deadline_rule_roll_clock_start")


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_pm_ix_9_existing_deadline_rules_keep_their_meaning_across_the_migration():
    old = _migrate([BEFORE])
    Jurisdiction = old.get_model("inventory", "Jurisdiction")
    DeadlineRule = old.get_model("requests", "DeadlineRule")
    values = {"period_value": 1, "period_unit": "calendar_months", "citation": "test"}
    for code, rolls, pauses in [("XA", True, True), ("XB", False, False)]:
        jurisdiction = Jurisdiction.objects.create(code=code, name=code)
        DeadlineRule.objects.create(
            jurisdiction=jurisdiction, rolls_to_working_day=rolls, pauses_for_verification=pauses, **values
        )
    try:
        new = _migrate([AFTER])
        rows = {
            r.jurisdiction.code: (r.roll, r.clock_starts, r.pauses_for_verification, r.holiday_calendar)
            for r in new.get_model("requests", "DeadlineRule").objects.select_related("jurisdiction")
        }
        assert rows == {"XA": ("business_day", "receipt", True, ""), "XB": ("none", "receipt", False, "")}
        # And back: the boolean comes back from the choice.
        back = _migrate([BEFORE])
        rolled = dict(
            back.get_model("requests", "DeadlineRule").objects.values_list("jurisdiction__code", "rolls_to_working_day")
        )
        assert rolled == {"XA": True, "XB": False}
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
