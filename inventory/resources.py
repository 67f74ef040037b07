"""Import and export of the register with django-import-export (CSV, XLSX, JSON).

Design and invariants:
- Rows are matched by natural keys, never by database id: `code` for entries; the codes of
  (purpose, basis, jurisdiction) for PurposeBasis and of (purpose, category) for ProcessingActivity.
  Foreign keys and many-to-many links travel as codes. `seed_digest` and `updated_at` never travel:
  they are the system's own bookkeeping (an imported change leaves the digest stale, so `loadpolicy`
  treats the row as edited by the DPO and leaves it alone).
- An unknown code is a validation error on its column. The library's own widgets raise DoesNotExist
  for a foreign key (a bare "matching query does not exist") and silently drop unknown many-to-many
  codes; ours name the column and the code.
- Unchanged rows are skipped and reported (`report_skipped`): re-importing an export changes nothing,
  and the library numbers error rows by their position among reported rows, so every row must be
  reported for "Line number" to be the file's data row.
- Every format carries text cells (booleans as 1/0, lists as comma-separated codes), so the three
  formats go through the same widgets and round-trip alike.
- Spreadsheet formulae: with IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT the library *deletes* a leading
  "=" (changing the data) and turns empty cells into the text "None". Our CSV and XLSX formats instead
  prefix an apostrophe to any cell a spreadsheet would run (= + - @ tab CR), and strip exactly that
  prefix on import, so an escaped export imports back to the original value. JSON is not opened by
  spreadsheets and is never escaped.
"""

from __future__ import annotations

import tablib
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db.models import CharField, TextField
from import_export import fields, resources
from import_export.formats.base_formats import CSV, JSON, XLSX
from import_export.widgets import ForeignKeyWidget, ManyToManyWidget, Widget

from . import models

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
ESCAPE_PREFIX = "'"


def escape_formula(value):
    """Make a cell inert in a spreadsheet; `unescape_formula` undoes it exactly."""
    if not isinstance(value, str) or not value:
        return value
    starts_formula = value[0] in FORMULA_TRIGGERS
    # A value that already looks escaped gets a second apostrophe, so unescaping restores it unchanged.
    looks_escaped = value[0] == ESCAPE_PREFIX and len(value) > 1 and value[1] in (*FORMULA_TRIGGERS, ESCAPE_PREFIX)
    return ESCAPE_PREFIX + value if starts_formula or looks_escaped else value


def unescape_formula(value):
    if isinstance(value, str) and len(value) > 1 and value[0] == ESCAPE_PREFIX and value[1] in (*FORMULA_TRIGGERS, ESCAPE_PREFIX):
        return value[1:]
    return value


def _map_cells(dataset: tablib.Dataset, func) -> tablib.Dataset:
    mapped = tablib.Dataset(headers=dataset.headers)
    for row in dataset:
        mapped.append([func(cell) for cell in row])
    return mapped


class SpreadsheetFormatMixin:
    def _escape_formulae(self, dataset):
        # Called by the library when IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT is on; rewrites in place.
        escaped = _map_cells(dataset, escape_formula)
        dataset.wipe()
        dataset.headers = escaped.headers
        for row in escaped:
            dataset.append(row)

    def create_dataset(self, in_stream, **kwargs):
        return _map_cells(super().create_dataset(in_stream, **kwargs), unescape_formula)


class RegisterCSV(SpreadsheetFormatMixin, CSV):
    pass


class RegisterXLSX(SpreadsheetFormatMixin, XLSX):
    def create_dataset(self, in_stream):
        return _map_cells(XLSX.create_dataset(self, in_stream), unescape_formula)


class RegisterJSON(JSON):
    def _escape_formulae(self, dataset):
        """JSON is not a spreadsheet: values travel unchanged."""


REGISTER_FORMATS = [RegisterCSV, RegisterXLSX, RegisterJSON]


class CodeForeignKeyWidget(ForeignKeyWidget):
    """A foreign key written and read as the related entry's code."""

    def __init__(self, model):
        super().__init__(model, field="code")

    def clean(self, value, row=None, **kwargs):
        code = "" if value is None else str(value).strip()
        if not code:
            return None
        try:
            return self.model.objects.get(code=code)
        except self.model.DoesNotExist:
            raise ValueError(f"no {self.model._meta.verbose_name} has the code “{code}”") from None


class CodeManyToManyWidget(ManyToManyWidget):
    """Many-to-many links as a comma-separated list of codes, sorted on export."""

    def __init__(self, model):
        super().__init__(model, separator=",", field="code")

    def clean(self, value, row=None, **kwargs):
        codes = list(dict.fromkeys(c.strip() for c in str(value or "").split(self.separator) if c.strip()))
        found = {obj.code: obj for obj in self.model.objects.filter(code__in=codes)}
        missing = [c for c in codes if c not in found]
        if missing:
            plural = self.model._meta.verbose_name_plural
            raise ValueError(f"no {plural} have the codes: {', '.join(missing)}")
        return [found[c] for c in codes]

    def render(self, value, obj=None, **kwargs):
        if value is None:
            return ""
        return self.separator.join(sorted(related.code for related in value.all()))


class CodeListWidget(Widget):
    """A JSON list of short codes (a jurisdiction's countries) as "FR,DE"; empty is an empty list."""

    def clean(self, value, row=None, **kwargs):
        return [c.strip() for c in str(value or "").split(",") if c.strip()]

    def render(self, value, obj=None, **kwargs):
        return ",".join(value or [])


def code_fk(model, attribute: str) -> fields.Field:
    return fields.Field(attribute=attribute, column_name=attribute, widget=CodeForeignKeyWidget(model))


def code_m2m(model, attribute: str) -> fields.Field:
    return fields.Field(attribute=attribute, column_name=attribute, widget=CodeManyToManyWidget(model))


ENTRY_FIELDS = ("code", "name", "description", "policy_ref", "dpv", "needs_review", "review_note")


class RegisterResource(resources.ModelResource):
    """Shared behaviour: natural keys, skip-unchanged, unknown codes as validation errors on their column."""

    class Meta:
        import_id_fields = ("code",)
        skip_unchanged = True
        report_skipped = True
        clean_model_instances = True
        use_transactions = True
        skip_html_diff = False

    def before_import_row(self, row, **kwargs):
        # Spreadsheets (and hand-written JSON) give an empty cell as None; the register's text columns
        # are never NULL, and an empty text is what the export wrote.
        for field in self.get_import_fields():
            column = field.column_name
            if column in row and row[column] is None and self._is_text(field.attribute):
                row[column] = ""

    def _is_text(self, attribute: str) -> bool:
        try:
            field = self._meta.model._meta.get_field(attribute)
        except FieldDoesNotExist:
            return False
        return isinstance(field, CharField | TextField) and not field.null

    def get_instance(self, instance_loader, row):
        # Clean the key columns first so an unknown code is reported on its column, not as a crash.
        errors = {}
        for name in self.get_import_id_fields():
            field = self.fields[name]
            if field.column_name not in row:
                continue  # the library reports a missing key column for the whole file
            try:
                field.clean(row)
            except ValueError as e:
                errors[field.attribute] = [ValidationError(str(e))]
        if errors:
            raise ValidationError(errors)
        return super().get_instance(instance_loader, row)

    def import_instance(self, instance, row, **kwargs):
        # The library imports many-to-many columns only after the save, where a bad code is a crash;
        # checking them here makes it a validation error of the row, before anything is written.
        errors = {}
        try:
            super().import_instance(instance, row, **kwargs)
        except ValidationError as e:
            errors = e.update_error_dict(errors)
        for field in self.get_import_fields():
            if isinstance(field.widget, ManyToManyWidget) and field.column_name in row:
                try:
                    field.clean(row)
                except ValueError as e:
                    errors[field.attribute] = [ValidationError(str(e))]
        if errors:
            raise ValidationError(errors)


class CollectionSourceResource(RegisterResource):
    class Meta:
        model = models.CollectionSource
        fields = ENTRY_FIELDS


class DataCategoryResource(RegisterResource):
    sources = code_m2m(models.CollectionSource, "sources")

    class Meta:
        model = models.DataCategory
        fields = (*ENTRY_FIELDS, "sources", "example_fields", "is_system_record")


class DataSubjectCategoryResource(RegisterResource):
    class Meta:
        model = models.DataSubjectCategory
        fields = ENTRY_FIELDS


class LawfulBasisResource(RegisterResource):
    class Meta:
        model = models.LawfulBasis
        fields = (*ENTRY_FIELDS, "legal_reference")


class JurisdictionResource(RegisterResource):
    countries = fields.Field(attribute="countries", column_name="countries", widget=CodeListWidget())

    class Meta:
        model = models.Jurisdiction
        fields = (*ENTRY_FIELDS, "countries", "authority_name", "complaint_url")


class PurposeResource(RegisterResource):
    # Bases and categories are link tables with their own columns; they have their own resources.
    subject_categories = code_m2m(models.DataSubjectCategory, "subject_categories")

    class Meta:
        model = models.Purpose
        fields = (*ENTRY_FIELDS, "kind", "position", "subject_categories")


class PurposeBasisResource(RegisterResource):
    purpose = code_fk(models.Purpose, "purpose")
    basis = code_fk(models.LawfulBasis, "basis")
    jurisdiction = code_fk(models.Jurisdiction, "jurisdiction")

    class Meta:
        model = models.PurposeBasis
        import_id_fields = ("purpose", "basis", "jurisdiction")
        fields = ("purpose", "basis", "jurisdiction", "condition", "needs_review", "review_note")


class ProcessingActivityResource(RegisterResource):
    purpose = code_fk(models.Purpose, "purpose")
    category = code_fk(models.DataCategory, "category")

    class Meta:
        model = models.ProcessingActivity
        import_id_fields = ("purpose", "category")
        fields = ("purpose", "category", "form", "is_system_record", "note")


class RecipientCategoryResource(RegisterResource):
    class Meta:
        model = models.RecipientCategory
        fields = ENTRY_FIELDS


class RecipientResource(RegisterResource):
    category = code_fk(models.RecipientCategory, "category")
    purposes = code_m2m(models.Purpose, "purposes")
    data_categories = code_m2m(models.DataCategory, "data_categories")

    class Meta:
        model = models.Recipient
        fields = (*ENTRY_FIELDS, "category", "country", "role", "purposes", "data_categories")


class TransferResource(RegisterResource):
    recipient = code_fk(models.Recipient, "recipient")
    recipient_category = code_fk(models.RecipientCategory, "recipient_category")
    data_categories = code_m2m(models.DataCategory, "data_categories")

    class Meta:
        model = models.Transfer
        fields = (
            *ENTRY_FIELDS,
            "from_country",
            "to_country",
            "recipient",
            "recipient_category",
            "data_categories",
            "mechanism",
        )


class DataStoreResource(RegisterResource):
    class Meta:
        model = models.DataStore
        fields = (*ENTRY_FIELDS, "owner", "location_country", "kind", "app_label")


RESOURCES = {
    resource._meta.model: resource
    for resource in (
        CollectionSourceResource,
        DataCategoryResource,
        DataSubjectCategoryResource,
        LawfulBasisResource,
        JurisdictionResource,
        PurposeResource,
        PurposeBasisResource,
        ProcessingActivityResource,
        RecipientCategoryResource,
        RecipientResource,
        TransferResource,
        DataStoreResource,
    )
}
