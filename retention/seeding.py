"""The example retention rules (`retention/seed/rules.yaml`), loaded with the register by `loadpolicy`.

The register cannot import this app (retention depends on inventory, not the reverse), so RetentionConfig
registers `read` and `apply` as a seed loader with `inventory.policy.register_seed_loader`; they run
inside `register_policy_load`, after the register's rows, with its actor and reset flag.

Invariants:
- A seeded rule is never enabled and never confirmed by the loader: the file may not even say `enabled`,
  and a rule the loader creates or rewrites is disabled and unconfirmed. Only the DPO's "Confirm" in the
  workbench makes a rule run (PM-VI-1; the database refuses an enabled rule without a confirmation).
- The file is read and validated whole before anything is written: a bad file raises PolicyFileError
  naming `rules[code].field` and the register load writes nothing either. The rules are also checked
  with the workbench's own `rule_validate` (which needs the register, so it runs in `apply`, before the
  first rule is written; an error there rolls the whole load back).
- Rules are matched on `code`. `seed_digest` is the SHA-256 of the values the loader last wrote. A rule
  whose values no longer hash to it, or that a DPO has confirmed, is kept as it is ("kept (edited by
  DPO)") unless reset is given; a reset that changes a confirmed rule's values also withdraws its
  confirmation, so a changed rule never runs unconfirmed. Rules not in the file are never touched.
- A rule whose category (or store) the loaded register does not define is skipped with a note, not an
  error: a register loaded from another file (tests, another deployment) may lack the categories. The
  project's own files are checked against each other by tests/retention/test_seed_rules.py.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError

from inventory.models import DataCategory, DataStore
from inventory.policy import ModelCounts, PolicyFile, PolicyFileError, SeedResult, seed_rows_read

from .models import RetentionRule
from .periods import parse_period
from .services import rule_validate

DEFAULT_RULES_PATH = Path(__file__).resolve().parent / "seed" / "rules.yaml"
LOADER_NAME = "retention.rules"
LABEL = "retention rules"

SCALARS = ("name", "description", "period", "counts_from", "timestamp_field", "action", "policy_ref")
LINKS = ("category", "store")
ALLOWED = {"code", *SCALARS, *LINKS}
REQUIRED = ("code", "name", "category", "period", "action")


@dataclass
class RulesFile:
    path: Path
    rows: list[dict[str, Any]]


def _period_error(value: str) -> str | None:
    """None when `value` is a period the engine accepts (its own parser, so seed and engine agree)."""
    try:
        parse_period(value)
    except ValidationError as exc:
        return exc.messages[0]
    return None


def _normalise(raw: Any, index: int, errors: list[str]) -> dict | None:
    where = f"rules[{raw.get('code', f'#{index + 1}') if isinstance(raw, dict) else f'#{index + 1}'}]"
    if not isinstance(raw, dict):
        errors.append(f"{where}: each rule must be a mapping of field names to values")
        return None
    if "enabled" in raw or "confirmed" in raw:
        errors.append(f"{where}.enabled: seeded rules are never enabled; the DPO confirms each rule in the workbench")
    for key in sorted(set(raw) - ALLOWED - {"enabled", "confirmed"}):
        errors.append(f"{where}.{key}: unknown field (allowed: {', '.join(sorted(ALLOWED))})")
    for key in REQUIRED:
        if raw.get(key) in (None, ""):
            errors.append(f"{where}.{key}: required")
    row: dict[str, Any] = {"code": raw.get("code")}
    for name in (*SCALARS, *LINKS):
        value = raw.get(name)
        if value is None:
            value = RetentionRule._meta.get_field(name).get_default() if name in SCALARS else None
        if value is not None and not isinstance(value, str):
            errors.append(f"{where}.{name}: must be text, not {value!r}")
            value = None
        row[name] = value.strip() if isinstance(value, str) else value
    if row["policy_ref"] is None:
        row["policy_ref"] = ""
    values = {k: row[k] for k in ("code", *SCALARS) if row[k] is not None}
    instance = RetentionRule(**values)
    try:
        instance.clean_fields(exclude=[f.name for f in RetentionRule._meta.get_fields() if f.name not in values])
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            errors.extend(f"{where}.{name}: {m} (value {row.get(name)!r})" for m in messages)
    if row["period"]:
        problem = _period_error(row["period"])
        if problem:
            errors.append(f"{where}.period: {problem} (value {row['period']!r})")
    if (row["counts_from"] == RetentionRule.CountsFrom.TIMESTAMP) != bool(row["timestamp_field"]):
        errors.append(f"{where}.timestamp_field: name it exactly when counts_from is 'timestamp'")
    return row


def rules_file_read(*, path: Path | str | None = None) -> RulesFile:
    """Parse and validate the rules file without touching the database. Raises PolicyFileError."""
    path = Path(path) if path else DEFAULT_RULES_PATH
    raw_rows, errors = seed_rows_read(path)
    rows = []
    for index, raw in enumerate(raw_rows):
        row = _normalise(raw, index, errors)
        if row is not None:
            rows.append(row)
    codes = [r["code"] for r in rows if r["code"]]
    for code in sorted({c for c in codes if codes.count(c) > 1}):
        errors.append(f"rules[{code}]: appears twice (rules are matched on code)")
    if errors:
        raise PolicyFileError(errors, path)
    return RulesFile(path=path, rows=rows)


# --- Applying -------------------------------------------------------------------------------------


def _digest(values: dict[str, Any]) -> str:
    canonical = json.dumps({"model": "retention.retentionrule", "values": values}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _file_values(row: dict) -> dict[str, Any]:
    return {k: row[k] for k in ("code", *SCALARS, *LINKS)}


def _current_values(rule: RetentionRule) -> dict[str, Any]:
    values = {"code": rule.code, **{k: getattr(rule, k) for k in SCALARS}}
    values["category"] = rule.category.code
    values["store"] = rule.store.code if rule.store_id else None
    return values


def read(policy: PolicyFile, *, path: Path | str | None = None) -> RulesFile:
    """The seed-loader's first half: validate the rules file (no database)."""
    return rules_file_read(path=path)


def apply(rules: RulesFile, *, actor=None, reset: bool = False, policy: PolicyFile | None = None) -> SeedResult:
    """The seed-loader's second half, inside the register's transaction: create or update the example rules.

    PM-VI-1: never enables or confirms a rule (see the module docstring).
    """
    counts = ModelCounts()
    kept: list[str] = []
    notes: list[str] = []
    to_write: list[RetentionRule] = []
    categories = {c.code: c for c in DataCategory.objects.filter(code__in={r["category"] for r in rules.rows})}
    stores = {s.code: s for s in DataStore.objects.filter(code__in={r["store"] for r in rules.rows if r["store"]})}
    existing = {
        r.code: r
        for r in RetentionRule.objects.select_related("category", "store").filter(code__in=[r["code"] for r in rules.rows])
    }
    for row in rules.rows:
        if row["category"] not in categories or (row["store"] and row["store"] not in stores):
            missing = row["category"] if row["category"] not in categories else row["store"]
            notes.append(f"skipped retention rule {row['code']}: {missing} is not in the register")
            continue
        values = _file_values(row)
        digest = _digest(values)
        rule = existing.get(row["code"])
        if rule is not None:
            current = _digest(_current_values(rule))
            if current == digest:
                if rule.seed_digest != digest:
                    RetentionRule.objects.filter(pk=rule.pk).update(seed_digest=digest)
                counts.unchanged += 1
                continue
            edited = current != rule.seed_digest or rule.confirmed_at is not None
            if edited and not reset:
                counts.kept += 1
                kept.append(f"{LABEL}: {rule.code}")
                continue
        else:
            rule = RetentionRule()
        for name in ("code", *SCALARS):
            setattr(rule, name, row[name])
        rule.category = categories[row["category"]]
        rule.store = stores[row["store"]] if row["store"] else None
        # The file's values changed what the rule does: it runs again only after a new confirmation.
        rule.enabled = False
        rule.confirmed_at = None
        rule.confirmed_by = None
        rule.seed_digest = digest
        to_write.append(rule)
    # The same checks as a rule saved in the workbench (e.g. "anonymise" only on rows linked directly to
    # the account), all before the first write; an error undoes the whole load.
    errors = []
    for rule in to_write:
        try:
            rule_validate(rule)
        except ValidationError as exc:
            errors.extend(f"rules[{rule.code}].{name}: {m}" for name, ms in exc.message_dict.items() for m in ms)
    if errors:
        raise PolicyFileError(errors, rules.path)
    for rule in to_write:
        if rule.pk is None:
            counts.created += 1
        else:
            counts.updated += 1
        rule.save()
    return SeedResult(counts={LABEL: counts}, kept=kept, notes=notes)
