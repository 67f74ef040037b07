"""Declarations and the registry that holds them. See the package docstring for the rules."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from django.db import models


class RegistryError(Exception):
    """A declaration that cannot be right whatever the database holds (bad shape, duplicate)."""


class NotRegistered(LookupError):
    pass


class Erase(enum.StrEnum):
    """How erasure treats a personal field.

    DELETE: the field cannot be erased without deleting the row (a message's content is the message).
    NULL: set to null (or the empty string for text fields that are not nullable).
    GENERALISE_IP: keep only the network (/24 for IPv4, /48 for IPv6).
    GENERALISE_DAY: keep only the date (midnight UTC of the day).
    GENERALISE_COUNTRY: keep only the country (a region `US-CA` becomes `US`; finer places are cleared).
    REDACT: replace the text with a fixed marker.
    PSEUDONYMISE: replace with a keyed HMAC, stable per subject. Still personal data (PM-II-5).
    RETAIN: kept under a legal duty whatever the subject asks (the audit trail); erasure leaves it.
    """

    DELETE = "delete"
    NULL = "null"
    GENERALISE_IP = "generalise-ip"
    GENERALISE_DAY = "generalise-day"
    GENERALISE_COUNTRY = "generalise-country"
    REDACT = "redact"
    PSEUDONYMISE = "pseudonymise"
    RETAIN = "retain"


@dataclass(frozen=True)
class Field:
    """One personal field: its register category (a seed code), how erasure treats it, what it means."""

    category: str
    erase: Erase = Erase.DELETE
    meaning: str = ""
    rectifiable: bool = False
    third_party: bool = False  # may hold data about people other than the subject (PM-I-9)

    @classmethod
    def coerce(cls, value) -> Field:
        """Accept `Field(...)`, or the short form `(category, erase[, meaning])` of STYLE.md."""
        if isinstance(value, Field):
            return value
        if isinstance(value, tuple) and 2 <= len(value) <= 3:
            return cls(value[0], Erase(value[1]), *value[2:])
        raise RegistryError(f"A field declaration is privacy.Field(...) or (category, Erase.X[, meaning]), not {value!r}.")


@dataclass(frozen=True)
class Declaration:
    """What the registry knows of one model."""

    model: type[models.Model]
    personal: bool = True
    subject: str | None = None  # lookup path to the account, e.g. "conversation__user"
    # For rows that may have no account: the field that finds them. It holds the same value as the account
    # model's field of the same name (SupportMessage.email = User.email; AuditEvent.subject_ref).
    identifier: str | None = None
    category: str | None = None  # the row's category: the one its retention follows
    created: str | None = None  # the field holding the row's creation time
    # Further timestamps a retention rule may count from: a field of the model, or of a parent through a
    # lookup path ("request__closed_at": a request's timeline expires with the request). A rule names the
    # timestamp by its last part, so one rule governs the parent and its children alike.
    timestamps: tuple[str, ...] = ()
    fields: Mapping[str, Field] = field(default_factory=dict)
    not_personal: frozenset[str] = frozenset()
    reason: str = ""  # for a model declared not personal: why
    store: str | None = None  # data store code; default: the app's store
    # RETAIN fields survive the subject's erasure. Usually the duty has no end (the audit trail), so no
    # retention rule may delete such rows; where the law keeps the record for a fixed time only (a rights
    # request's record: CCPA asks for 24 months), `duty_ends` lets a delete rule remove it afterwards.
    duty_ends: bool = False

    @property
    def label(self) -> str:
        return self.model._meta.label

    @property
    def app_label(self) -> str:
        return self.model._meta.app_label

    @property
    def store_code(self) -> str:
        return self.store or store_code_for_app(self.app_label)

    @property
    def subject_fk(self) -> str | None:
        """The first hop of the subject path (a foreign key of this model)."""
        return self.subject.split("__", 1)[0] if self.subject else None

    @property
    def subject_is_direct(self) -> bool:
        """True when the model points at the account itself: only such rows can be anonymised by cutting the link."""
        return bool(self.subject) and "__" not in self.subject

    @property
    def timestamp_fields(self) -> tuple[str, ...]:
        """The names a rule may count from (the last part of each declared path)."""
        return tuple(dict.fromkeys(path.rsplit("__", 1)[-1] for path in self._timestamp_paths))

    def timestamp_path(self, name: str) -> str | None:
        """The lookup from this model to the timestamp a rule names, or None when it declares none of that name."""
        return next((path for path in self._timestamp_paths if path.rsplit("__", 1)[-1] == name), None)

    @property
    def _timestamp_paths(self) -> list[str]:
        return ([self.created] if self.created else []) + list(self.timestamps)

    @property
    def is_account_model(self) -> bool:
        """The account model itself: its rows are the subjects, so it declares no subject path."""
        from django.conf import settings

        return self.model._meta.label == settings.AUTH_USER_MODEL

    @property
    def anonymisable(self) -> bool:
        """Whether `strategies.anonymise_updates` can anonymise this model's rows in place.

        Only rows that point at the account by a nullable foreign key of their own can lose the link by an
        UPDATE; a row linked through its parent stays linked, and a field kept under a legal duty
        (RETAIN) would keep identifying the subject.
        """
        if not self.personal or not self.subject_is_direct:
            return False
        if any(f.erase == Erase.RETAIN for f in self.fields.values()):
            return False
        return bool(self.model._meta.get_field(self.subject_fk).null)

    @property
    def erasure_deletes_row(self) -> bool:
        """A field whose strategy is DELETE cannot be erased without deleting its row."""
        return any(f.erase == Erase.DELETE for f in self.fields.values())

    def subject_q(self, account) -> models.Q | None:
        """The rows of this model that belong to `account` (a User), or None if the model has no way to find them.

        By the subject path; for the account model, the row itself; and for a declaration with an
        `identifier`, also the rows with no account whose identifier equals the account's field of the
        same name (a support email sent before signing up; the audit trail's subject_ref).
        """
        if not self.personal:
            return None
        q = None
        if self.subject:
            q = models.Q(**{self.subject: account})
        elif self.is_account_model:
            q = models.Q(pk=account.pk)
        by_identifier = self.identifier_q(getattr(account, self.identifier, None)) if self.identifier else None
        if by_identifier is not None:
            q = by_identifier if q is None else q | by_identifier
        return q

    def identifier_q(self, value) -> models.Q | None:
        """The rows with no account whose identifier equals `value` (text compared case-insensitively: an
        address is the same address in any case), or None when the model has no identifier or `value` is
        empty. `subject_q` uses it with the account's field; a request without an account uses it with the
        address it verified (`requests.exports`)."""
        if not self.personal or not self.identifier or value in (None, ""):
            return None
        lookup = "iexact" if isinstance(value, str) else "exact"
        q = models.Q(**{f"{self.identifier}__{lookup}": value})
        if self.subject:
            # A row linked to an account is that account's, whatever its identifier says.
            q &= models.Q(**{f"{self.subject_fk}__isnull": True})
        return q

    def declared_names(self) -> set[str]:
        return set(self.fields) | set(self.not_personal)

    def personal_fields(self) -> dict[str, Field]:
        return dict(self.fields)


def store_code_for_app(app_label: str) -> str:
    """A Django app is one data store (ARCHITECTURE: kind `django`, one store per app)."""
    return f"django-{app_label}"


class PrivacyRegistry:
    def __init__(self):
        self._declarations: dict[type[models.Model], Declaration] = {}

    def register(
        self,
        model: type[models.Model],
        *,
        category: str,
        fields: Mapping[str, Field | tuple],
        not_personal: Iterable[str] = (),
        subject: str | None = None,
        identifier: str | None = None,
        created: str | None = None,
        timestamps: Iterable[str] = (),
        store: str | None = None,
        duty_ends: bool = False,
    ) -> Declaration:
        if not isinstance(model, type) or not issubclass(model, models.Model):
            raise RegistryError(f"privacy.register() takes a model class, not {model!r}.")
        if not category:
            raise RegistryError(f"{model._meta.label}: a personal model needs its row category (the one retention follows).")
        coerced = {name: Field.coerce(spec) for name, spec in fields.items()}
        overlap = set(coerced) & set(not_personal)
        if overlap:
            raise RegistryError(f"{model._meta.label}: {sorted(overlap)} declared both personal and not personal.")
        declaration = Declaration(
            model=model,
            personal=True,
            subject=subject,
            identifier=identifier,
            category=category,
            created=created,
            timestamps=tuple(timestamps),
            fields=coerced,
            not_personal=frozenset(not_personal),
            store=store,
            duty_ends=duty_ends,
        )
        if duty_ends and not any(f.erase == Erase.RETAIN for f in coerced.values()):
            raise RegistryError(f"{model._meta.label}: duty_ends is for models that keep fields under a legal duty (RETAIN).")
        return self._add(declaration)

    def register_not_personal(self, model: type[models.Model], *, reason: str) -> Declaration:
        """A model that holds no personal data at all (the register's own tables)."""
        if not reason:
            raise RegistryError(f"{model._meta.label}: say why the model holds no personal data.")
        return self._add(Declaration(model=model, personal=False, reason=reason))

    def _add(self, declaration: Declaration) -> Declaration:
        existing = self._declarations.get(declaration.model)
        if existing is not None and existing != declaration:
            raise RegistryError(f"{declaration.label} is declared twice with different contents.")
        self._declarations[declaration.model] = declaration
        return declaration

    def unregister(self, model: type[models.Model]) -> None:
        """For tests that declare a throwaway model."""
        self._declarations.pop(model, None)

    def get(self, model: type[models.Model]) -> Declaration:
        model = model._meta.concrete_model
        try:
            return self._declarations[model]
        except KeyError:
            raise NotRegistered(f"{model._meta.label} is not declared in any privacy.py") from None

    def is_registered(self, model: type[models.Model]) -> bool:
        return model._meta.concrete_model in self._declarations

    def declarations(self) -> list[Declaration]:
        return sorted(self._declarations.values(), key=lambda d: d.label)

    def personal(self) -> list[Declaration]:
        return [d for d in self.declarations() if d.personal]

    def for_category(self, code: str) -> list[Declaration]:
        """Models whose rows follow category `code` for retention."""
        return [d for d in self.personal() if d.category == code]

    def for_store(self, code: str) -> list[Declaration]:
        return [d for d in self.personal() if d.store_code == code]

    def categories(self) -> set[str]:
        """Every category code any declaration names (row categories and field categories)."""
        codes = set()
        for d in self.personal():
            codes.add(d.category)
            codes.update(f.category for f in d.fields.values())
        return codes


registry = PrivacyRegistry()
register = registry.register
register_not_personal = registry.register_not_personal
