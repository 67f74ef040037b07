"""Loading the seed register (`inventory/seed/policy.yaml`) into the database: `manage.py loadpolicy`.

Invariants:
- Validate first, write second. The whole file is checked (unknown keys, unknown codes referenced, bad
  choices, field formats) before anything is written; a bad file raises `PolicyFileError` naming every
  entry and field at fault, and the database is untouched. Validation needs no database, so start-up
  checks can read the file too (`policy_file_read`).
- One transaction for the whole load, and one audit event for a run that created or updated anything;
  a run that changes nothing writes nothing (so running it at every start-up is free and idempotent).
- Rows are matched on natural keys: `code`; PurposeBasis on (purpose, basis, jurisdiction);
  ProcessingActivity on (purpose, category). Rows that are not in the file are never touched: the DPO's
  own additions survive, and a seeded row the DPO deleted comes back on the next load.
- `seed_digest` is the SHA-256 of the values the loader last wrote (foreign keys and many-to-many links
  as codes). If a row's current values no longer hash to it, someone edited the row after seeding: the
  loader keeps it as it is ("kept (edited by DPO)") unless `reset` is given. A row whose values still
  hash to its digest is brought up to date with the file. A row that already holds exactly the file's
  values counts as unchanged whoever wrote it.
- Apps that depend on the register seed their own rows from their own files through `register_seed_loader`
  (retention's example rules), so the register never imports them. Every loader reads and validates its
  file before anything is written; each applies inside the same transaction, after the register rows it may
  point at, with the same actor and reset flag, and its counts go into the same report and audit event.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction

from privacyops.audit import audit_record

from .models import (
    CollectionSource,
    DataCategory,
    DataStore,
    DataSubjectCategory,
    Jurisdiction,
    LawfulBasis,
    ProcessingActivity,
    Purpose,
    PurposeBasis,
    Recipient,
    RecipientCategory,
    Transfer,
)

DEFAULT_POLICY_PATH = Path(__file__).resolve().parent / "seed" / "policy.yaml"
AUDIT_ACTION = "register.policy_loaded"

# Any fixed 64-bit number: serialises concurrent loads on PostgreSQL (two start-ups at once).
_LOAD_LOCK_KEY = 0x50524956_504F4C59  # "PRIV" "POLY"

_COMMON = ("name", "description", "policy_ref", "dpv", "needs_review", "review_note")


class PolicyFileError(Exception):
    """The seed file is not valid; `errors` lists each problem as `section[entry].field: message`."""

    def __init__(self, errors: list[str], path: Path | None = None):
        self.errors = errors
        self.path = path
        where = f" {path}" if path else ""
        super().__init__(f"The policy file{where} is not valid; nothing was written.\n" + "\n".join(f"  {e}" for e in errors))


# --- What the file may hold -----------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One kind of row in the file: its model, its plain fields, and its links to other sections."""

    key: str
    model: type[models.Model]
    scalars: tuple[str, ...]
    fks: dict[str, str] = field(default_factory=dict)  # field -> section it references
    m2m: dict[str, str] = field(default_factory=dict)
    natural_key: tuple[str, ...] = ("code",)
    required: tuple[str, ...] = ("code", "name")
    parent: str | None = None  # for rows nested under a purpose: the field that points to it

    @property
    def label(self) -> str:
        return str(self.model._meta.verbose_name_plural)


SECTIONS: tuple[Section, ...] = (
    Section("collection_sources", CollectionSource, _COMMON),
    Section(
        "data_categories",
        DataCategory,
        (*_COMMON, "example_fields", "is_system_record"),
        m2m={"sources": "collection_sources"},
    ),
    Section("data_subject_categories", DataSubjectCategory, _COMMON),
    Section("lawful_bases", LawfulBasis, (*_COMMON, "legal_reference")),
    Section("jurisdictions", Jurisdiction, (*_COMMON, "countries", "authority_name", "complaint_url")),
    Section("recipient_categories", RecipientCategory, _COMMON),
    Section(
        "purposes",
        Purpose,
        (*_COMMON, "kind", "position"),
        m2m={"subject_categories": "data_subject_categories"},
    ),
    Section(
        "activities",
        ProcessingActivity,
        ("form", "is_system_record", "note"),
        fks={"purpose": "purposes", "category": "data_categories"},
        natural_key=("purpose", "category"),
        required=("category",),
        parent="purpose",
    ),
    Section(
        "bases",
        PurposeBasis,
        ("condition", "needs_review", "review_note"),
        fks={"purpose": "purposes", "basis": "lawful_bases", "jurisdiction": "jurisdictions"},
        natural_key=("purpose", "basis", "jurisdiction"),
        required=("basis",),
        parent="purpose",
    ),
    Section(
        "recipients",
        Recipient,
        (*_COMMON, "country", "role"),
        fks={"category": "recipient_categories"},
        m2m={"purposes": "purposes", "data_categories": "data_categories"},
        required=("code", "name", "category"),
    ),
    Section(
        "transfers",
        Transfer,
        (*_COMMON, "from_country", "to_country", "mechanism"),
        fks={"recipient": "recipients", "recipient_category": "recipient_categories"},
        m2m={"data_categories": "data_categories"},
        required=("code", "name", "from_country", "to_country"),
    ),
    Section("data_stores", DataStore, (*_COMMON, "owner", "location_country", "kind", "app_label")),
)
_BY_KEY = {s.key: s for s in SECTIONS}
_NESTED = ("activities", "bases")  # rows that live under a purpose in the file
TOP_LEVEL_KEYS = tuple(s.key for s in SECTIONS if s.parent is None)


class _StrictBoolLoader(yaml.SafeLoader):
    """YAML 1.1 reads `NO` (Norway), `ON`, `yes`, `off` as booleans; here only true/false are booleans."""


_StrictBoolLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictBoolLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


# --- Reading and validating -----------------------------------------------------------------------


@dataclass
class PolicyFile:
    """A validated seed file: per section, a list of normalised rows (links still as codes)."""

    path: Path
    digest: str
    rows: dict[str, list[dict[str, Any]]]

    def codes(self, section: str) -> set[str]:
        return {row["code"] for row in self.rows[section]}


def _expected_type(model: type[models.Model], name: str):
    f = model._meta.get_field(name)
    if isinstance(f, models.BooleanField):
        return bool, "true or false"
    if isinstance(f, models.IntegerField):
        return int, "a whole number"
    if isinstance(f, models.JSONField):
        return list, "a list"
    return str, "text"


def _default(model: type[models.Model], name: str):
    return model._meta.get_field(name).get_default()


def _where(section: Section, raw: dict, parent_code: str | None, index: int) -> str:
    if section.parent:
        ident = raw.get(section.natural_key[1], f"#{index + 1}")
        if section.key == "bases" and raw.get("jurisdiction"):
            ident = f"{ident}@{raw['jurisdiction']}"
        return f"purposes[{parent_code}].{section.key}[{ident}]"
    return f"{section.key}[{raw.get('code', f'#{index + 1}')}]"


def _normalise(section: Section, raw: Any, where: str, errors: list[str], parent_code: str | None = None) -> dict | None:
    """Check one entry's keys and types and fill in defaults. Links stay codes; checked later."""
    if not isinstance(raw, dict):
        errors.append(f"{where}: each entry must be a mapping of field names to values")
        return None
    allowed = {"code", *section.scalars, *section.fks, *section.m2m} - ({section.parent} if section.parent else set())
    if section.key == "purposes":
        allowed |= set(_NESTED)
    if section.parent:
        allowed.discard("code")
    for key in sorted(set(raw) - allowed):
        errors.append(f"{where}.{key}: unknown field (allowed: {', '.join(sorted(allowed))})")
    for key in section.required:
        if raw.get(key) in (None, ""):
            errors.append(f"{where}.{key}: required")
    row: dict[str, Any] = {}
    if not section.parent:
        row["code"] = raw.get("code")
        if row["code"] is not None and not isinstance(row["code"], str):
            errors.append(f"{where}.code: must be text")
    for name in section.scalars:
        value = raw.get(name)
        if value is None:
            value = _default(section.model, name)
        else:
            expected, words = _expected_type(section.model, name)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                errors.append(f"{where}.{name}: must be {words}, not {value!r}")
                continue
            if expected is list and not all(isinstance(v, str) for v in value):
                errors.append(f"{where}.{name}: must be a list of codes (text); quote values such as 'NO'")
                continue
        row[name] = value.strip() if isinstance(value, str) else value
    for name in section.fks:
        if name == section.parent:
            row[name] = parent_code
            continue
        value = raw.get(name)
        if value is not None and not isinstance(value, str):
            errors.append(f"{where}.{name}: must be a code (text), not {value!r}")
            value = None
        row[name] = value or None
    for name in section.m2m:
        value = raw.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            errors.append(f"{where}.{name}: must be a list of codes")
            value = []
        if len(set(value)) != len(value):
            errors.append(f"{where}.{name}: lists a code twice")
        row[name] = sorted(set(value))
    return row


def _check_fields(section: Section, row: dict, where: str, errors: list[str]) -> None:
    """Run the model's own field validation (formats, lengths, choices) on an unsaved instance."""
    values = {k: v for k, v in row.items() if k in section.scalars or k == "code"}
    instance = section.model(**values)
    exclude = [f.name for f in section.model._meta.get_fields() if f.name not in values]
    try:
        instance.clean_fields(exclude=exclude)
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            for message in messages:
                errors.append(f"{where}.{name}: {message} (value {row.get(name)!r})")


def _check_links(section: Section, row: dict, where: str, codes: dict[str, set[str]], errors: list[str]) -> None:
    for name, target in {**section.fks, **section.m2m}.items():
        if name == section.parent:
            continue
        values = row[name] if name in section.m2m else [row[name]] if row[name] else []
        noun = str(_BY_KEY[target].model._meta.verbose_name)
        for value in values:
            if value not in codes[target]:
                errors.append(f"{where}.{name}: unknown {noun} code {value!r} (not defined under {target})")


def policy_file_read(*, path: Path | str | None = None) -> PolicyFile:
    """Parse and validate the seed file without touching the database. Raises PolicyFileError."""
    path = Path(path) if path else DEFAULT_POLICY_PATH
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise PolicyFileError([f"cannot read the file: {exc.strerror}"], path) from exc
    try:
        document = yaml.load(content, Loader=_StrictBoolLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PolicyFileError([f"not valid YAML: {exc}"], path) from exc
    if not isinstance(document, dict):
        raise PolicyFileError(["the file must be a mapping of section names to lists"], path)

    errors: list[str] = []
    for key in sorted(set(document) - set(TOP_LEVEL_KEYS)):
        errors.append(f"{key}: unknown section (allowed: {', '.join(TOP_LEVEL_KEYS)})")
    rows: dict[str, list[dict]] = {s.key: [] for s in SECTIONS}
    where_of: dict[int, str] = {}
    for section in SECTIONS:
        if section.parent:
            continue
        entries = document.get(section.key) or []
        if not isinstance(entries, list):
            errors.append(f"{section.key}: must be a list")
            continue
        for index, raw in enumerate(entries):
            where = _where(section, raw if isinstance(raw, dict) else {}, None, index)
            row = _normalise(section, raw, where, errors)
            if row is None:
                continue
            _check_fields(section, row, where, errors)
            rows[section.key].append(row)
            where_of[id(row)] = where
            if section.key != "purposes":
                continue
            for child_key in _NESTED:
                child = _BY_KEY[child_key]
                children = raw.get(child_key) or []
                if not isinstance(children, list):
                    errors.append(f"{where}.{child_key}: must be a list")
                    continue
                for child_index, child_raw in enumerate(children):
                    child_where = _where(child, child_raw if isinstance(child_raw, dict) else {}, row["code"], child_index)
                    child_row = _normalise(child, child_raw, child_where, errors, parent_code=row["code"])
                    if child_row is None:
                        continue
                    _check_fields(child, child_row, child_where, errors)
                    rows[child_key].append(child_row)
                    where_of[id(child_row)] = child_where

    codes = {s.key: {r["code"] for r in rows[s.key] if r.get("code")} for s in SECTIONS if not s.parent}
    for section in SECTIONS:
        seen: set[tuple] = set()
        for row in rows[section.key]:
            where = where_of[id(row)]
            key = tuple(row.get(k) for k in section.natural_key)
            if key in seen:
                errors.append(f"{where}: appears twice (rows are matched on {', '.join(section.natural_key)})")
            seen.add(key)
            _check_links(section, row, where, codes, errors)
    for row in rows["transfers"]:
        if row["from_country"] and row["from_country"] == row["to_country"]:
            errors.append(f"{where_of[id(row)]}.to_country: a transfer must cross a border (same as from_country)")
    if errors:
        raise PolicyFileError(errors, path)
    return PolicyFile(path=path, digest=hashlib.sha256(content).hexdigest(), rows=rows)


# --- Digests: what the loader wrote, and what the row holds now -----------------------------------


def _digest(section: Section, values: dict[str, Any]) -> str:
    canonical = json.dumps({"model": section.model._meta.label_lower, "values": values}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _fk_code(obj: models.Model | None) -> str | None:
    return obj.code if obj is not None else None


def _current_values(section: Section, obj: models.Model) -> dict[str, Any]:
    """The row's values in the same shape as a file row, so the two digests are comparable."""
    values: dict[str, Any] = {}
    if not section.parent:
        values["code"] = obj.code
    for name in section.scalars:
        values[name] = getattr(obj, name)
    for name in section.fks:
        values[name] = _fk_code(getattr(obj, name))
    for name in section.m2m:
        values[name] = sorted(o.code for o in getattr(obj, name).all())
    return values


# --- Applying -------------------------------------------------------------------------------------


@dataclass
class ModelCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    kept: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged, "kept": self.kept}


@dataclass
class LoadReport:
    """What a load did, per model (in load order), and which rows it kept because the DPO edited them."""

    path: Path
    file_digest: str
    reset: bool
    counts: dict[str, ModelCounts]
    kept: list[str] = field(default_factory=list)
    audit_event_id: int | None = None
    # Rows seeded by other apps' loaders (register_seed_loader), per model label; not in `totals`.
    extensions: dict[str, ModelCounts] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def totals(self) -> ModelCounts:
        total = ModelCounts()
        for c in self.counts.values():
            total.created += c.created
            total.updated += c.updated
            total.unchanged += c.unchanged
            total.kept += c.kept
        return total

    @property
    def changed(self) -> bool:
        return any(c.created or c.updated for c in [*self.counts.values(), *self.extensions.values()])

    def lines(self) -> list[str]:
        def line(c: ModelCounts) -> str:
            return f"{c.created} created, {c.updated} updated, {c.unchanged} unchanged, {c.kept} kept (edited by DPO)"

        width = max(len(label) for label in [*self.counts, *self.extensions])
        out = [f"{label.capitalize():<{width}}  {line(c)}" for label, c in self.counts.items()]
        out.append(f"{'Total':<{width}}  {line(self.totals)}")
        out.extend(f"{label.capitalize():<{width}}  {line(c)}" for label, c in self.extensions.items())
        out.extend(f"kept (edited by DPO): {k}" for k in self.kept)
        out.extend(self.notes)
        return out


# --- Other apps' seed rows ------------------------------------------------------------------------


@dataclass
class SeedResult:
    """What one extension loader did: counts per model label, rows kept as edited, and remarks."""

    counts: dict[str, ModelCounts]
    kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SeedLoader:
    """An app's own seed file, loaded with the register.

    `read(policy)` parses and validates the app's file (raising PolicyFileError, writing nothing) and returns
    what `apply(prepared, *, actor, reset, policy)` then writes, inside the register's transaction.
    """

    name: str
    read: Callable[[PolicyFile], Any]
    apply: Callable[..., SeedResult]


_seed_loaders: dict[str, SeedLoader] = {}


def register_seed_loader(name: str, *, read: Callable[[PolicyFile], Any], apply: Callable[..., SeedResult]) -> None:
    """Load an app's seed rows with every `loadpolicy` (see the module docstring). Registering a name again
    replaces it."""
    _seed_loaders[name] = SeedLoader(name=name, read=read, apply=apply)


def seed_rows_read(path: Path, *, section: str = "rules") -> tuple[list, list[str]]:
    """The raw rows under `section` of an app's seed file, and the errors of the file's shape (unknown
    sections), for the app's loader to add its own row checks to. Raises PolicyFileError when the file
    cannot be read, is not YAML, or is not a mapping with a list under `section`."""
    try:
        document = yaml.safe_load(path.read_bytes())
    except OSError as exc:
        raise PolicyFileError([f"cannot read the file: {exc.strerror}"], path) from exc
    except yaml.YAMLError as exc:
        raise PolicyFileError([f"not valid YAML: {exc}"], path) from exc
    if not isinstance(document, dict) or not isinstance(document.get(section, []), list):
        raise PolicyFileError([f"the file must be a mapping with a list under `{section}`"], path)
    errors = [f"{key}: unknown section (allowed: {section})" for key in sorted(set(document) - {section})]
    return document.get(section) or [], errors


def unregister_seed_loader(name: str) -> None:
    _seed_loaders.pop(name, None)


def seed_loaders() -> list[SeedLoader]:
    return list(_seed_loaders.values())


def _lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOAD_LOCK_KEY])


class _Loader:
    def __init__(self, policy: PolicyFile, reset: bool):
        self.policy = policy
        self.reset = reset
        self.objects: dict[str, dict] = {}  # section -> natural key -> saved instance
        self.counts = {s.label: ModelCounts() for s in SECTIONS}
        self.kept: list[str] = []

    def _existing(self, section: Section) -> dict[tuple, models.Model]:
        qs = section.model.objects.all()
        if section.fks:
            qs = qs.select_related(*section.fks)
        if section.m2m:
            qs = qs.prefetch_related(*section.m2m)
        if section.parent:
            qs = qs.filter(purpose__code__in=self.policy.codes("purposes"))
        else:
            qs = qs.filter(code__in=self.policy.codes(section.key))
        return {tuple(_current_values(section, o)[k] for k in section.natural_key): o for o in qs}

    def _write(self, section: Section, obj: models.Model, row: dict, digest: str) -> models.Model:
        for name in section.scalars:
            setattr(obj, name, row[name])
        if not section.parent:
            obj.code = row["code"]
        for name, target in section.fks.items():
            setattr(obj, name, self.objects[target][(row[name],)] if row[name] else None)
        obj.seed_digest = digest
        obj.save()
        for name, target in section.m2m.items():
            getattr(obj, name).set([self.objects[target][(code,)] for code in row[name]])
        return obj

    def apply(self, section: Section) -> None:
        existing = self._existing(section)
        counts = self.counts[section.label]
        saved = self.objects.setdefault(section.key, {})
        for row in self.policy.rows[section.key]:
            key = tuple(row[k] for k in section.natural_key)
            values = {
                k: row[k] for k in (["code"] if not section.parent else []) + [*section.scalars, *section.fks, *section.m2m]
            }
            digest = _digest(section, values)
            obj = existing.get(key)
            if obj is None:
                saved[key] = self._write(section, section.model(), row, digest)
                counts.created += 1
                continue
            current = _digest(section, _current_values(section, obj))
            if current == digest:
                if obj.seed_digest != digest:  # same values, written by someone else or an older seed
                    section.model.objects.filter(pk=obj.pk).update(seed_digest=digest)
                counts.unchanged += 1
            elif current == obj.seed_digest or self.reset:
                self._write(section, obj, row, digest)
                counts.updated += 1
            else:
                counts.kept += 1
                self.kept.append(f"{section.label}: {' / '.join(str(k) for k in key if k)}")
            saved[key] = obj


def register_policy_load(*, actor=None, path: Path | str | None = None, reset: bool = False) -> LoadReport:
    """Load the seed register (POLICY-MAP I–V) into the database; see the module docstring.

    Raises PolicyFileError, with nothing written, when the file is not valid.
    """
    policy = policy_file_read(path=path)
    extensions = [(ext, ext.read(policy)) for ext in seed_loaders()]  # every file valid before any write
    loader = _Loader(policy, reset)
    with transaction.atomic():
        _lock()
        for section in SECTIONS:
            loader.apply(section)
        report = LoadReport(path=policy.path, file_digest=policy.digest, reset=reset, counts=loader.counts, kept=loader.kept)
        for ext, prepared in extensions:
            result = ext.apply(prepared, actor=actor, reset=reset, policy=policy)
            report.extensions.update(result.counts)
            report.kept.extend(result.kept)
            report.notes.extend(result.notes)
        if report.changed:
            event = audit_record(
                actor=actor,
                action=AUDIT_ACTION,
                details={
                    "counts": {label: c.as_dict() for label, c in [*report.counts.items(), *report.extensions.items()]},
                    "reset": reset,
                    "file_digest": policy.digest,
                },
            )
            report.audit_event_id = event.pk
    return report
