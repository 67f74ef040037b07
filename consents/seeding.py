"""The consents app's seed rows (`consents/seed/consents.yaml`), loaded with the register by `loadpolicy`.

Consent purposes, their notice texts, the cookie inventory and the policy version the service starts
from. The register cannot import this app, so ConsentsConfig registers `read` and `apply` with
`inventory.policy.register_seed_loader`; they run inside `register_policy_load`, after the register's rows,
with its actor and reset flag. The shape follows `retention.seeding`.

Invariants:
- The file is read and validated whole before anything is written: a bad file raises PolicyFileError
  naming `section[entry].field`, and the register load writes nothing either. Checks that need the
  database (a notice text that differs from the stored one) also run before the first write of `apply`;
  an error there rolls the whole load back.
- Purposes (on `code`), cookies (on `name`, `provider`) and policy versions (on `label`) follow the
  register's rule: `seed_digest` is the SHA-256 of the values the loader last wrote; a row whose values no
  longer hash to it was edited by the DPO and is kept ("kept (edited by DPO)") unless reset is given.
  Rows not in the file are never touched.
- Notices are immutable (the hash in every consent event must point at text we still hold): the loader
  creates a missing (purpose, version, language) notice and never rewrites one, reset or not. A file text
  that differs from the stored notice of the same version is an error telling the DPO to add a version:
  loading on would leave the file claiming a wording nobody was shown.
- A published policy version keeps its label, dates and publication for ever; the loader may only bring
  its summary and link up to date (same digest rule). A version the file marks `published` is created
  published *and* notified: it is the baseline the service starts from, so nobody is e-mailed about it.
  Later versions are published in the workbench (`policies.services.policy_version_publish`), which sends
  the notices. The loader never touches a version's full text (the DPO pastes it in the workbench).
- A purpose whose register purpose the loaded register lacks is skipped with a note, with its notices and
  cookies: a register loaded from another file (tests, another deployment) may not define it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from inventory.models import Purpose
from inventory.policy import ModelCounts, PolicyFile, PolicyFileError, SeedResult
from policies.models import PolicyVersion
from retention.periods import parse_period

from .models import ConsentNotice, ConsentPurpose, CookieInventory

DEFAULT_SEED_PATH = Path(__file__).resolve().parent / "seed" / "consents.yaml"
LOADER_NAME = "consents.seed"

LABEL_PURPOSES = "consent purposes"
LABEL_NOTICES = "consent notices"
LABEL_COOKIES = "cookies"
LABEL_VERSIONS = "policy versions"

PURPOSE_SCALARS = (
    "name",
    "description",
    "is_necessary",
    "cookie_category",
    "consequences",
    "ends_service",
    "is_sale_or_sharing",
    "lifetime",
    "dpv",
    "policy_ref",
    "position",
)
PURPOSE_REQUIRED = ("code", "name", "description", "purpose")
PURPOSE_ALLOWED = {"code", "purpose", "notices", *PURPOSE_SCALARS}

NOTICE_ALLOWED = {"version", "language", "text"}

COOKIE_SCALARS = ("kind", "party", "provider", "duration", "description")
COOKIE_REQUIRED = ("name", "category", "duration", "description")
COOKIE_ALLOWED = {"name", "category", *COOKIE_SCALARS}

VERSION_REQUIRED = ("label", "last_updated", "effective_at", "summary")
VERSION_ALLOWED = {*VERSION_REQUIRED, "url", "published"}

SECTIONS = ("purposes", "cookies", "policy_versions")


class _TextLoader(yaml.SafeLoader):
    """Only true/false are booleans (YAML 1.1 reads `NO`, `on`, `yes` as booleans) and dates stay text, so
    every value is checked here with a message that names its field."""


_TextLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp"}]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_TextLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


@dataclass
class SeedFile:
    path: Path
    purposes: list[dict[str, Any]]
    notices: list[dict[str, Any]]  # each with its purpose code
    cookies: list[dict[str, Any]]
    versions: list[dict[str, Any]]


# --- Reading and validating -----------------------------------------------------------------------


def _expected(model, name: str) -> tuple[type, str]:
    f = model._meta.get_field(name)
    if isinstance(f, models.BooleanField):
        return bool, "true or false"
    if isinstance(f, models.IntegerField):
        return int, "a whole number"
    return str, "text"


def _scalars(model, raw: dict, names: tuple[str, ...], where: str, errors: list[str]) -> dict[str, Any]:
    """Type-check plain fields and fill in the model's defaults; strings are stripped."""
    row: dict[str, Any] = {}
    for name in names:
        value = raw.get(name)
        if value is None:
            value = model._meta.get_field(name).get_default()
        else:
            expected, words = _expected(model, name)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                errors.append(f"{where}.{name}: must be {words}, not {value!r}")
                value = model._meta.get_field(name).get_default()
        row[name] = value.strip() if isinstance(value, str) else value
    return row


def _check_keys(raw: dict, allowed: set[str], required: tuple[str, ...], where: str, errors: list[str]) -> None:
    for key in sorted(set(raw) - allowed):
        errors.append(f"{where}.{key}: unknown field (allowed: {', '.join(sorted(allowed))})")
    for key in required:
        if raw.get(key) in (None, ""):
            errors.append(f"{where}.{key}: required")


def _clean(model, values: dict[str, Any], where: str, errors: list[str]) -> None:
    """The model's own field validation (lengths, formats, choices) on an unsaved instance."""
    instance = model(**values)
    try:
        instance.clean_fields(exclude=[f.name for f in model._meta.get_fields() if f.name not in values])
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            errors.extend(f"{where}.{name}: {m} (value {values.get(name)!r})" for m in messages)


def _entries(document: dict, key: str, errors: list[str]) -> list:
    entries = document.get(key) or []
    if not isinstance(entries, list):
        errors.append(f"{key}: must be a list")
        return []
    return entries


def _ident(raw: Any, key: str, index: int) -> str:
    return str(raw.get(key, f"#{index + 1}")) if isinstance(raw, dict) else f"#{index + 1}"


def _purpose_read(raw: Any, index: int, errors: list[str], notices: list[dict]) -> dict | None:
    where = f"purposes[{_ident(raw, 'code', index)}]"
    if not isinstance(raw, dict):
        errors.append(f"{where}: each purpose must be a mapping of field names to values")
        return None
    _check_keys(raw, PURPOSE_ALLOWED, PURPOSE_REQUIRED, where, errors)
    row = {"code": raw.get("code"), "purpose": raw.get("purpose")}
    for name in ("code", "purpose"):
        if row[name] is not None and not isinstance(row[name], str):
            errors.append(f"{where}.{name}: must be a code (text), not {row[name]!r}")
            row[name] = None
    row.update(_scalars(ConsentPurpose, raw, PURPOSE_SCALARS, where, errors))
    _clean(ConsentPurpose, {k: v for k, v in row.items() if k != "purpose" and v not in (None, "")}, where, errors)
    if row["lifetime"]:
        try:
            parse_period(row["lifetime"])
        except ValidationError as exc:
            errors.append(f"{where}.lifetime: {exc.messages[0]} (value {row['lifetime']!r})")
    if row["is_necessary"] and (row["is_sale_or_sharing"] or row["ends_service"]):
        errors.append(f"{where}.is_necessary: a necessary purpose cannot be refused, so it is neither sale nor ends a service")
    if row["is_necessary"] and row["lifetime"]:
        errors.append(f"{where}.lifetime: a necessary purpose is never asked again; leave it empty")
    raw_notices = raw.get("notices") or []
    if not isinstance(raw_notices, list) or not raw_notices:
        errors.append(f"{where}.notices: give at least one notice (the exact question shown)")
        raw_notices = []
    seen: set[tuple[str, str]] = set()
    for n_index, n_raw in enumerate(raw_notices):
        n_where = f"{where}.notices[{_ident(n_raw, 'version', n_index)}]"
        if not isinstance(n_raw, dict):
            errors.append(f"{n_where}: each notice must be a mapping with version, language and text")
            continue
        _check_keys(n_raw, NOTICE_ALLOWED, ("version", "text"), n_where, errors)
        notice = _scalars(ConsentNotice, n_raw, ("version", "language", "text"), n_where, errors)
        _clean(ConsentNotice, {k: v for k, v in notice.items() if v}, n_where, errors)
        key = (notice["version"], notice["language"])
        if key in seen:
            errors.append(f"{n_where}: appears twice in {notice['language']} (a notice is one version in one language)")
        seen.add(key)
        notice["purpose"] = row["code"]
        notice["where"] = n_where
        notices.append(notice)
    row["where"] = where
    return row


def _cookie_read(raw: Any, index: int, errors: list[str]) -> dict | None:
    where = f"cookies[{_ident(raw, 'name', index)}]"
    if not isinstance(raw, dict):
        errors.append(f"{where}: each cookie must be a mapping of field names to values")
        return None
    _check_keys(raw, COOKIE_ALLOWED, COOKIE_REQUIRED, where, errors)
    row = {"name": raw.get("name"), "category": raw.get("category")}
    for name in ("name", "category"):
        if row[name] is not None and not isinstance(row[name], str):
            errors.append(f"{where}.{name}: must be text, not {row[name]!r}")
            row[name] = None
    row.update(_scalars(CookieInventory, raw, COOKIE_SCALARS, where, errors))
    _clean(CookieInventory, {k: v for k, v in row.items() if k != "category" and v not in (None, "")}, where, errors)
    row["where"] = where
    return row


def _date(value: Any, where: str, errors: list[str]) -> str | None:
    if not isinstance(value, str):
        errors.append(f"{where}: must be a date written YYYY-MM-DD (quoted), not {value!r}")
        return None
    try:
        return datetime.date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        errors.append(f"{where}: not a date written YYYY-MM-DD (value {value!r})")
        return None


def _moment(value: Any, where: str, errors: list[str]) -> str | None:
    """ISO 8601 with a time zone, normalised to UTC text (the digest compares text)."""
    if not isinstance(value, str):
        errors.append(f"{where}: must be an ISO 8601 date and time with a zone (quoted), not {value!r}")
        return None
    try:
        moment = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        errors.append(f"{where}: not an ISO 8601 date and time, e.g. 2025-04-25T00:00:00Z (value {value!r})")
        return None
    if moment.tzinfo is None:
        errors.append(f"{where}: give the time zone, e.g. 2025-04-25T00:00:00Z (value {value!r})")
        return None
    return moment.astimezone(datetime.UTC).isoformat()


def _version_read(raw: Any, index: int, errors: list[str]) -> dict | None:
    where = f"policy_versions[{_ident(raw, 'label', index)}]"
    if not isinstance(raw, dict):
        errors.append(f"{where}: each version must be a mapping of field names to values")
        return None
    _check_keys(raw, VERSION_ALLOWED, VERSION_REQUIRED, where, errors)
    row: dict[str, Any] = {"where": where}
    for name in ("label", "summary", "url"):
        value = raw.get(name) or ""
        if not isinstance(value, str):
            errors.append(f"{where}.{name}: must be text, not {value!r}")
            value = ""
        row[name] = value.strip()
    row["last_updated"] = _date(raw["last_updated"], f"{where}.last_updated", errors) if raw.get("last_updated") else None
    row["effective_at"] = _moment(raw["effective_at"], f"{where}.effective_at", errors) if raw.get("effective_at") else None
    published = raw.get("published", False)
    if not isinstance(published, bool):
        errors.append(f"{where}.published: must be true or false, not {published!r}")
        published = False
    row["published"] = published
    _clean(PolicyVersion, {k: row[k] for k in ("label", "summary", "url") if row[k]}, where, errors)
    return row


def seed_file_read(*, path: Path | str | None = None) -> SeedFile:
    """Parse and validate the consents seed file without touching the database. Raises PolicyFileError."""
    path = Path(path) if path else DEFAULT_SEED_PATH
    try:
        document = yaml.load(path.read_bytes(), Loader=_TextLoader)  # noqa: S506 - a SafeLoader subclass
    except OSError as exc:
        raise PolicyFileError([f"cannot read the file: {exc.strerror}"], path) from exc
    except yaml.YAMLError as exc:
        raise PolicyFileError([f"not valid YAML: {exc}"], path) from exc
    if not isinstance(document, dict):
        raise PolicyFileError([f"the file must be a mapping with the sections {', '.join(SECTIONS)}"], path)
    errors = [f"{key}: unknown section (allowed: {', '.join(SECTIONS)})" for key in sorted(set(document) - set(SECTIONS))]

    notices: list[dict] = []
    purposes = [
        r for i, raw in enumerate(_entries(document, "purposes", errors)) if (r := _purpose_read(raw, i, errors, notices))
    ]
    cookies = [r for i, raw in enumerate(_entries(document, "cookies", errors)) if (r := _cookie_read(raw, i, errors))]
    versions = [r for i, raw in enumerate(_entries(document, "policy_versions", errors)) if (r := _version_read(raw, i, errors))]

    def once(rows: list[dict], key, what: str) -> None:
        seen: set = set()
        for r in rows:
            k = key(r)
            if k in seen:
                errors.append(f"{r['where']}: appears twice ({what})")
            seen.add(k)

    once(purposes, lambda r: r["code"], "purposes are matched on code")
    once(cookies, lambda r: (r["name"], r["provider"]), "cookies are matched on name and provider")
    once(versions, lambda r: r["label"], "versions are matched on label")
    categories = {r["code"]: r["cookie_category"] for r in purposes if r["code"]}
    for cookie in cookies:
        if not cookie["category"]:
            continue
        if cookie["category"] not in categories:
            errors.append(
                f"{cookie['where']}.category: unknown consent purpose {cookie['category']!r} (not defined under purposes)"
            )
        elif not categories[cookie["category"]]:
            errors.append(
                f"{cookie['where']}.category: {cookie['category']!r} is not a cookie category (it has no cookie_category)"
            )
    if errors:
        raise PolicyFileError(errors, path)
    return SeedFile(path=path, purposes=purposes, notices=notices, cookies=cookies, versions=versions)


# --- Applying -------------------------------------------------------------------------------------


def _digest(label: str, values: dict[str, Any]) -> str:
    canonical = json.dumps({"model": label, "values": values}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _purpose_values(row: dict) -> dict:
    return {"code": row["code"], "purpose": row["purpose"], **{k: row[k] for k in PURPOSE_SCALARS}}


def _purpose_current(obj: ConsentPurpose) -> dict:
    return {"code": obj.code, "purpose": obj.purpose.code, **{k: getattr(obj, k) for k in PURPOSE_SCALARS}}


def _cookie_values(row: dict) -> dict:
    return {"name": row["name"], "category": row["category"], **{k: row[k] for k in COOKIE_SCALARS}}


def _cookie_current(obj: CookieInventory) -> dict:
    return {"name": obj.name, "category": obj.category.code, **{k: getattr(obj, k) for k in COOKIE_SCALARS}}


def _version_values(row: dict) -> dict:
    values = {k: row[k] for k in ("label", "last_updated", "effective_at", "summary", "published")}
    values["url"] = row["url"] or settings.POLICY_URL
    return values


def _version_current(obj: PolicyVersion) -> dict:
    return {
        "label": obj.label,
        "last_updated": obj.last_updated.isoformat(),
        "effective_at": obj.effective_at.astimezone(datetime.UTC).isoformat(),
        "summary": obj.summary,
        "url": obj.url,
        "published": obj.published_at is not None,
    }


# What nothing may change once a version is published.
_FIXED_WHEN_PUBLISHED = ("label", "last_updated", "effective_at", "published")


class _Apply:
    def __init__(self, seed: SeedFile, *, actor, reset: bool):
        self.seed = seed
        self.actor = actor
        self.reset = reset
        self.counts = {label: ModelCounts() for label in (LABEL_PURPOSES, LABEL_NOTICES, LABEL_COOKIES, LABEL_VERSIONS)}
        self.kept: list[str] = []
        self.notes: list[str] = []

    def _decide(self, label: str, obj, values: dict, current: dict, name: str) -> str:
        """'create', 'unchanged', 'update' or 'keep', by the register's digest rule."""
        if obj is None:
            return "create"
        digest = _digest(label, values)
        now = _digest(label, current)
        if now == digest:
            if obj.seed_digest != digest:  # same values, written by someone else or an older seed
                type(obj).objects.filter(pk=obj.pk).update(seed_digest=digest)
            self.counts[label].unchanged += 1
            return "unchanged"
        if now == obj.seed_digest or self.reset:
            return "update"
        self._keep(label, name)
        return "keep"

    def _keep(self, label: str, name: str) -> None:
        self.counts[label].kept += 1
        self.kept.append(f"{label}: {name}")

    def _count(self, label: str, decision: str) -> None:
        self.counts[label].created += decision == "create"
        self.counts[label].updated += decision == "update"

    def run(self) -> SeedResult:
        seed = self.seed
        registered = {p.code: p for p in Purpose.objects.filter(code__in={r["purpose"] for r in seed.purposes})}
        skipped = set()
        for row in seed.purposes:
            if row["purpose"] not in registered:
                skipped.add(row["code"])
                self.notes.append(
                    f"skipped consent purpose {row['code']}: register purpose {row['purpose']} is not in the register"
                )
        existing = {
            p.code: p
            for p in ConsentPurpose.objects.select_related("purpose").filter(code__in=[r["code"] for r in seed.purposes])
        }
        self._notices_check(existing, skipped)  # before the first write: a conflict undoes the whole load

        purposes: dict[str, ConsentPurpose] = {}
        for row in seed.purposes:
            if row["code"] in skipped:
                continue
            obj = existing.get(row["code"])
            values = _purpose_values(row)
            decision = self._decide(LABEL_PURPOSES, obj, values, _purpose_current(obj) if obj else {}, row["code"])
            if decision in ("create", "update"):
                obj = obj or ConsentPurpose()
                obj.code = row["code"]
                obj.purpose = registered[row["purpose"]]
                for name in PURPOSE_SCALARS:
                    setattr(obj, name, row[name])
                obj.seed_digest = _digest(LABEL_PURPOSES, values)
                obj.save()
                self._count(LABEL_PURPOSES, decision)
            purposes[row["code"]] = obj

        self._notices_create(purposes)
        self._cookies_apply(purposes, skipped)
        self._versions_apply()
        return SeedResult(counts=self.counts, kept=self.kept, notes=self.notes)

    def _notices_check(self, existing: dict[str, ConsentPurpose], skipped: set[str]) -> None:
        stored = {
            (n.purpose.code, n.version, n.language): n
            for n in ConsentNotice.objects.select_related("purpose").filter(purpose__in=list(existing.values()))
        }
        errors = []
        for notice in self.seed.notices:
            if notice["purpose"] in skipped:
                continue
            current = stored.get((notice["purpose"], notice["version"], notice["language"]))
            if current is not None and current.text.strip() != notice["text"]:
                errors.append(
                    f"{notice['where']}.text: differs from the stored notice {notice['purpose']} v{notice['version']} "
                    f"({notice['language']}, sha256 {current.sha256[:12]}…). A notice never changes once created, because "
                    "consent events point at its hash: put the new wording under a new version."
                )
        if errors:
            raise PolicyFileError(errors, self.seed.path)

    def _notices_create(self, purposes: dict[str, ConsentPurpose]) -> None:
        stored = set(
            ConsentNotice.objects.filter(purpose__in=list(purposes.values())).values_list("purpose__code", "version", "language")
        )
        counts = self.counts[LABEL_NOTICES]
        for notice in self.seed.notices:
            if notice["purpose"] not in purposes:
                continue
            if (notice["purpose"], notice["version"], notice["language"]) in stored:
                counts.unchanged += 1
                continue
            ConsentNotice.objects.create(
                purpose=purposes[notice["purpose"]],
                version=notice["version"],
                language=notice["language"],
                text=notice["text"],
                created_by=self.actor,
            )
            counts.created += 1

    def _cookies_apply(self, purposes: dict[str, ConsentPurpose], skipped: set[str]) -> None:
        rows = self.seed.cookies
        existing = {
            (c.name, c.provider): c
            for c in CookieInventory.objects.select_related("category").filter(name__in=[r["name"] for r in rows])
        }
        for row in rows:
            if row["category"] in skipped:
                self.notes.append(f"skipped cookie {row['name']}: its category {row['category']} was skipped")
                continue
            obj = existing.get((row["name"], row["provider"]))
            values = _cookie_values(row)
            decision = self._decide(LABEL_COOKIES, obj, values, _cookie_current(obj) if obj else {}, row["name"])
            if decision not in ("create", "update"):
                continue
            obj = obj or CookieInventory()
            obj.name = row["name"]
            obj.category = purposes[row["category"]]
            for name in COOKIE_SCALARS:
                setattr(obj, name, row[name])
            obj.seed_digest = _digest(LABEL_COOKIES, values)
            obj.save()
            self._count(LABEL_COOKIES, decision)

    def _versions_apply(self) -> None:
        rows = self.seed.versions
        existing = {v.label: v for v in PolicyVersion.objects.filter(label__in=[r["label"] for r in rows])}
        for row in rows:
            obj = existing.get(row["label"])
            values = _version_values(row)
            current = _version_current(obj) if obj else {}
            if obj is not None and obj.published_at is None and row["published"]:
                self._keep(LABEL_VERSIONS, row["label"])
                self.notes.append(
                    f"policy version {row['label']} is a draft here: publish it in the workbench (the loader does not)"
                )
                continue
            if obj is not None and obj.published_at is not None:
                fixed = [k for k in _FIXED_WHEN_PUBLISHED if current[k] != values[k]]
                if fixed:
                    self._keep(LABEL_VERSIONS, row["label"])
                    self.notes.append(
                        f"policy version {row['label']} is published: its {', '.join(fixed)} never change (add a new version)"
                    )
                    continue
            decision = self._decide(LABEL_VERSIONS, obj, values, current, row["label"])
            if decision not in ("create", "update"):
                continue
            obj = obj or PolicyVersion(label=row["label"])
            obj.last_updated = datetime.date.fromisoformat(values["last_updated"])
            obj.effective_at = datetime.datetime.fromisoformat(values["effective_at"])
            obj.summary = values["summary"]
            obj.url = values["url"]
            if row["published"] and obj.published_at is None:
                # The baseline the service starts from: published and notified, so no notice run e-mails it.
                obj.published_at = obj.notice_sent_at = timezone.now()
            obj.seed_digest = _digest(LABEL_VERSIONS, values)
            obj.save()
            self._count(LABEL_VERSIONS, decision)


def read(policy: PolicyFile, *, path: Path | str | None = None) -> SeedFile:
    """The seed-loader's first half: validate the consents file (no database)."""
    return seed_file_read(path=path)


def apply(seed: SeedFile, *, actor=None, reset: bool = False, policy: PolicyFile | None = None) -> SeedResult:
    """The seed-loader's second half, inside the register's transaction (see the module docstring).

    PM-II-2, PM-III-1..5: the consent purposes and cookie categories, their notice texts and the cookie
    inventory; PM-X-1: the policy version the service starts from.
    """
    return _Apply(seed, actor=actor, reset=reset).run()
