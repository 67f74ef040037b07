"""Import of historical consents in the workbench: `ConsentImportMixin` goes on ConsentEventAdmin.

The page is django-import-export's two steps -- upload and preview, then confirm -- with
`consents.imports.resources.ConsentEventResource` behind them (see its docstring for what makes it fast and how it
writes through the ledger's rules). What this mixin adds:
- Permission: `consents.import_consentevent` (the library's IMPORT_EXPORT_IMPORT_PERMISSION_CODE "import"),
  a permission of its own, separate from recording one consent on a subject's documented instruction.
- The file's SHA-256, taken from the bytes as uploaded, goes into the audit event and every imported
  event; the same file cannot be imported twice.
- All or nothing, also at the confirm step: when a row fails there (the data changed since the preview),
  nothing is written and the page shows why, instead of the library's "Import finished" redirect.
- No admin LogEntry per row: the import's one audit event is the record (20 000 LogEntries would cost more
  than the import and say less).
- Line numbers as in a spreadsheet or an editor: the header is line 1.
"""

from __future__ import annotations

import hashlib

from django.contrib import messages
from django.template.response import TemplateResponse
from import_export.admin import ImportMixin
from import_export.formats.base_formats import CSV, XLSX

from . import bulk
from .resources import PREVIEW_ROWS, ConsentEventResource


class ConsentImportMixin(ImportMixin):
    """Adds "Import historical consents" (CSV or XLSX) to a ModelAdmin of ConsentEvent."""

    resource_classes = [ConsentEventResource]
    import_formats = [CSV, XLSX]
    import_template_name = "admin/consents/consentevent/import.html"
    import_error_display = ("message",)
    skip_admin_log = True

    def get_import_resource_kwargs(self, request, **kwargs):
        resource_kwargs = super().get_import_resource_kwargs(request, **kwargs)
        form = kwargs.get("form")
        source = self._import_source(form) if form is not None and form.is_bound and form.is_valid() else None
        if source is not None:
            resource_kwargs["source"] = source
        return resource_kwargs

    def _import_source(self, form) -> bulk.ImportSource | None:
        """The uploaded file's name and SHA-256: from the upload (preview) or from the temporary storage
        the library keeps it in between the two steps (confirm)."""
        cleaned = form.cleaned_data
        formats = self.get_import_formats()
        file_format = formats[int(cleaned["format"])]().get_title() if "format" in cleaned else "csv"
        if cleaned.get("import_file") is not None:
            upload = cleaned["import_file"]
            digest = hashlib.sha256()
            for chunk in upload.chunks():
                digest.update(chunk)
            upload.seek(0)
            return bulk.ImportSource(name=upload.name, sha256=digest.hexdigest(), file_format=file_format, channel="admin")
        if cleaned.get("import_file_name"):
            storage = self.get_tmp_storage_class()(
                name=cleaned["import_file_name"], encoding=None, read_mode="rb", **self.get_tmp_storage_class_kwargs()
            )
            data = storage.read()
            data = data.encode("utf-8") if isinstance(data, str) else (data or b"")
            return bulk.ImportSource.for_bytes(
                data, name=cleaned.get("original_file_name") or "import", file_format=file_format, channel="admin"
            )
        return None

    def get_import_context_data(self, **kwargs):
        context = super().get_import_context_data(**kwargs)
        context.update(
            preview_rows=PREVIEW_ROWS,
            columns=bulk.COLUMNS,
            required_columns=bulk.REQUIRED_COLUMNS,
            actions=bulk.IMPORTABLE_ACTIONS,
        )
        return context

    def process_result(self, result, request):
        if result.has_errors() or result.has_validation_errors():
            # The confirm step found a problem (the data changed since the preview): nothing was written.
            messages.error(request, "Nothing was imported: the file has rows that cannot be applied (see below).")
            form_class = self.get_import_form_class(request)
            import_form = form_class(self.get_import_formats(), self.get_import_resource_classes(request))
            context = {
                **self.admin_site.each_context(request),
                **self.get_import_context_data(),
                "title": "Import historical consents",
                "form": import_form,
                "opts": self.model._meta,
                "media": self.media + import_form.media,
                "result": result,
                "fields_list": [],
                "import_error_display": self.import_error_display,
            }
            request.current_app = self.admin_site.name
            return TemplateResponse(request, [self.import_template_name], context)
        return super().process_result(result, request)

    def add_success_message(self, result, request):
        total = result.totals.get("new", 0)
        messages.success(
            request,
            f"Imported {total} historical consent events in one step; the audit trail records the file and its counts.",
        )
