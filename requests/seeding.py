"""The statutory deadline rules (`requests/seed/deadlines.yaml`), loaded with the register by `loadpolicy` (PM-IX-9).

The register cannot import this app, so RequestsConfig registers `read` and `apply` with
`inventory.policy.register_seed_loader`; they run inside `register_policy_load`, after the register's rows
(the rules point at its jurisdictions), with its actor and reset flag. The shape follows `retention.seeding`.

Invariants:
- The file is read and validated whole before anything is written: a bad file raises PolicyFileError
  naming `rules[JURISDICTION/right].field`, and the register load writes nothing either. Every row carries
  a citation.
- Rows are matched on (jurisdiction, right). The loader only creates missing rows: a row that exists is
  never changed, whoever wrote it, because a deadline the DPO set (a shorter internal period, a different
  reading of the law) must survive every deploy. A row that differs from the file is reported as "kept";
  only `reset` writes the file's values back. Rows not in the file are never touched.
- A row whose jurisdiction the loaded register lacks is skipped with a note: a register loaded from another
  file (tests, another deployment) may not define it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError

from inventory.models import Jurisdiction
from inventory.policy import ModelCounts, PolicyFile, PolicyFileError, SeedResult, seed_rows_read

from .models import DeadlineRule, Right

DEFAULT_SEED_PATH = Path(__file__).resolve().parent / "seed" / "deadlines.yaml"
LOADER_NAME = "requests.deadlines"
LABEL = "deadline rules"

VALUES = (
    "period_value",
    "period_unit",
    "extension_value",
    "extension_unit",
    "extensions_allowed",
    "clock_starts",
    "pauses_for_verification",
    "roll",
    "holiday_calendar",
    "acknowledge_value",
    "acknowledge_unit",
    "citation",
    "notes",
)
ALLOWED = {"jurisdiction", "right", *VALUES}
REQUIRED = ("jurisdiction", "period_value", "period_unit", "citation")


@dataclass
class RulesFile:
    path: Path
    rows: list[dict[str, Any]]


def _where(raw: Any, index: int) -> str:
    if isinstance(raw, dict) and raw.get("jurisdiction"):
        return f"rules[{raw['jurisdiction']}/{raw.get('right') or 'every right'}]"
    return f"rules[#{index + 1}]"


def _normalise(raw: Any, index: int, errors: list[str]) -> dict | None:
    where = _where(raw, index)
    if not isinstance(raw, dict):
        errors.append(f"{where}: each rule must be a mapping of field names to values")
        return None
    for key in sorted(set(raw) - ALLOWED):
        errors.append(f"{where}.{key}: unknown field (allowed: {', '.join(sorted(ALLOWED))})")
    for key in REQUIRED:
        if raw.get(key) in (None, ""):
            errors.append(f"{where}.{key}: required")
    row = {"jurisdiction": raw.get("jurisdiction"), "right": raw.get("right") or ""}
    for name in VALUES:
        value = raw.get(name)
        row[name] = DeadlineRule._meta.get_field(name).get_default() if value is None else value
        if isinstance(row[name], str):
            row[name] = " ".join(row[name].split()) if name in ("citation", "notes") else row[name].strip()
    if row["right"] and row["right"] not in Right.values:
        errors.append(f"{where}.right: {row['right']!r} is not a right (one of: {', '.join(Right.values)})")
    rule = DeadlineRule(**{k: row[k] for k in VALUES}, right=row["right"])
    try:
        rule.clean_fields(exclude=["jurisdiction"])
        rule.clean()
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            errors.extend(f"{where}.{name}: {m} (value {row.get(name)!r})" for m in messages)
    if row["extension_value"] and not row["extension_unit"]:
        errors.append(f"{where}.extension_unit: required with an extension")
    if row["acknowledge_value"] is not None and not row["acknowledge_unit"]:
        errors.append(f"{where}.acknowledge_unit: required with an acknowledgement period")
    return row


def rules_file_read(*, path: Path | str | None = None) -> RulesFile:
    """Parse and validate the deadline rules file without touching the database. Raises PolicyFileError."""
    path = Path(path) if path else DEFAULT_SEED_PATH
    raw_rows, errors = seed_rows_read(path)
    rows = []
    for index, raw in enumerate(raw_rows):
        row = _normalise(raw, index, errors)
        if row is not None:
            rows.append(row)
    keys = [(r["jurisdiction"], r["right"]) for r in rows]
    for code, right in sorted({k for k in keys if keys.count(k) > 1}):
        errors.append(f"rules[{code}/{right or 'every right'}]: appears twice (rules are matched on jurisdiction and right)")
    if errors:
        raise PolicyFileError(errors, path)
    return RulesFile(path=path, rows=rows)


def read(policy: PolicyFile, *, path: Path | str | None = None) -> RulesFile:
    """The seed loader's first half: validate the file (no database)."""
    return rules_file_read(path=path)


def apply(rules: RulesFile, *, actor=None, reset: bool = False, policy: PolicyFile | None = None) -> SeedResult:
    """The seed loader's second half, inside the register's transaction: create the missing rules (see the
    module docstring; with `reset`, also write the file's values over rows that differ)."""
    counts = ModelCounts()
    kept: list[str] = []
    notes: list[str] = []
    jurisdictions = {j.code: j for j in Jurisdiction.objects.filter(code__in={r["jurisdiction"] for r in rules.rows})}
    existing = {
        (r.jurisdiction.code, r.right): r
        for r in DeadlineRule.objects.select_related("jurisdiction").filter(jurisdiction__code__in=jurisdictions)
    }
    for row in rules.rows:
        key = (row["jurisdiction"], row["right"])
        label = f"{LABEL}: {row['jurisdiction']} / {row['right'] or 'every right'}"
        if row["jurisdiction"] not in jurisdictions:
            notes.append(f"skipped deadline rule {row['jurisdiction']} / {row['right'] or 'every right'}: not in the register")
            continue
        values = {k: row[k] for k in VALUES}
        rule = existing.get(key)
        if rule is None:
            DeadlineRule.objects.create(jurisdiction=jurisdictions[row["jurisdiction"]], right=row["right"], **values)
            counts.created += 1
        elif all(getattr(rule, k) == v for k, v in values.items()):
            counts.unchanged += 1
        elif reset:
            for name, value in values.items():
                setattr(rule, name, value)
            rule.save()
            counts.updated += 1
        else:
            counts.kept += 1
            kept.append(label)
    return SeedResult(counts={LABEL: counts}, kept=kept, notes=notes)
