"""The DPO's workbench for the register: every register model, with import and export.

Invariants:
- Every write goes through `inventory.services`, so each leaves an audit event: a row saved from a form
  (with the fields that changed, many-to-many included), each inline row, each deleted row (one by one
  or in bulk), and one event per imported file. The admin itself decides nothing.
- Import and export are separate permissions (`import_<model>`, `export_<model>`); the view permission
  alone neither shows the buttons nor opens the pages.
- Changelists fetch what their columns show in a fixed number of queries (select/prefetch), whatever
  the number of rows.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ERROR_FLAG
from django.core.exceptions import PermissionDenied
from django.db import models as dj_models
from django.db.models import Case, Count, Exists, OuterRef, Prefetch, Value, When
from django.forms import Textarea
from django.http import HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from import_export.admin import ImportExportModelAdmin

from privacyops.admin_utils import badge

from . import models, resources, ropa
from .services import (
    register_entries_delete,
    register_entry_delete,
    register_entry_save,
    register_export_record,
    register_import_apply,
    register_ropa_export_record,
)


def codes(objects) -> str:
    return ", ".join(sorted(o.code for o in objects))


# --- List filters -----------------------------------------------------------------------------------


class TransferFlagFilter(admin.SimpleListFilter):
    """PM-V-3: transfers without a lawful mechanism (red) or with one nobody has named yet (amber)."""

    title = "flag"
    parameter_name = "flag"

    def lookups(self, request, model_admin):
        return [("red", "Red: no mechanism"), ("amber", "Amber: mechanism unspecified"), ("any", "Any flag")]

    def queryset(self, request, queryset):
        red, amber = list(models.Transfer.RED), list(models.Transfer.AMBER)
        if self.value() == "red":
            return queryset.filter(mechanism__in=red)
        if self.value() == "amber":
            return queryset.filter(mechanism__in=amber)
        if self.value() == "any":
            return queryset.filter(mechanism__in=red + amber)
        return queryset


class PurposeBasisFilter(admin.SimpleListFilter):
    title = "lawful basis"
    parameter_name = "basis"

    def lookups(self, request, model_admin):
        return [("none", "No basis at all"), ("some", "At least one basis")]

    def queryset(self, request, queryset):
        has_basis = Exists(models.PurposeBasis.objects.filter(purpose=OuterRef("pk")))
        if self.value() == "none":
            return queryset.filter(~has_basis)
        if self.value() == "some":
            return queryset.filter(has_basis)
        return queryset


class CategoryInUseFilter(admin.SimpleListFilter):
    title = "used by a purpose"
    parameter_name = "in_use"

    def lookups(self, request, model_admin):
        return [("no", "Used by no purpose"), ("yes", "Used by a purpose")]

    def queryset(self, request, queryset):
        in_use = Exists(models.ProcessingActivity.objects.filter(category=OuterRef("pk")))
        if self.value() == "no":
            return queryset.filter(~in_use)
        if self.value() == "yes":
            return queryset.filter(in_use)
        return queryset


# --- The shared base ----------------------------------------------------------------------------------


class RegisterAdmin(ImportExportModelAdmin):
    """Saves, deletes, imports and exports through the register's services; see the module docstring."""

    formats = resources.REGISTER_FORMATS
    import_template_name = "admin/inventory/import.html"
    import_error_display = ("message", "row")
    list_per_page = 100
    # Django 6 makes https the default scheme of a typed URL; the register adopts it now.
    formfield_overrides = {dj_models.URLField: {"assume_scheme": "https"}}

    def get_resource_classes(self, request):
        return [resources.RESOURCES[self.model]]

    def get_readonly_fields(self, request, obj=None):
        own = [f for f in ("seed_digest", "updated_at") if any(x.name == f for x in self.model._meta.fields)]
        return [*super().get_readonly_fields(request, obj), *own]

    @admin.display(description="review", boolean=False, ordering="needs_review")
    def review_flag(self, obj):
        return badge("needs review", "amber") if obj.needs_review else ""

    # Saves --------------------------------------------------------------------------------------------

    def _form_m2m(self, form) -> dict:
        return {
            f.name: form.cleaned_data[f.name]
            for f in self.model._meta.many_to_many
            if f.name in form.cleaned_data and f.remote_field.through._meta.auto_created
        }

    def save_model(self, request, obj, form, change):
        if change and not form.has_changed():
            return  # nothing changed on the row itself (maybe only inline rows did): no write, no event
        register_entry_save(actor=request.user, instance=obj, changed_fields=form.changed_data, m2m=self._form_m2m(form))

    def save_related(self, request, form, formsets, change):
        # The form's many-to-many links were set by the service in save_model (inside its audit event).
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def save_formset(self, request, form, formset, change):
        formset.save(commit=False)
        for obj in formset.deleted_objects:
            register_entry_delete(actor=request.user, instance=obj)
        changed = {id(obj): fields for obj, fields in formset.changed_objects}
        for obj in formset.new_objects:
            inline_form = next(f for f in formset.forms if f.instance is obj)
            register_entry_save(actor=request.user, instance=obj, changed_fields=inline_form.changed_data)
        for obj, _fields in formset.changed_objects:
            register_entry_save(actor=request.user, instance=obj, changed_fields=changed[id(obj)])

    def delete_model(self, request, obj):
        register_entry_delete(actor=request.user, instance=obj)

    def delete_queryset(self, request, queryset):
        register_entries_delete(actor=request.user, instances=list(queryset))

    # Import -------------------------------------------------------------------------------------------

    def _uploaded_bytes(self, confirm_form) -> bytes:
        """The file exactly as uploaded, re-read in binary from the import's temporary storage."""
        storage = self.get_tmp_storage_class()(
            name=confirm_form.cleaned_data["import_file_name"],
            encoding=None,
            read_mode="rb",
            **self.get_tmp_storage_class_kwargs(),
        )
        data = storage.read()
        return data.encode("utf-8") if isinstance(data, str) else (data or b"")

    def process_dataset(self, dataset, form, request, **kwargs):
        """The confirm step: apply the whole file through the service (all-or-nothing, one audit event)."""
        kwargs.pop("file_name", None)
        resource = self.choose_import_resource_class(form, request)(**self.get_import_resource_kwargs(request, form=form))
        input_format = self.get_import_formats()[int(form.cleaned_data["format"])]()
        return register_import_apply(
            actor=request.user,
            resource=resource,
            dataset=dataset,
            file_format=input_format.get_title(),
            file_bytes=self._uploaded_bytes(form),
        )

    def process_result(self, result, request):
        if not (result.has_errors() or result.has_validation_errors()):
            return super().process_result(result, request)
        # Rows changed between the preview and the confirmation: nothing was written; show why.
        messages.error(request, "Nothing was imported: the file has rows that cannot be applied (see below).")
        import_form = self.get_import_form_class(request)(self.get_import_formats(), self.get_import_resource_classes(request))
        resource = self.get_import_resource_classes(request)[0](**self.get_import_resource_kwargs(request))
        context = {
            **self.admin_site.each_context(request),
            "title": "Import",
            "form": import_form,
            "opts": self.model._meta,
            "media": self.media + import_form.media,
            "result": result,
            "fields_list": [(resource.get_display_name(), [f.column_name for f in resource.get_user_visible_fields()])],
            "import_error_display": self.import_error_display,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, [self.import_template_name], context)

    # Export -------------------------------------------------------------------------------------------

    def export_action(self, request):
        """As the library's, but a filter the changelist refuses (a field the model lacks, a value of the
        wrong type) sends the DPO back to the list with the admin's own message instead of a 500 (issue 16):
        the library builds the changelist without the guard the changelist view has."""
        try:
            return super().export_action(request)
        except IncorrectLookupParameters:
            changelist = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
            return HttpResponseRedirect(f"{changelist}?{ERROR_FLAG}=1")

    def get_export_data(self, file_format, request, queryset, **kwargs):
        """As the library's, plus one audit event per export; every format exports text cells."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        data = self.get_data_for_export(request, queryset, **kwargs)
        register_export_record(actor=request.user, model=self.model, row_count=len(data), file_format=file_format.get_title())
        export_data = file_format.export_data(data)
        encoding = kwargs.get("encoding")
        if not file_format.is_binary() and encoding:
            export_data = export_data.encode(encoding)
        return export_data


ENTRY_SEARCH = ("code", "name", "description", "policy_ref", "dpv")
ENTRY_FIELDSETS_TAIL = (
    ("Review", {"fields": ("needs_review", "review_note")}),
    ("Bookkeeping", {"fields": ("seed_digest", "updated_at"), "classes": ("collapse",)}),
)


def entry_fieldsets(*fields):
    return ((None, {"fields": ("code", "name", "description", *fields, "policy_ref", "dpv")}), *ENTRY_FIELDSETS_TAIL)


# --- Register models -----------------------------------------------------------------------------------


@admin.register(models.CollectionSource)
class CollectionSourceAdmin(RegisterAdmin):
    list_display = ("code", "name", "category_count", "policy_ref", "review_flag", "updated_at")
    list_filter = ("needs_review",)
    search_fields = ENTRY_SEARCH
    ordering = ("code",)
    fieldsets = entry_fieldsets()

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_categories=Count("categories", distinct=True))

    @admin.display(description="categories", ordering="_categories")
    def category_count(self, obj):
        return obj._categories


class CategoryActivityInline(admin.TabularInline):
    """Which purposes use this category, and in which form. Read-only here: edit it on the purpose."""

    model = models.ProcessingActivity
    fk_name = "category"
    fields = ("purpose", "form", "is_system_record", "note")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name = "use by a purpose"
    verbose_name_plural = "used by these purposes (edit them on the purpose)"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("purpose")


@admin.register(models.DataCategory)
class DataCategoryAdmin(RegisterAdmin):
    list_display = ("code", "name", "source_list", "used_by", "store_list", "is_system_record", "policy_ref", "review_flag")
    list_filter = ("needs_review", CategoryInUseFilter, "is_system_record", "sources")
    search_fields = (*ENTRY_SEARCH, "example_fields")
    ordering = ("is_system_record", "code")
    filter_horizontal = ("sources",)
    fieldsets = entry_fieldsets("sources", "example_fields", "is_system_record", "store_list")
    inlines = [CategoryActivityInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                "sources",
                "stores",
                Prefetch("activities", queryset=models.ProcessingActivity.objects.select_related("purpose")),
            )
        )

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "store_list"]

    @admin.display(description="held in data stores")
    def store_list(self, obj):
        if obj.pk is None:
            return ""
        return codes(obj.stores.all()) or "-"

    @admin.display(description="sources")
    def source_list(self, obj):
        return codes(obj.sources.all())

    @admin.display(description="used by purposes")
    def used_by(self, obj):
        activities = sorted(obj.activities.all(), key=lambda a: a.purpose.code)
        if not activities:
            return badge("no purpose", "amber")
        return ", ".join(a.purpose.code + (" (de-identified)" if a.form == a.Form.DE_IDENTIFIED else "") for a in activities)


@admin.register(models.DataSubjectCategory)
class DataSubjectCategoryAdmin(RegisterAdmin):
    list_display = ("code", "name", "purpose_list", "dpv", "review_flag")
    list_filter = ("needs_review",)
    search_fields = ENTRY_SEARCH
    ordering = ("code",)
    fieldsets = entry_fieldsets()

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("purposes")

    @admin.display(description="purposes")
    def purpose_list(self, obj):
        return codes(obj.purposes.all())


@admin.register(models.LawfulBasis)
class LawfulBasisAdmin(RegisterAdmin):
    list_display = ("code", "name", "legal_reference", "dpv", "purpose_count", "review_flag")
    list_filter = ("needs_review",)
    search_fields = (*ENTRY_SEARCH, "legal_reference")
    ordering = ("code",)
    fieldsets = entry_fieldsets("legal_reference")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_purposes=Count("purpose_bases__purpose", distinct=True))

    @admin.display(description="purposes", ordering="_purposes")
    def purpose_count(self, obj):
        return obj._purposes


@admin.register(models.Jurisdiction)
class JurisdictionAdmin(RegisterAdmin):
    list_display = ("code", "name", "country_list", "authority_name", "review_flag")
    list_filter = ("needs_review",)
    search_fields = (*ENTRY_SEARCH, "authority_name")
    ordering = ("code",)
    fieldsets = entry_fieldsets("countries", "authority_name", "complaint_url")

    @admin.display(description="countries")
    def country_list(self, obj):
        return ", ".join(obj.countries or [])


# Notes in a table row stay short; the full text is on the row's own page.
COMPACT_TEXT = {dj_models.TextField: {"widget": Textarea(attrs={"rows": 2, "cols": 40})}}


class PurposeBasisInline(admin.TabularInline):
    model = models.PurposeBasis
    formfield_overrides = COMPACT_TEXT
    fields = ("basis", "jurisdiction", "condition", "needs_review", "review_note")
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("basis", "jurisdiction", "purpose")


class ProcessingActivityInline(admin.TabularInline):
    model = models.ProcessingActivity
    formfield_overrides = COMPACT_TEXT
    fk_name = "purpose"
    fields = ("category", "form", "is_system_record", "note")
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("category", "purpose")


@admin.register(models.Purpose)
class PurposeAdmin(RegisterAdmin):
    list_display = ("code", "name", "kind", "position", "basis_list", "category_count", "policy_ref", "review_flag")
    list_filter = ("needs_review", PurposeBasisFilter, "kind")
    search_fields = ENTRY_SEARCH
    ordering = ropa.PURPOSE_ORDER
    filter_horizontal = ("subject_categories",)
    fieldsets = (
        (None, {"fields": ("code", "name", "description", "kind", "position", "subject_categories", "policy_ref", "dpv")}),
        *ENTRY_FIELDSETS_TAIL,
    )
    inlines = [PurposeBasisInline, ProcessingActivityInline]
    import_export_change_list_template = "admin/inventory/purpose/change_list.html"

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(_categories=Count("activities", distinct=True))
            .prefetch_related(
                Prefetch("purpose_bases", queryset=models.PurposeBasis.objects.select_related("basis", "jurisdiction"))
            )
        )

    @admin.display(description="lawful bases")
    def basis_list(self, obj):
        rows = list(obj.purpose_bases.all())
        if not rows:
            return badge("no basis", "red")
        return ", ".join(sorted(r.basis.code + (f"@{r.jurisdiction.code}" if r.jurisdiction_id else "") for r in rows))

    @admin.display(description="categories", ordering="_categories")
    def category_count(self, obj):
        return obj._categories

    # The record of processing (Art. 30) ---------------------------------------------------------------

    def get_urls(self):
        return [
            path(
                "record-of-processing/",
                self.admin_site.admin_view(self.record_of_processing_view),
                name="inventory_record_of_processing",
            ),
            *super().get_urls(),
        ]

    def record_of_processing_view(self, request):
        if not request.user.has_perm("inventory.view_purpose"):
            raise PermissionDenied
        record = ropa.record_of_processing()
        fmt = request.GET.get("format")
        if fmt:
            if fmt not in ropa.FORMATS:
                return HttpResponse(
                    f"Unknown format; use one of {', '.join(ropa.FORMATS)}.", status=400, content_type="text/plain"
                )
            body = ropa.render(record, fmt)
            register_ropa_export_record(actor=request.user, file_format=fmt)
            response = HttpResponse(body, content_type=f"{ropa.CONTENT_TYPES[fmt]}; charset=utf-8")
            extension = "jsonld" if fmt == "jsonld" else fmt
            response["Content-Disposition"] = f'attachment; filename="record-of-processing.{extension}"'
            return response
        url = reverse("admin:inventory_record_of_processing")
        context = {
            **self.admin_site.each_context(request),
            "title": record["title"],
            "record": record,
            "amber_count": sum(1 for flag in record["flags"] if flag["severity"] != "red"),
            "opts": self.model._meta,
            "downloads": [(fmt.upper() if fmt != "jsonld" else "JSON-LD", f"{url}?format={fmt}") for fmt in ropa.FORMATS],
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/inventory/record_of_processing.html", context)


# Link rows follow their purpose's place in the policy (see ropa.PURPOSE_ORDER).
LINK_ORDER = (Case(When(purpose__kind=models.Purpose.Kind.MAIN, then=Value(0)), default=Value(1)), "purpose__position")


@admin.register(models.PurposeBasis)
class PurposeBasisAdmin(RegisterAdmin):
    list_display = ("purpose", "basis", "where", "condition", "review_flag")
    list_filter = ("needs_review", "basis", "jurisdiction", "purpose__kind")
    list_select_related = ("purpose", "basis", "jurisdiction")
    search_fields = ("purpose__code", "basis__code", "jurisdiction__code", "condition")
    ordering = (*LINK_ORDER, "jurisdiction__code", "basis__code")
    fields = ("purpose", "basis", "jurisdiction", "condition", "needs_review", "review_note", "seed_digest")

    @admin.display(description="jurisdiction", ordering="jurisdiction__code")
    def where(self, obj):
        return obj.jurisdiction.code if obj.jurisdiction_id else "everywhere"


@admin.register(models.ProcessingActivity)
class ProcessingActivityAdmin(RegisterAdmin):
    list_display = ("purpose", "category", "form_badge", "is_system_record", "note")
    list_filter = ("form", "is_system_record", "purpose", "category")
    list_select_related = ("purpose", "category")
    search_fields = ("purpose__code", "category__code", "note")
    ordering = (*LINK_ORDER, "category__code")
    fields = ("purpose", "category", "form", "is_system_record", "note", "seed_digest")

    @admin.display(description="form", ordering="form")
    def form_badge(self, obj):
        # PM-II-5: a de-identified use is a promise the system must keep; make it stand out.
        return badge(obj.get_form_display(), "info") if obj.form == obj.Form.DE_IDENTIFIED else obj.get_form_display()


@admin.register(models.RecipientCategory)
class RecipientCategoryAdmin(RegisterAdmin):
    list_display = ("code", "name", "recipient_list", "policy_ref", "review_flag")
    list_filter = ("needs_review",)
    search_fields = ENTRY_SEARCH
    ordering = ("code",)
    fieldsets = entry_fieldsets()

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("recipients")

    @admin.display(description="named recipients")
    def recipient_list(self, obj):
        return codes(obj.recipients.all())


@admin.register(models.Recipient)
class RecipientAdmin(RegisterAdmin):
    list_display = ("code", "name", "category", "country", "role", "purpose_list", "category_list", "review_flag")
    list_filter = ("needs_review", "category", "role", "country")
    list_select_related = ("category",)
    search_fields = (*ENTRY_SEARCH, "category__code")
    ordering = ("code",)
    filter_horizontal = ("purposes", "data_categories")
    fieldsets = entry_fieldsets("category", "country", "role", "purposes", "data_categories")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("purposes", "data_categories")

    @admin.display(description="purposes")
    def purpose_list(self, obj):
        return codes(obj.purposes.all())

    @admin.display(description="data categories")
    def category_list(self, obj):
        return codes(obj.data_categories.all())


@admin.register(models.Transfer)
class TransferAdmin(RegisterAdmin):
    list_display = ("code", "route", "to_whom", "mechanism_badge", "category_list", "review_flag")
    list_filter = (TransferFlagFilter, "mechanism", "needs_review", "to_country")
    list_select_related = ("recipient", "recipient_category")
    search_fields = (*ENTRY_SEARCH, "from_country", "to_country", "recipient__code")
    ordering = ("code",)
    filter_horizontal = ("data_categories",)
    fieldsets = entry_fieldsets("from_country", "to_country", "recipient", "recipient_category", "data_categories", "mechanism")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("data_categories")

    @admin.display(description="route", ordering="to_country")
    def route(self, obj):
        return f"{obj.from_country} → {obj.to_country}"

    @admin.display(description="recipient")
    def to_whom(self, obj):
        if obj.recipient_id:
            return obj.recipient.code
        return obj.recipient_category.code if obj.recipient_category_id else ""

    @admin.display(description="mechanism", ordering="mechanism")
    def mechanism_badge(self, obj):
        # PM-V-3: none is red, unspecified amber; a named mechanism is plain text.
        return badge(obj.get_mechanism_display(), obj.flag) if obj.flag else obj.get_mechanism_display()

    @admin.display(description="data categories")
    def category_list(self, obj):
        return codes(obj.data_categories.all())


@admin.register(models.DataStore)
class DataStoreAdmin(RegisterAdmin):
    list_display = ("code", "name", "kind", "category_list", "owner", "location_country", "app_label", "review_flag")
    list_filter = ("needs_review", "kind", "location_country", "categories")
    search_fields = (*ENTRY_SEARCH, "owner", "app_label")
    ordering = ("code",)
    filter_horizontal = ("categories",)
    fieldsets = entry_fieldsets("owner", "location_country", "kind", "app_label", "categories")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("categories")

    def get_readonly_fields(self, request, obj=None):
        # A Django app's categories are a fact of the code: the registry sync rewrites them.
        synced = ["kind", "app_label", "categories"] if obj is not None and obj.kind == models.DataStore.Kind.DJANGO else []
        return [*super().get_readonly_fields(request, obj), *synced]

    @admin.display(description="categories")
    def category_list(self, obj):
        return codes(obj.categories.all()) or badge("none", "amber")
