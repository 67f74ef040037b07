"""Writes to the register. Every change goes through here so each one leaves an audit event.

Single rows (the admin's add, change and delete) write one event per row with the fields that changed.
A file import writes ONE event for the whole file (counts, format, SHA-256 of the bytes uploaded) and is
all-or-nothing: any row that fails rolls every row back and no event is written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.apps import apps as django_apps
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.forms.models import model_to_dict

from privacyops.audit import audit_record

from .audit_actions import DATASTORE_SYNCED, register_action

# Enough to name what an import touched without turning one audit event into a copy of the file.
MAX_KEYS_IN_IMPORT_EVENT = 200


def register_key(instance) -> str | None:
    """The natural key a person reads: `code` for entries; the codes of both ends for link rows."""
    code = getattr(instance, "code", None)
    if code is not None:
        return code
    model_name = instance._meta.model_name
    if model_name == "purposebasis":
        where = instance.jurisdiction.code if instance.jurisdiction_id else "*"
        return f"{instance.purpose.code}/{instance.basis.code}/{where}"
    if model_name == "processingactivity":
        return f"{instance.purpose.code}/{instance.category.code}"
    return None


def register_entry_save(*, actor, instance, changed_fields: list[str] | None = None, m2m: dict | None = None):
    """Create or update one register row (and optionally set its many-to-many links), audited.

    `m2m` maps a many-to-many field name to the objects it should hold after the save.
    """
    creating = instance._state.adding
    with transaction.atomic():
        instance.full_clean()
        instance.save()
        for field, values in (m2m or {}).items():
            getattr(instance, field).set(values)
        audit_record(
            actor=actor,
            action=register_action(instance, "created" if creating else "updated"),
            target=instance,
            details={"code": register_key(instance), "fields": sorted(changed_fields or [])},
        )
    return instance


def register_entry_delete(*, actor, instance) -> None:
    """Delete one register row, audited. Rows still in use are protected by the database (PROTECT)."""
    with transaction.atomic():
        snapshot = {k: v for k, v in model_to_dict(instance).items() if not isinstance(v, list)}
        target = (instance._meta.label_lower, instance.pk)
        key = register_key(instance)
        instance.delete()
        audit_record(
            actor=actor,
            action=register_action(instance, "deleted"),
            target=target,
            details={"code": key, "row": snapshot},
        )


def register_entries_delete(*, actor, instances: Iterable) -> int:
    """Delete several register rows in one transaction (the admin's bulk delete), one event per row."""
    count = 0
    with transaction.atomic():
        for instance in instances:
            register_entry_delete(actor=actor, instance=instance)
            count += 1
    return count


def register_import_apply(*, actor, resource, dataset, file_format: str, file_bytes: bytes):
    """Apply an import file to one register model: all rows or none, one audit event.

    `resource` is the model's django-import-export resource, `dataset` the file read into a tablib
    Dataset, `file_bytes` the file exactly as uploaded (its SHA-256 goes into the event). Returns the
    import Result; when it has errors or validation errors nothing was written and the caller shows them.
    """
    model = resource._meta.model
    with transaction.atomic():
        result = resource.import_data(
            dataset,
            dry_run=False,
            raise_errors=False,
            use_transactions=True,
            rollback_on_validation_errors=True,
            retain_instance_in_row_result=True,
            user=actor,
        )
        if result.has_errors() or result.has_validation_errors():
            transaction.set_rollback(True)
            return result
        totals = result.totals
        keys = {"new": [], "updated": []}
        for row in result.valid_rows():
            bucket = {"new": "new", "update": "updated"}.get(row.import_type)
            if bucket and row.instance is not None and len(keys[bucket]) < MAX_KEYS_IN_IMPORT_EVENT:
                keys[bucket].append(register_key(row.instance))
        audit_record(
            actor=actor,
            action=register_action(model, "imported"),
            target=(model._meta.label_lower, ""),
            details={
                "format": file_format,
                "sha256": hashlib.sha256(file_bytes).hexdigest(),
                "rows": result.total_rows,
                "new": totals["new"],
                "updated": totals["update"],
                "deleted": totals["delete"],
                "skipped": totals["skip"],
                "codes": keys,
            },
        )
    return result


def register_export_record(*, actor, model, row_count: int, file_format: str) -> None:
    """Record that the register (or a filtered part of it) left the system as a file."""
    audit_record(
        actor=actor,
        action=register_action(model, "exported"),
        target=(model._meta.label_lower, ""),
        details={"format": file_format, "rows": row_count},
    )


def register_ropa_export_record(*, actor, file_format: str) -> None:
    """Record that the Art. 30 record was downloaded from the workbench."""
    audit_record(actor=actor, action="register.record_of_processing.exported", details={"format": file_format})


# --- Data stores from the registry ----------------------------------------------------------------
#
# A Django app is one data store (kind `django`, code `django-<app_label>`). Which categories it holds is
# a fact of the code (the personal-data registry), so the sync owns a django store's kind, app_label and
# categories and rewrites them to match; its name and description are written when the store is created
# and are the DPO's to edit afterwards. Stores of apps that no longer declare personal data, and stores
# of other kinds, are never touched. A sync that changes nothing writes nothing (it runs after every
# migrate and every loadpolicy).

DATASTORE_SYNC_LABEL = "data stores from the registry"


@dataclass
class DataStoreSyncResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    missing_categories: list[str] = field(default_factory=list)  # declared codes the database lacks

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


def _registry_stores() -> dict[str, dict]:
    """Per store code: the app it is and every category (row and field) its declarations name."""
    from privacyops.privacy import registry

    stores: dict[str, dict] = {}
    for declaration in registry.personal():
        entry = stores.setdefault(declaration.store_code, {"app_label": declaration.app_label, "categories": set()})
        entry["categories"].add(declaration.category)
        entry["categories"].update(spec.category for spec in declaration.fields.values())
    return stores


def _store_name(app_label: str) -> str:
    try:
        verbose = str(django_apps.get_app_config(app_label).verbose_name)
    except LookupError:
        verbose = app_label
    return f"{verbose} database ({app_label})"


def _datastore_sync() -> DataStoreSyncResult:
    from .models import DataCategory, DataStore

    wanted = _registry_stores()
    result = DataStoreSyncResult()
    all_codes = set().union(*(w["categories"] for w in wanted.values())) if wanted else set()
    categories = {c.code: c for c in DataCategory.objects.filter(code__in=all_codes)}
    result.missing_categories = sorted(all_codes - set(categories))
    existing = {s.code: s for s in DataStore.objects.filter(code__in=wanted).prefetch_related("categories")}
    for code, spec in sorted(wanted.items()):
        target = {categories[c].pk for c in spec["categories"] if c in categories}
        store = existing.get(code)
        if store is None:
            store = DataStore.objects.create(
                code=code,
                name=_store_name(spec["app_label"]),
                description=f"The tables of the {spec['app_label']} app; its categories follow the code's registry.",
                kind=DataStore.Kind.DJANGO,
                app_label=spec["app_label"],
            )
            store.categories.set(target)
            result.created.append(code)
            continue
        changed = False
        if store.kind != DataStore.Kind.DJANGO or store.app_label != spec["app_label"]:
            store.kind, store.app_label = DataStore.Kind.DJANGO, spec["app_label"]
            store.save(update_fields=["kind", "app_label", "updated_at"])
            changed = True
        if {c.pk for c in store.categories.all()} != target:
            store.categories.set(target)
            changed = True
        (result.updated if changed else result.unchanged).append(code)
    return result


def datastore_sync_from_registry(*, actor=None) -> DataStoreSyncResult:
    """Create or update one kind-`django` data store per app that declares personal data, with its categories.

    Idempotent: one audit event when a store was created or changed, none otherwise.
    """
    with transaction.atomic():
        result = _datastore_sync()
        if result.changed:
            audit_record(
                actor=actor,
                action=DATASTORE_SYNCED,
                details={"created": result.created, "updated": result.updated},
            )
    return result


def datastore_seed_apply(prepared, *, actor=None, reset=False, policy=None):
    """The sync as a seed loader of `register_policy_load`: inside its transaction, counted in its audit event."""
    from .policy import ModelCounts, SeedResult

    result = _datastore_sync()
    counts = ModelCounts(created=len(result.created), updated=len(result.updated), unchanged=len(result.unchanged))
    notes = [f"registry category not in the register: {code}" for code in result.missing_categories]
    return SeedResult(counts={DATASTORE_SYNC_LABEL: counts}, notes=notes)


def datastore_sync_after_migrate(sender, app_config=None, using=DEFAULT_DB_ALIAS, **kwargs) -> None:
    """post_migrate receiver: sync once per migrate, when the last app's signal fires.

    Only on a database whose register is loaded: on a fresh one, `loadpolicy` (which syncs too) comes
    next, and a store created before its categories exist would only be rewritten a moment later.
    """
    from .models import DataCategory, DataStore

    configs = [c for c in django_apps.get_app_configs() if c.models_module is not None]
    if not configs or app_config is not configs[-1] or using != DEFAULT_DB_ALIAS:
        return
    tables = set(connections[using].introspection.table_names())
    through = DataStore.categories.through._meta.db_table
    if not {DataStore._meta.db_table, DataCategory._meta.db_table, through} <= tables:
        return
    if not DataCategory.objects.using(using).exists():
        return
    datastore_sync_from_registry(actor=None)
