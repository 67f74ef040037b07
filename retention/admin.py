"""The DPO's workbench for retention: rules, legal holds and purge runs (POLICY-MAP VI).

Invariants:
- Every write goes through `retention.services` (each writes its own audit event); the admin decides
  nothing. A rule is saved by `rule_save` and its validation errors come back on the form's fields; a
  hold is placed by `hold_place` and lifted by `hold_lift`.
- What makes data disappear needs its own permission and a page that says what will happen, then a
  POST: "Confirm" (`retention.confirm_retentionrule`), "Run now" (`retention.run_retentionrule`); "Preview"
  (a dry run, same permission) and "Disable" (`change_retentionrule`) are POST buttons. Lifting a hold
  needs `retention.lift_legalhold`, checked here and again by the service.
- A rule is enabled only by its confirmation, never by the form. A hold's scope is fixed once placed
  (lift it and place another); holds and rules are never deleted here, and purge runs are read-only.
- Changelists fetch what their columns show in a fixed number of queries.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from privacyops.admin_utils import ReadOnlyAdminMixin, admin_object_or_404, admin_url_for, badge, validation_messages

from . import selectors, services
from .models import LegalHold, PurgeRun, RetentionRule
from .record import rule_summary

COUNT_COLUMNS = ("matched", "held", "kept", "deleted", "anonymised")
STATUS_SEVERITY = {"completed": "ok", "failed": "red", "cancelled": "amber", "running": "info", "queued": "info"}


_url = admin_url_for("retention")


# --- Rules ------------------------------------------------------------------------------------------


class ConfirmedFilter(admin.SimpleListFilter):
    title = "confirmed"
    parameter_name = "confirmed"

    def lookups(self, request, model_admin):
        return [("yes", "Confirmed"), ("no", "Awaiting confirmation")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(confirmed_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(confirmed_at__isnull=True)
        return queryset


class RetentionRuleForm(forms.ModelForm):
    """Saves through `rule_save` (see RetentionRuleAdmin.save_model); its errors land on the form.

    The service is called in the form's validation so that an error it raises (a period it cannot parse,
    "anonymise" on a model linked through a parent, another enabled rule for the scope) is shown on the
    field it names, with the form still filled in, and nothing is written.
    """

    class Meta:
        model = RetentionRule
        fields = (
            "code",
            "name",
            "description",
            "category",
            "store",
            "policy_ref",
            "period",
            "counts_from",
            "timestamp_field",
            "action",
        )

    actor = None  # set by the admin before validation

    def _post_clean(self):
        super()._post_clean()
        self.saved_rule = None
        if self.errors or (self.instance.pk and not self.has_changed()):
            return
        try:
            self.saved_rule = services.rule_save(rule=self.instance, actor=self.actor, changed=list(self.changed_data))
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                for name, errors in exc.error_dict.items():
                    self.add_error(name if name in self.fields else None, errors)
            else:
                self.add_error(None, exc)


@admin.register(RetentionRule)
class RetentionRuleAdmin(admin.ModelAdmin):
    form = RetentionRuleForm
    list_display = (
        "code",
        "category",
        "store_or_all",
        "period",
        "counts_from",
        "action",
        "enabled",
        "confirmed",
        "last_run_at",
    )
    list_display_links = ("code",)
    list_filter = ("category", "action", "enabled", ConfirmedFilter, "counts_from", "store")
    list_select_related = ("category", "store")
    search_fields = ("code", "name", "category__code", "store__code")
    ordering = ("category__code", "code")
    readonly_fields = (
        "what_it_does",
        "enabled",
        "confirmation",
        "last_run_at",
        "recent_runs",
        "seed_digest",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("code", "name", "description", "category", "store", "policy_ref")}),
        ("What it does", {"fields": ("period", "counts_from", "timestamp_field", "action", "what_it_does")}),
        ("State", {"fields": ("enabled", "confirmation", "last_run_at", "recent_runs")}),
        ("Bookkeeping", {"fields": ("seed_digest", "created_at", "updated_at"), "classes": ("collapse",)}),
    )
    change_form_template = "admin/retention/retentionrule/change_form.html"

    def has_delete_permission(self, request, obj=None):
        return False  # a rule is disabled, never deleted: its runs point at it

    # Columns -----------------------------------------------------------------------------------------

    @admin.display(description="store", ordering="store__code")
    def store_or_all(self, obj):
        return obj.store.code if obj.store_id else "every store"

    @admin.display(description="confirmed", ordering="confirmed_at")
    def confirmed(self, obj):
        return badge("confirmed", "ok") if obj.confirmed_at else badge("awaiting confirmation", "amber")

    @admin.display(description="in short")
    def what_it_does(self, obj):
        return rule_summary(obj) if obj.pk else ""

    @admin.display(description="confirmed by")
    def confirmation(self, obj):
        if not obj.confirmed_at:
            return "not confirmed: the rule cannot run until a DPO confirms it"
        who = obj.confirmed_by.email if obj.confirmed_by_id else "(account removed)"
        return f"{who}, {timezone.localtime(obj.confirmed_at):%Y-%m-%d %H:%M}"

    @admin.display(description="recent runs")
    def recent_runs(self, obj):
        if not obj.pk:
            return ""
        runs = list(obj.runs.order_by("-created_at")[:5])
        if not runs:
            return "none yet"
        return format_html_join(
            format_html("<br>"),
            '<a href="{}">{}</a> {}',
            (
                (_url("purgerun_change", run.pk), str(run), badge(run.get_status_display(), STATUS_SEVERITY[run.status]))
                for run in runs
            ),
        )

    # Saving --------------------------------------------------------------------------------------------

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"actor": request.user})

    def save_model(self, request, obj, form, change):
        pass  # rule_save already saved it while validating the form (RetentionRuleForm); the admin only logs it

    def save_related(self, request, form, formsets, change):
        pass  # no many-to-many fields and no inlines: nothing else to save

    # Buttons and their pages ---------------------------------------------------------------------------

    def get_urls(self):
        def view(fn, suffix):
            return path(f"<path:object_id>/{suffix}/", self.admin_site.admin_view(fn), name=f"retention_retentionrule_{suffix}")

        return [
            view(self.confirm_view, "confirm"),
            view(self.preview_view, "preview"),
            view(self.run_view, "run"),
            view(self.disable_view, "disable"),
            *super().get_urls(),
        ]

    def _rule(self, request, object_id, perm: str) -> RetentionRule:
        if not request.user.has_perm(perm):
            raise PermissionDenied
        return admin_object_or_404(
            self, request, object_id, queryset=RetentionRule.objects.select_related("category", "store", "confirmed_by")
        )

    def _back(self, rule) -> HttpResponseRedirect:
        return HttpResponseRedirect(_url("retentionrule_change", rule.pk))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        user = request.user
        extra_context = {
            **(extra_context or {}),
            "can_confirm": user.has_perm("retention.confirm_retentionrule"),
            "can_run": user.has_perm("retention.run_retentionrule"),
            "can_disable": user.has_perm("retention.change_retentionrule"),
        }
        return super().change_view(request, object_id, form_url, extra_context=extra_context)

    def _page(self, request, rule, template, title, **context):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "rule": rule,
            "summary": rule_summary(rule),
            "models": [d.label for d in selectors.rule_models(rule)],
            "active_holds": selectors.active_holds().count(),
            **context,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, template, context)

    def confirm_view(self, request, object_id):
        """What the rule will do once confirmed, then (POST) `rule_confirm` (PM-VI-1)."""
        rule = self._rule(request, object_id, "retention.confirm_retentionrule")
        if request.method == "POST":
            try:
                services.rule_confirm(rule=rule, actor=request.user)
            except ValidationError as exc:
                for message in validation_messages(exc):
                    messages.error(request, message)
            else:
                messages.success(request, f"Rule {rule.code} is confirmed and enabled: it runs with the daily purge.")
            return self._back(rule)
        return self._page(request, rule, "admin/retention/retentionrule/confirm.html", f"Confirm rule {rule.code}")

    def run_view(self, request, object_id):
        """What a real run will change, then (POST) `purge_run_start` and the run's page (PM-VI-4)."""
        rule = self._rule(request, object_id, "retention.run_retentionrule")
        if request.method == "POST":
            return self._start(request, rule, dry_run=False)
        return self._page(request, rule, "admin/retention/retentionrule/run.html", f"Run rule {rule.code} now")

    def preview_view(self, request, object_id):
        """A dry run: the same counts a real run would give, nothing changed (PM-VI-4)."""
        rule = self._rule(request, object_id, "retention.run_retentionrule")
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        return self._start(request, rule, dry_run=True)

    def _start(self, request, rule, *, dry_run: bool):
        try:
            run = services.purge_run_start(rule=rule, dry_run=dry_run, actor=request.user)
        except ValidationError as exc:
            for message in validation_messages(exc):
                messages.error(request, message)
            return self._back(rule)
        messages.success(request, f"{'Preview' if dry_run else 'Run'} {run.pk} of {rule.code} started.")
        return HttpResponseRedirect(_url("purgerun_change", run.pk))

    def disable_view(self, request, object_id):
        rule = self._rule(request, object_id, "retention.change_retentionrule")
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if rule.enabled:
            services.rule_disable(rule=rule, actor=request.user)
        messages.success(request, f"Rule {rule.code} is disabled: it no longer runs.")
        return self._back(rule)


# --- Legal holds --------------------------------------------------------------------------------------


class HoldStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("lifted", "Lifted"), ("review", "Active, past its review date")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(lifted_at__isnull=True)
        if self.value() == "lifted":
            return queryset.filter(lifted_at__isnull=False)
        if self.value() == "review":
            return queryset.filter(lifted_at__isnull=True, review_date__lt=timezone.localdate())
        return queryset


class LegalHoldAddForm(forms.ModelForm):
    class Meta:
        model = LegalHold
        fields = ("subject", "category", "store", "reason", "reference", "review_date")

    def clean(self):
        data = super().clean()
        if not any(data.get(name) for name in ("subject", "category", "store")):
            raise ValidationError("Name a subject, a category or a store (or several): what the hold keeps.")
        return data


@admin.register(LegalHold)
class LegalHoldAdmin(admin.ModelAdmin):
    list_display = ("__str__", "scope", "reference", "placed_by", "placed_at", "review_date", "state")
    list_filter = (HoldStateFilter, "category", "store")
    list_select_related = ("subject", "category", "store", "placed_by")
    search_fields = ("reference", "subject__email")
    raw_id_fields = ("subject",)
    add_form = LegalHoldAddForm
    change_form_template = "admin/retention/legalhold/change_form.html"
    view_fields = (
        "state",
        "scope",
        "reason",
        "reference",
        "placed_by",
        "placed_at",
        "review_date",
        "lifted_by",
        "lifted_at",
        "lift_reason",
        "keeps",
    )

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        return self.view_fields if obj is not None else list(self.add_form.Meta.fields)

    def get_readonly_fields(self, request, obj=None):
        return self.view_fields if obj is not None else ()

    def has_change_permission(self, request, obj=None):
        # A placed hold is fixed: to change its scope, lift it and place another.
        return False if obj is not None else super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="scope")
    def scope(self, obj):
        parts = []
        if obj.subject_id:
            parts.append(f"subject {obj.subject.email}")
        if obj.category_id:
            parts.append(f"category {obj.category.code}")
        if obj.store_id:
            parts.append(f"store {obj.store.code}")
        return ", ".join(parts)

    @admin.display(description="state", ordering="lifted_at")
    def state(self, obj):
        if obj.lifted_at:
            return badge("lifted", "info")
        if obj.review_date and obj.review_date < timezone.localdate():
            return badge("active, review overdue", "amber")
        return badge("active", "ok")

    @admin.display(description="what it keeps now")
    def keeps(self, obj):
        """PM-VI-3: the rows this hold covers, per model (expired or not)."""
        counts = selectors.hold_kept_counts(obj)
        if not counts:
            return "no rows of any declared model"
        rows = format_html_join("", "<tr><td>{}</td><td class='kept-count'>{}</td></tr>", sorted(counts.items()))
        return format_html(
            '<table class="hold-kept"><thead><tr><th>Model</th><th>Rows</th></tr></thead><tbody>{}</tbody></table>', rows
        )

    def save_model(self, request, obj, form, change):
        """Placing a hold is the only write this page makes (PM-VI-3)."""
        data = form.cleaned_data
        hold = services.hold_place(
            actor=request.user,
            reason=data["reason"],
            reference=data["reference"],
            subject=data.get("subject"),
            category=data.get("category"),
            store=data.get("store"),
            review_date=data.get("review_date"),
        )
        obj.pk = hold.pk
        obj.refresh_from_db()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_lift": request.user.has_perm("retention.lift_legalhold")}
        return super().change_view(request, object_id, form_url, extra_context=extra_context)

    def get_urls(self):
        lift = path("<path:object_id>/lift/", self.admin_site.admin_view(self.lift_view), name="retention_legalhold_lift")
        return [lift, *super().get_urls()]

    def lift_view(self, request, object_id):
        """Lift a hold (DPO only): a reason, then (POST) `hold_lift` (PM-VI-3)."""
        if not request.user.has_perm("retention.lift_legalhold"):
            raise PermissionDenied
        hold = admin_object_or_404(
            self, request, object_id, queryset=LegalHold.objects.select_related("subject", "category", "store")
        )
        if not hold.is_active:
            messages.info(request, f"{hold} was already lifted.")
            return HttpResponseRedirect(_url("legalhold_change", hold.pk))
        if request.method == "POST":
            try:
                services.hold_lift(hold=hold, actor=request.user, reason=request.POST.get("reason", "").strip())
            except ValidationError as exc:
                for message in validation_messages(exc):
                    messages.error(request, message)
            else:
                messages.success(request, f"{hold} is lifted: the rows it kept follow the retention rules again.")
            return HttpResponseRedirect(_url("legalhold_change", hold.pk))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Lift {hold}",
            "hold": hold,
            "scope": self.scope(hold),
            "counts": sorted(selectors.hold_kept_counts(hold).items()),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/retention/legalhold/lift.html", context)


# --- Purge runs -------------------------------------------------------------------------------------------


def run_totals(run: PurgeRun) -> dict[str, int]:
    totals = dict.fromkeys(COUNT_COLUMNS, 0)
    for counts in (run.counts or {}).values():
        for column in COUNT_COLUMNS:
            totals[column] += counts.get(column, 0) or 0
    return totals


def run_progress(run: PurgeRun) -> tuple[int, int]:
    """(steps done, steps in all): a step is one model of the run, walked in batches."""
    total = run.total_steps or 0
    if run.status == PurgeRun.Status.COMPLETED:
        return total, total
    done = (run.position or {}).get("step", 0) if isinstance(run.position, dict) else 0
    return min(int(done or 0), total), total


@admin.register(PurgeRun)
class PurgeRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("__str__", "rule", "dry_run", "status_badge", "started_at", "finished_at", "progress", "totals")
    list_filter = ("status", "dry_run", "rule")
    list_select_related = ("rule",)
    date_hierarchy = "created_at"
    actions = None
    fields = (
        "rule",
        "dry_run",
        "status_badge",
        "requested_by",
        "created_at",
        "started_at",
        "finished_at",
        "cutoff",
        "progress",
        "counts_table",
        "batch_size",
        "attempts",
        "lease_owner",
        "lease_expires_at",
        "heartbeat_at",
        "error",
    )
    readonly_fields = fields
    change_form_template = "admin/retention/purgerun/change_form.html"

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return badge(obj.get_status_display(), STATUS_SEVERITY.get(obj.status, "info"))

    @admin.display(description="progress")
    def progress(self, obj):
        done, total = run_progress(obj)
        label = f"step {done} of {total}, {obj.batches_done} batch{'es' if obj.batches_done != 1 else ''}"
        if total:
            bar = format_html('<progress value="{}" max="{}" title="{}">{}</progress>', done, total, label, label)
        else:
            bar = format_html('<progress title="{}">{}</progress>', label, label)
        return format_html("{} <span class='run-progress'>{}</span>", bar, label)

    @admin.display(description="deleted / anonymised / held")
    def totals(self, obj):
        t = run_totals(obj)
        return f"{t['deleted']} / {t['anonymised']} / {t['held']}"

    @admin.display(description="counts per model")
    def counts_table(self, obj):
        """PM-VI-4: per model, the rows matched, held (skipped), kept for a held or kept child, deleted, anonymised."""
        if not obj.counts:
            return "none yet"
        header = format_html_join("", "<th>{}</th>", ((c,) for c in COUNT_COLUMNS))
        body = format_html_join(
            "",
            "<tr><td>{}</td>{}</tr>",
            (
                (label, format_html_join("", "<td data-count='{}'>{}</td>", ((c, counts.get(c, 0)) for c in COUNT_COLUMNS)))
                for label, counts in sorted(obj.counts.items())
            ),
        )
        t = run_totals(obj)
        total = format_html_join("", "<th>{}</th>", ((t[c],) for c in COUNT_COLUMNS))
        return format_html(
            '<table class="run-counts"><thead><tr><th>Model</th>{}</tr></thead><tbody>{}</tbody>'
            "<tfoot><tr><th>Total</th>{}</tr></tfoot></table>",
            header,
            body,
            total,
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = self.get_object(request, unquote(object_id))  # None for a malformed id, as the stock view has it
        refresh = run is not None and not run.is_finished
        return super().change_view(request, object_id, form_url, extra_context={**(extra_context or {}), "refresh": refresh})
