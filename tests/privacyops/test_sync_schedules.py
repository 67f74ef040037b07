"""`manage.py sync_schedules`: the beat schedule follows settings.PERIODIC_TASKS."""

import datetime
from io import StringIO

import pytest
from celery.schedules import crontab
from django.core.management import CommandError, call_command
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from privacyops.models import AuditEvent

pytestmark = pytest.mark.django_db

ANCHOR = {"task": "privacyops.tasks.audit_anchor_head", "schedule": crontab(minute=5, hour=0), "options": {"queue": "default"}}
EVERY_15_MIN = {"task": "privacyops.tasks.audit_anchor_head", "schedule": datetime.timedelta(minutes=15), "options": {}}


def _sync(*args) -> str:
    out = StringIO()
    call_command("sync_schedules", *args, stdout=out)
    return out.getvalue()


def _rows():
    return list(
        PeriodicTask.objects.order_by("name").values_list(
            "name", "task", "crontab_id", "interval_id", "queue", "enabled", "description"
        )
    )


def test_sync_creates_the_tasks_of_settings(settings):
    settings.PERIODIC_TASKS = {"anchor": ANCHOR, "often": EVERY_15_MIN}
    out = _sync()
    assert "created: anchor" in out and "created: often" in out
    anchor = PeriodicTask.objects.get(name="anchor")
    assert anchor.task == "privacyops.tasks.audit_anchor_head" and anchor.queue == "default" and anchor.enabled
    assert (anchor.crontab.minute, anchor.crontab.hour, anchor.crontab.day_of_week) == ("5", "0", "*")
    assert str(anchor.crontab.timezone) == "UTC"
    often = PeriodicTask.objects.get(name="often")
    assert (often.interval.every, often.interval.period) == (15, IntervalSchedule.MINUTES)
    assert AuditEvent.objects.filter(action="schedules.synced").count() == 1


def test_sync_twice_leaves_the_same_rows(settings):
    settings.PERIODIC_TASKS = {"anchor": ANCHOR, "often": EVERY_15_MIN}
    _sync()
    rows, crontabs, intervals = _rows(), CrontabSchedule.objects.count(), IntervalSchedule.objects.count()
    out = _sync()
    assert "0 created, 0 updated, 0 disabled, 2 unchanged." in out
    assert _rows() == rows
    assert (CrontabSchedule.objects.count(), IntervalSchedule.objects.count()) == (crontabs, intervals)
    assert AuditEvent.objects.filter(action="schedules.synced").count() == 1  # a no-op run is not an event


def test_sync_updates_a_task_whose_schedule_changed_in_code(settings):
    settings.PERIODIC_TASKS = {"anchor": ANCHOR}
    _sync()
    settings.PERIODIC_TASKS = {"anchor": {**ANCHOR, "schedule": crontab(minute=30, hour=3)}}
    out = _sync()
    assert "updated: anchor (crontab)" in out
    anchor = PeriodicTask.objects.get(name="anchor")
    assert (anchor.crontab.minute, anchor.crontab.hour) == ("30", "3")
    assert PeriodicTask.objects.count() == 1


def test_sync_switches_between_crontab_and_interval(settings):
    settings.PERIODIC_TASKS = {"anchor": ANCHOR}
    _sync()
    settings.PERIODIC_TASKS = {"anchor": {**ANCHOR, "schedule": datetime.timedelta(hours=6)}}
    _sync()
    anchor = PeriodicTask.objects.get(name="anchor")
    assert anchor.crontab is None and (anchor.interval.every, anchor.interval.period) == (6, IntervalSchedule.HOURS)


def test_sync_disables_but_keeps_a_task_removed_from_code(settings):
    settings.PERIODIC_TASKS = {"anchor": ANCHOR, "often": EVERY_15_MIN}
    _sync()
    settings.PERIODIC_TASKS = {"anchor": ANCHOR}
    out = _sync()
    assert "disabled: often (no longer in code)" in out
    often = PeriodicTask.objects.get(name="often")
    assert often.enabled is False
    assert "1 disabled" not in _sync()  # already disabled: the next run leaves it be


def test_sync_brings_back_a_task_that_returns_to_code(settings):
    settings.PERIODIC_TASKS = {"anchor": ANCHOR, "often": EVERY_15_MIN}
    _sync()
    settings.PERIODIC_TASKS = {"anchor": ANCHOR}
    _sync()
    settings.PERIODIC_TASKS = {"anchor": ANCHOR, "often": EVERY_15_MIN}
    assert "updated: often" in _sync()
    assert PeriodicTask.objects.get(name="often").enabled is True


def test_sync_never_touches_tasks_it_did_not_create(settings):
    by_hand = PeriodicTask.objects.create(
        name="made in the admin",
        task="privacyops.tasks.audit_anchor_head",
        interval=IntervalSchedule.objects.create(every=1, period="days"),
    )
    settings.PERIODIC_TASKS = {"anchor": ANCHOR}
    _sync()
    by_hand.refresh_from_db()
    assert by_hand.enabled is True and by_hand.description == ""


def test_sync_keeps_an_admin_edit_until_the_code_of_that_task_changes(settings):
    settings.PERIODIC_TASKS = {"anchor": ANCHOR}
    _sync()
    anchor = PeriodicTask.objects.get(name="anchor")
    anchor.enabled = False  # the DPO pauses the job in the admin
    anchor.save()
    out = _sync()
    assert "kept: anchor differs from code in enabled" in out
    assert PeriodicTask.objects.get(name="anchor").enabled is False
    assert "updated: anchor (enabled)" in _sync("--force")
    assert PeriodicTask.objects.get(name="anchor").enabled is True


def test_sync_rejects_an_unknown_option(settings):
    settings.PERIODIC_TASKS = {"anchor": {**ANCHOR, "options": {"queu": "default"}}}
    with pytest.raises(CommandError, match=r"options\.queu"):
        _sync()
    assert not PeriodicTask.objects.exists()


def test_the_project_schedule_syncs_the_daily_anchor():
    _sync()
    anchor = PeriodicTask.objects.get(task="privacyops.tasks.audit_anchor_head")
    assert anchor.enabled and anchor.queue == "default"
    assert (anchor.crontab.minute, anchor.crontab.hour) == ("5", "0")
