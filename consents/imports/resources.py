"""Historical consents through django-import-export (issue 4 §7): the admin's tuned resource and the
library-defaults baseline the benchmark compares it with.

`ConsentEventResource` (the admin's) keeps the library's preview and its per-row error report, and
replaces everything behind them:
- Bulk mode, one pass, no per-row queries: `before_import` reads every account, purpose, notice and policy
  version the file names in a few bulk queries (`consents.imports.bulk.RowValidator`); each row is then checked in
  memory, with exactly the rules and messages of `consents.imports.bulk`, and a bad cell becomes a validation error
  on its column (the library then shows the row with its line). No instance loader (imports only create),
  no diff (`skip_diff`), no model instance per row, no savepoint per row (`use_bulk`).
- The library's `bulk_create` hook never writes: it hands each batch of checked rows to a list. When the
  whole file is valid and it is not the preview, `after_import` appends them all in one call to
  `consents.imports.bulk.consent_events_append_prepared` -- chains, hashes, states, chain versions and the one audit
  event, under the ledger's rules -- inside the library's transaction (IMPORT_EXPORT_USE_TRANSACTIONS), so
  a failure there rolls everything back. `batch_size` is the size of its INSERTs.
- The preview shows the first PREVIEW_ROWS rows and the totals; rendering a diff of 20 000 rows would cost
  more than checking them.

`DefaultConsentEventResource` is the library with its defaults (instance loader, diff, one savepoint and
one save per row), each row written by `consents.ledger.consent_record`: the honest baseline for
`bench/consent_import.py`. The admin does not use it.
"""

from __future__ import annotations

from import_export import fields, resources, widgets

from accounts.models import User
from consents.ledger import consent_record, notice_current
from consents.models import ConsentEvent, ConsentNotice, ConsentPurpose

from . import bulk

PREVIEW_ROWS = 100


def _line(kwargs) -> int:
    """The file line of the library's row number (row 1 is the first row under the header, line 2)."""
    return int(kwargs.get("row_number") or 0) + 1


class _CheckedRow:
    """What the tuned resource keeps per row instead of a model instance."""

    __slots__ = ("prepared",)
    pk = None

    def __init__(self):
        self.prepared: bulk.PreparedRow | None = None

    def __str__(self):
        p = self.prepared
        return f"{p.subject_ref} {p.purpose.code} {p.action} {p.effective_at:%Y-%m-%d %H:%M}" if p else "consent event"


class ConsentEventResource(resources.ModelResource):
    """The admin's import of historical consents; see the module docstring."""

    def __init__(self, *, source: bulk.ImportSource | None = None, **kwargs):
        super().__init__(**kwargs)
        self.source = source
        self.validator: bulk.RowValidator | None = None
        self.checked: list[bulk.PreparedRow] = []
        self.append_result: bulk.ImportResult | None = None

    class Meta:
        model = ConsentEvent
        fields = bulk.COLUMNS
        import_order = bulk.COLUMNS
        use_bulk = True
        batch_size = bulk.BATCH_SIZE
        skip_diff = True
        skip_html_diff = True
        force_init_instance = True
        skip_unchanged = False
        clean_model_instances = False
        use_transactions = True

    # Before the rows --------------------------------------------------------------------------------

    def before_import(self, dataset, **kwargs):
        headers = [str(h or "").strip() for h in (dataset.headers or [])]
        problems = [f"unknown column “{h}”" for h in headers if h not in bulk.COLUMNS]
        problems += [f"missing column “{c}”" for c in bulk.REQUIRED_COLUMNS if c not in headers]
        if problems:
            columns = ", ".join(bulk.COLUMNS)
            raise ValueError(f"The file's header does not match the format: {'; '.join(problems)}. The columns are {columns}.")
        dataset.headers = headers
        if self.source is not None:
            bulk.source_check(self.source)
        self.validator = bulk.RowValidator(
            subject_refs=dataset["subject_ref"], purpose_codes=(bulk.cell_text(c) for c in dataset["purpose"])
        )
        self.checked = []

    def get_diff_headers(self):
        return list(bulk.COLUMNS)

    # Each row ---------------------------------------------------------------------------------------

    def init_instance(self, row=None):
        return _CheckedRow()

    def import_instance(self, instance, row, **kwargs):
        from django.core.exceptions import ValidationError

        try:
            instance.prepared = self.validator.clean(row, line=_line(kwargs))
        except bulk.ImportInvalid as e:
            errors: dict[str, list[str]] = {}
            for error in e.errors:
                errors.setdefault(error.column or "__all__", []).append(error.message)
            raise ValidationError(errors) from None

    def after_import_row(self, row, row_result, **kwargs):
        if int(kwargs.get("row_number") or 0) <= PREVIEW_ROWS:
            row_result.diff = [bulk.cell_text(row.get(column)) for column in bulk.COLUMNS]

    def bulk_create(self, using_transactions, dry_run, raise_errors, batch_size=None, result=None):
        """The library's batch hook: keep the checked rows; they are written together in after_import."""
        self.checked.extend(instance.prepared for instance in self.create_instances)
        self.create_instances.clear()

    # After the rows ---------------------------------------------------------------------------------

    def after_import(self, dataset, result, **kwargs):
        if kwargs.get("dry_run") or result.has_errors() or result.has_validation_errors():
            return  # the preview writes nothing; nor does a file with a bad row
        source = self.source or bulk.ImportSource.for_bytes(
            dataset.export("csv").encode("utf-8"), name=kwargs.get("file_name") or "import", file_format="csv", channel="admin"
        )
        self.append_result = bulk.consent_events_append_prepared(
            self.checked, actor=kwargs.get("user"), source=source, batch_size=self._meta.batch_size
        )


class MomentWidget(widgets.Widget):
    """An effective time in the import grammar (consents.imports.bulk.parse_moment); the library's DateTimeWidget
    reads only the server's DATETIME_INPUT_FORMATS, which have no UTC offset."""

    def clean(self, value, row=None, **kwargs):
        try:
            return bulk.parse_moment(value)
        except ValueError as e:
            raise ValueError(bulk.MESSAGES[str(e)]) from None


class DefaultConsentEventResource(resources.ModelResource):
    """The library's defaults, each row written by consents.ledger.consent_record (the bench's baseline)."""

    purpose = fields.Field(attribute="purpose", column_name="purpose", widget=widgets.ForeignKeyWidget(ConsentPurpose, "code"))
    effective_at = fields.Field(attribute="effective_at", column_name="effective_at", widget=MomentWidget())

    def __init__(self, *, source: bulk.ImportSource | None = None, **kwargs):
        super().__init__(**kwargs)
        self.source = source
        self.actor = None

    class Meta:
        model = ConsentEvent
        # "id" is the library's default import key: a file without an id column creates every row.
        fields = ("id", *bulk.COLUMNS)
        import_order = bulk.COLUMNS

    def before_import(self, dataset, **kwargs):
        self.actor = kwargs.get("user")

    def do_instance_save(self, instance, is_create):
        language = instance.language or bulk.DEFAULT_LANGUAGE
        if instance.notice_version:
            notices = ConsentNotice.objects.filter(purpose=instance.purpose, version=instance.notice_version)
            notice = notices.filter(language=language).first() or notices.filter(language=bulk.DEFAULT_LANGUAGE).first()
            if notice is None:
                raise ValueError(bulk.MESSAGES["notice_unknown"])
        else:
            notice = notice_current(purpose=instance.purpose, language=language)
        event = consent_record(
            purpose=instance.purpose,
            action=instance.action,
            method=ConsentEvent.Method.IMPORT,
            subject=User.objects.get(subject_ref=instance.subject_ref),
            notice=notice,
            jurisdiction=instance.jurisdiction or "",
            language=language,
            effective_at=instance.effective_at,
            actor=self.actor,
            instruction=self.source.instruction if self.source else "",
        )
        instance.pk = event.pk
