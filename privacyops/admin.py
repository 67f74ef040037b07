"""The audit trail in the admin: read-only for everyone, cheap on a table that only grows.

Nobody adds, changes or deletes events here (the table is append-only; PostgreSQL enforces it). The
list avoids whole-table work: no full count (show_full_result_count off, and the paginator takes the
planner's estimate or counts a capped number of rows, see admin_utils), filter choices come from a loose
index scan instead of SELECT DISTINCT, and the search is an exact subject_ref or an action prefix, both indexed.
"""

import json
import uuid
from pathlib import Path

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from .admin_utils import EstimatedCountPaginator, ReadOnlyAdminMixin
from .audit import audit_anchors_verify, audit_chain_verify, audit_distinct_values
from .models import AuditEvent


class _IndexedValueFilter(admin.SimpleListFilter):
    def lookups(self, request, model_admin):
        return [(value, value) for value in audit_distinct_values(field=self.parameter_name)]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(**{self.parameter_name: self.value()})
        return queryset


class ActionFilter(_IndexedValueFilter):
    title = "action"
    parameter_name = "action"


class ActorFilter(_IndexedValueFilter):
    title = "actor"
    parameter_name = "actor_label"


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["occurred_at", "actor_label", "action", "target", "subject_ref", "short_hash"]
    list_display_links = ["occurred_at"]
    list_filter = [ActionFilter, ActorFilter, "occurred_at"]
    search_fields = ["subject_ref", "action"]
    search_help_text = "An exact subject ref (UUID), or the beginning of an action such as register. or audit.head_anchored"
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 100
    actions = None
    fields = [
        "occurred_at",
        "actor_label",
        "actor_id",
        "action",
        "target_type",
        "target_id",
        "subject_ref",
        "pretty_details",
        "prev_hash",
        "hash",
    ]
    readonly_fields = fields
    change_list_template = "privacyops/auditevent_change_list.html"

    @admin.display(description="target")
    def target(self, obj):
        return f"{obj.target_type} #{obj.target_id}" if obj.target_type else "—"

    @admin.display(description="hash")
    def short_hash(self, obj):
        return format_html("<code title='{}'>{}…</code>", obj.hash, obj.hash[:12])

    @admin.display(description="details")
    def pretty_details(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.details, indent=2, sort_keys=True, ensure_ascii=False))

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(subject_ref=uuid.UUID(term)), False
        except ValueError:
            return queryset.filter(action__startswith=term), False

    def get_urls(self):
        verify = path(
            "verify/",
            self.admin_site.admin_view(self.verify_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_verify",
        )
        return [verify, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_verify": request.user.has_perm("privacyops.verify_auditevent")}
        return super().changelist_view(request, extra_context=extra_context)

    def verify_view(self, request):
        """Walk the whole chain and the anchor file now, and show the result (PM-VII-2)."""
        if not request.user.has_perm("privacyops.verify_auditevent"):
            raise PermissionDenied
        chain = audit_chain_verify()
        anchors = None
        anchor_path = settings.AUDIT_ANCHOR_LOG
        if anchor_path and Path(anchor_path).is_file():
            anchors = audit_anchors_verify(path=anchor_path)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Verify the audit chain",
            "chain": chain,
            "anchors": anchors,
            "anchor_path": anchor_path,
            "first_bad_url": (
                reverse("admin:privacyops_auditevent_change", args=[chain.first_bad_id]) if chain.first_bad_id else None
            ),
        }
        return TemplateResponse(request, "privacyops/auditevent_verify.html", context)
