"""The drift check (PM-I): no model of ours holds a column the personal-data registry has not classified.

It runs with every `manage.py check`, server start and migrate, and reads only code (the registry and the
models) and the seed file (through `policy_file_read`, which needs no database), so it works before the
first `migrate` and fails a deploy before an unclassified column can hold data.

"Our apps" are the installed apps whose code lives inside settings.BASE_DIR (not in the virtualenv):
every concrete model there must be declared, and every field of it (foreign keys and many-to-many
included) classified as personal or not. Declarations of contrib models (sessions, the admin log) are
checked for shape as well, but a contrib model that nobody declared is not ours to classify.

Each error names the model, the field and the fix; ids are stable (privacyops.E001 ...) so a deploy
log can be searched for them.
"""

from __future__ import annotations

from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import FieldDoesNotExist
from django.db import models

from privacyops.privacy import Erase, registry
from privacyops.privacy.registry import Declaration, RegistryError

E_UNDECLARED_MODEL = "privacyops.E001"
E_UNCLASSIFIED_FIELD = "privacyops.E002"
E_UNKNOWN_FIELD = "privacyops.E003"
E_BAD_SUBJECT_PATH = "privacyops.E004"
E_UNKNOWN_CATEGORY = "privacyops.E005"
E_SEED_UNREADABLE = "privacyops.E006"
E_BAD_IDENTIFIER = "privacyops.E007"
E_BAD_TIMESTAMP = "privacyops.E008"
E_STRATEGY_MISMATCH = "privacyops.E009"


def our_app_configs(app_configs=None) -> list:
    """Installed apps whose code lives in this project (inside BASE_DIR, outside any virtualenv)."""
    base = Path(settings.BASE_DIR).resolve()
    ours = []
    for config in app_configs if app_configs is not None else apps.get_app_configs():
        path = Path(config.path).resolve()
        if not path.is_relative_to(base):
            continue
        if any(part in {".venv", "venv", "site-packages"} for part in path.relative_to(base).parts):
            continue
        ours.append(config)
    return ours


def our_models(app_configs=None) -> list[type[models.Model]]:
    """Concrete models of our apps (proxies share their concrete model's declaration)."""
    found = []
    for config in our_app_configs(app_configs):
        for model in config.get_models():
            if model._meta.abstract or model._meta.proxy:
                continue
            found.append(model)
    return found


def _classifiable_fields(model) -> list:
    """The columns a declaration must classify: concrete fields (foreign keys included) and many-to-many."""
    return [*model._meta.concrete_fields, *model._meta.many_to_many]


def _field(model, name: str):
    """The concrete or many-to-many field `name` of `model` (a reverse relation is not a column of it)."""
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return None
    return field if field.concrete or field.many_to_many else None


def _field_through(model, path: str):
    """The field a lookup path ends at, following foreign keys ("request__closed_at"); None if it breaks."""
    *hops, name = path.split("__")
    for hop in hops:
        field = _field(model, hop)
        if field is None or not field.is_relation or field.many_to_many:
            return None
        model = field.related_model
    return _field(model, name)


def _seed_categories() -> tuple[set[str] | None, list[checks.CheckMessage]]:
    from inventory.policy import PolicyFileError, policy_file_read

    try:
        policy = policy_file_read()
    except PolicyFileError as exc:
        return None, [
            checks.Error(
                "The seed register cannot be read, so the registry's category codes cannot be checked.",
                hint="Fix the seed file: " + "; ".join(exc.errors[:5]),
                obj=str(exc.path or "inventory/seed/policy.yaml"),
                id=E_SEED_UNREADABLE,
            )
        ]
    return policy.codes("data_categories"), []


def _check_undeclared(model) -> list[checks.CheckMessage]:
    label = model._meta.label
    return [
        checks.Error(
            f"{label} is not declared in the personal-data registry.",
            hint=(
                f"Declare it in {model._meta.app_label}/privacy.py with privacy.register({model.__name__}, ...) "
                f"classifying each field, or privacy.register_not_personal({model.__name__}, reason=...)."
            ),
            obj=model,
            id=E_UNDECLARED_MODEL,
        )
    ]


def _check_classified(declaration: Declaration) -> list[checks.CheckMessage]:
    model = declaration.model
    declared = declaration.declared_names()
    errors = []
    for field in _classifiable_fields(model):
        if field.name in declared:
            continue
        errors.append(
            checks.Error(
                f"{model._meta.label}.{field.name} is neither declared personal nor not personal.",
                hint=(
                    f"In {model._meta.app_label}/privacy.py add '{field.name}' to the fields of {model.__name__} "
                    f'as privacy.Field("<category code>", Erase.<strategy>, "<meaning>"), or to its not_personal.'
                ),
                obj=model,
                id=E_UNCLASSIFIED_FIELD,
            )
        )
    return errors


def _check_names(declaration: Declaration) -> list[checks.CheckMessage]:
    model = declaration.model
    label = model._meta.label
    errors = []
    named = [(name, "fields") for name in declaration.fields] + [(name, "not_personal") for name in declaration.not_personal]
    if declaration.identifier:
        named.append((declaration.identifier, "identifier"))
    if declaration.created:
        named.append((declaration.created, "created"))
    named.extend((name, "timestamps") for name in declaration.timestamps)
    for name, where in named:
        field = _field(model, name) if where != "timestamps" else _field_through(model, name)
        if field is None:
            errors.append(
                checks.Error(
                    f"{label}: the declaration's {where} names '{name}', which is not a field of the model.",
                    hint=f"Correct or remove '{name}' in {declaration.app_label}/privacy.py (a renamed or dropped column?).",
                    obj=model,
                    id=E_UNKNOWN_FIELD,
                )
            )
        elif where in {"created", "timestamps"} and not isinstance(field, models.DateField):
            errors.append(
                checks.Error(
                    f"{label}.{name} is declared as a timestamp retention may count from, but it is not a date or time.",
                    hint=f"Name a DateTimeField or DateField as {where} in {declaration.app_label}/privacy.py.",
                    obj=model,
                    id=E_BAD_TIMESTAMP,
                )
            )
    if declaration.identifier and _field(model, declaration.identifier) is not None:
        account_model = apps.get_model(settings.AUTH_USER_MODEL)
        if _field(account_model, declaration.identifier) is None:
            errors.append(
                checks.Error(
                    f"{label}: the identifier '{declaration.identifier}' has no field of the same name on "
                    f"{account_model._meta.label} to match it against.",
                    hint="Use an identifier the account model also holds (email, subject_ref).",
                    obj=model,
                    id=E_BAD_IDENTIFIER,
                )
            )
    return errors


def _check_subject_path(declaration: Declaration) -> list[checks.CheckMessage]:
    if not declaration.subject:
        return []
    model = declaration.model
    label = model._meta.label
    current = model
    account_model = apps.get_model(settings.AUTH_USER_MODEL)
    for hop in declaration.subject.split("__"):
        field = _field(current, hop)
        if field is None or not (field.many_to_one or field.one_to_one) or not field.concrete:
            return [
                checks.Error(
                    f"{label}: the subject path '{declaration.subject}' breaks at '{hop}', "
                    f"which is not a foreign key of {current._meta.label}.",
                    hint=f"Give the path of foreign keys from {model.__name__} to the account, e.g. 'conversation__user'.",
                    obj=model,
                    id=E_BAD_SUBJECT_PATH,
                )
            ]
        current = field.related_model
    if current is not account_model:
        return [
            checks.Error(
                f"{label}: the subject path '{declaration.subject}' ends at {current._meta.label}, not at the account model.",
                hint=f"The last hop must be a foreign key to {settings.AUTH_USER_MODEL}.",
                obj=model,
                id=E_BAD_SUBJECT_PATH,
            )
        ]
    return []


def _check_categories(declaration: Declaration, codes: set[str]) -> list[checks.CheckMessage]:
    model = declaration.model
    errors = []
    where = [(declaration.category, "the row category")] + [
        (spec.category, f"the category of field '{name}'") for name, spec in declaration.fields.items()
    ]
    for code, what in where:
        if code not in codes:
            errors.append(
                checks.Error(
                    f"{model._meta.label}: {what} is '{code}', which the seed register does not define.",
                    hint=(
                        "Use one of the data_categories codes in inventory/seed/policy.yaml "
                        f"({', '.join(sorted(codes))}), or add '{code}' there."
                    ),
                    obj=model,
                    id=E_UNKNOWN_CATEGORY,
                )
            )
    return errors


_NEEDS = {
    Erase.GENERALISE_IP: ((models.GenericIPAddressField,), "an IP address field"),
    Erase.GENERALISE_DAY: ((models.DateField,), "a date or date-time field"),
    Erase.GENERALISE_COUNTRY: ((models.CharField,), "a text field holding a country or region code"),
    Erase.REDACT: ((models.CharField, models.TextField, models.JSONField), "a text field"),
}


def _check_strategies(declaration: Declaration) -> list[checks.CheckMessage]:
    """The shape checks we are sure of: a strategy fits its column, and anonymise can really clear it."""
    from privacyops.privacy.strategies import _empty

    model = declaration.model
    errors = []
    for name, spec in declaration.fields.items():
        field = _field(model, name)
        if field is None:
            continue
        need = _NEEDS.get(spec.erase)
        if need and not isinstance(field, need[0]):
            errors.append(
                checks.Error(
                    f"{model._meta.label}.{name}: {spec.erase.name} needs {need[1]}, not {type(field).__name__}.",
                    hint=f"Choose another strategy for '{name}' in {declaration.app_label}/privacy.py.",
                    obj=model,
                    id=E_STRATEGY_MISMATCH,
                )
            )
        elif declaration.anonymisable and spec.erase in (Erase.NULL, Erase.DELETE, Erase.PSEUDONYMISE):
            try:
                _empty(field)
            except RegistryError as exc:
                errors.append(checks.Error(str(exc), obj=model, id=E_STRATEGY_MISMATCH))
    return errors


def check_personal_data_registry(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """PM-I: every column of every model of ours is classified, and every declaration matches the code and seed."""
    errors: list[checks.CheckMessage] = []
    codes, seed_errors = _seed_categories()
    errors.extend(seed_errors)
    for model in our_models(app_configs):
        if not registry.is_registered(model):
            errors.extend(_check_undeclared(model))
    wanted = None if app_configs is None else {c.label for c in app_configs}
    installed = {c.label for c in apps.get_app_configs()}
    for declaration in registry.declarations():
        if declaration.app_label not in installed:
            continue
        if wanted is not None and declaration.app_label not in wanted:
            continue
        if not declaration.personal:
            continue
        errors.extend(_check_classified(declaration))
        errors.extend(_check_names(declaration))
        errors.extend(_check_subject_path(declaration))
        errors.extend(_check_strategies(declaration))
        if codes is not None:
            errors.extend(_check_categories(declaration, codes))
    return errors
