"""Periodic tasks: defined in code (settings.PERIODIC_TASKS), written to django-celery-beat's tables.

Beat reads its schedule from the database so the DPO can pause or reschedule a job in the admin; the
code stays the source of what jobs exist. To let both hold, each row we write carries, in its
description, a fingerprint of the code definition it was written from:
- code unchanged since the last sync -> the row is left alone, even if the DPO edited it (reported);
- code changed -> the row is rewritten from code (a deploy wins over an older admin edit);
- a task no longer in code -> disabled, never deleted, so its history and run counts stay;
- `force` rewrites every row that differs from code.
Rows without our marker are someone else's and are never touched, unless code defines the same name,
in which case code adopts them. A run is idempotent: the second run changes nothing.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import dataclass, field

from celery.schedules import crontab
from celery.schedules import schedule as celery_schedule
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from .audit import audit_record

MARKER = "[code:"
REMOVED = "removed"
# Options of an entry that map one to one onto PeriodicTask columns.
_OPTION_FIELDS = {"queue", "exchange", "routing_key", "priority", "expire_seconds"}


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: dict[str, list[str]] = field(default_factory=dict)
    adopted: list[str] = field(default_factory=list)
    kept_admin_edits: dict[str, list[str]] = field(default_factory=dict)
    disabled: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.adopted or self.disabled)


def _schedule_spec(value) -> dict:
    """A plain, comparable form of a schedule from code."""
    if isinstance(value, crontab):
        return {
            "crontab": {
                "minute": str(value._orig_minute),
                "hour": str(value._orig_hour),
                "day_of_week": str(value._orig_day_of_week),
                "day_of_month": str(value._orig_day_of_month),
                "month_of_year": str(value._orig_month_of_year),
                "timezone": str(value.tz),
            }
        }
    if isinstance(value, celery_schedule):
        value = value.run_every
    if isinstance(value, datetime.timedelta):
        seconds = int(value.total_seconds())
        if seconds <= 0 or seconds != value.total_seconds():
            raise ValueError(f"an interval must be a positive whole number of seconds, not {value}")
        for period, size in (
            (IntervalSchedule.DAYS, 86400),
            (IntervalSchedule.HOURS, 3600),
            (IntervalSchedule.MINUTES, 60),
            (IntervalSchedule.SECONDS, 1),
        ):
            if seconds % size == 0:
                return {"interval": {"every": seconds // size, "period": period}}
    raise ValueError(f"unsupported schedule {value!r}: use celery.schedules.crontab or a timedelta")


def _desired(name: str, entry: dict) -> dict:
    unknown = set(entry) - {"task", "schedule", "options", "args", "kwargs", "enabled", "description"}
    options = dict(entry.get("options") or {})
    unknown |= {f"options.{key}" for key in set(options) - _OPTION_FIELDS - {"headers"}}
    if unknown:
        raise ValueError(f"periodic task {name!r}: unknown keys {sorted(unknown)}")
    return {
        "task": entry["task"],
        "schedule": _schedule_spec(entry["schedule"]),
        "args": json.dumps(list(entry.get("args", []))),
        "kwargs": json.dumps(dict(entry.get("kwargs", {})), sort_keys=True),
        "queue": options.get("queue"),
        "exchange": options.get("exchange"),
        "routing_key": options.get("routing_key"),
        "priority": options.get("priority"),
        "expire_seconds": options.get("expire_seconds"),
        "headers": json.dumps(options.get("headers") or {}, sort_keys=True),
        "enabled": bool(entry.get("enabled", True)),
        "text": entry.get("description", ""),
    }


def _fingerprint(desired: dict) -> str:
    return hashlib.sha256(json.dumps(desired, sort_keys=True).encode()).hexdigest()[:16]


def _fingerprint_of(row: PeriodicTask) -> str | None:
    if not row.description.startswith(MARKER):
        return None
    return row.description[len(MARKER) :].split("]", 1)[0]


def _schedule_row(spec: dict):
    # Schedule rows are shared by every task on the same timing (the beat admin edits them in place),
    # and nothing unique-constrains them, so reuse the oldest match rather than get_or_create.
    kind, model = ("crontab", CrontabSchedule) if "crontab" in spec else ("interval", IntervalSchedule)
    row = model.objects.filter(**spec[kind]).order_by("pk").first() or model.objects.create(**spec[kind])
    return {"crontab": None, "interval": None, kind: row}


def _differences(row: PeriodicTask, desired: dict, schedule: dict) -> list[str]:
    current = {
        "task": row.task,
        "crontab": row.crontab_id,
        "interval": row.interval_id,
        "solar": row.solar_id,
        "clocked": row.clocked_id,
        "args": row.args,
        "kwargs": row.kwargs,
        "queue": row.queue,
        "exchange": row.exchange,
        "routing_key": row.routing_key,
        "priority": row.priority,
        "expire_seconds": row.expire_seconds,
        "headers": row.headers,
        "enabled": row.enabled,
        "one_off": row.one_off,
    }
    wanted = {key: desired[key] for key in current if key in desired}
    wanted.update(
        crontab=schedule["crontab"].pk if schedule["crontab"] else None,
        interval=schedule["interval"].pk if schedule["interval"] else None,
        solar=None,
        clocked=None,
        one_off=False,
    )
    # PeriodicTask.save() stores empty strings as NULL and the JSON columns as text; compare like for like.
    empty = {"args": "[]", "kwargs": "{}", "headers": "{}"}
    changed = []
    for key, value in wanted.items():
        have = current[key]
        if key in empty:
            have, value = (json.dumps(json.loads(v or empty[key]), sort_keys=True) for v in (have, value))
        if (have or None) != (value or None):
            changed.append(key)
    return changed


def _write(row: PeriodicTask, desired: dict, schedule: dict, fingerprint: str) -> None:
    row.task = desired["task"]
    row.crontab = schedule["crontab"]
    row.interval = schedule["interval"]
    row.solar = row.clocked = None
    row.one_off = False
    for key in ("args", "kwargs", "queue", "exchange", "routing_key", "priority", "expire_seconds", "headers", "enabled"):
        setattr(row, key, desired[key])
    note = "Defined in settings.PERIODIC_TASKS; `manage.py sync_schedules` keeps it in step with code."
    row.description = f"{MARKER}{fingerprint}] {note} {desired['text']}".strip()
    row.save()


def periodic_tasks_sync(*, tasks: dict, force: bool = False) -> SyncReport:
    """Write `tasks` (name -> {task, schedule, options, ...}) to the beat tables; see the module docstring."""
    report = SyncReport()
    desired_all = {name: _desired(name, entry) for name, entry in tasks.items()}
    with transaction.atomic():
        existing = {row.name: row for row in PeriodicTask.objects.select_for_update().filter(name__in=list(desired_all))}
        for name, desired in desired_all.items():
            fingerprint = _fingerprint(desired)
            schedule = _schedule_row(desired["schedule"])
            row = existing.get(name)
            if row is None:
                _write(PeriodicTask(name=name), desired, schedule, fingerprint)
                report.created.append(name)
                continue
            differences = _differences(row, desired, schedule)
            ours = _fingerprint_of(row)
            if ours is None:
                _write(row, desired, schedule, fingerprint)
                report.adopted.append(name)
            elif ours != fingerprint or (force and differences):
                _write(row, desired, schedule, fingerprint)
                report.updated[name] = differences or ["description"]
            elif differences:
                report.kept_admin_edits[name] = differences
            else:
                report.unchanged.append(name)

        removed_note = f"{MARKER}{REMOVED}] No longer defined in code; disabled by `manage.py sync_schedules`."
        for row in (
            PeriodicTask.objects.select_for_update().filter(description__startswith=MARKER).exclude(name__in=list(desired_all))
        ):
            if row.enabled or _fingerprint_of(row) != REMOVED:
                row.enabled = False
                row.description = removed_note
                row.save()
                report.disabled.append(row.name)

        if report.changed:
            audit_record(
                actor=None,
                action="schedules.synced",
                details={
                    "created": report.created,
                    "updated": sorted(report.updated),
                    "adopted": report.adopted,
                    "disabled": report.disabled,
                },
            )
    return report
