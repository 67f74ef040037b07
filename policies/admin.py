"""The DPO's workbench for policy versions, acceptances and notice deliveries (POLICY-MAP intro, X).

Invariants:
- Every write goes through `policies.services` / `policies.notices`, each with its own audit event. Drafts are
  saved by `policy_version_save` and deleted by `policy_version_delete`; both refuse a published version,
  which the admin shows read-only.
- Publishing needs `policies.publish_policyversion`, checked here at the top of the view (the service
  trusts its caller). Its page says what will happen -- how many account holders get the e-mail, how much
  notice they get -- and asks for the short-notice reason only when the effective date is too close.
- Acceptances and deliveries are read-only lists that name subjects only by `subject_ref` (never an
  e-mail address), searchable by an exact subject_ref. The only writes on deliveries are the DPO's
  decisions about unconfirmed or failed notices ("Send again", "Mark as sent"), with the publish permission.
- Lists fetch what their columns show in a fixed number of queries; the acceptance list never counts a
  huge table (EstimatedCountPaginator).
"""

from __future__ import annotations

import re
import uuid

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q, Subquery
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from privacyops.admin_utils import EstimatedCountPaginator, ReadOnlyAdminMixin, admin_object_or_404, badge

from .models import PolicyAcceptance, PolicyNoticeDelivery, PolicyVersion
from .notices import CLAIM_STALE_AFTER, policy_notice_confirm, policy_notice_resend
from .selectors import policy_notice_recipients, policy_notice_short, policy_version_in_force
from .services import policy_version_delete, policy_version_publish, policy_version_save

PUBLISH_PERMISSION = "policies.publish_policyversion"
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
Status = PolicyNoticeDelivery.Status


def _uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except (ValueError, AttributeError):
        return None


# --- Policy versions ------------------------------------------------------------------------------


class HttpsURLField(forms.URLField):
    """A URL field that reads a bare domain as https (Django 6's default; no deprecation warning)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("assume_scheme", "https")
        super().__init__(**kwargs)


class PolicyVersionForm(forms.ModelForm):
    class Meta:
        model = PolicyVersion
        fields = ("label", "last_updated", "effective_at", "summary", "text", "url")
        field_classes = {"url": HttpsURLField}
        help_texts = {
            "url": f"Leave empty for {settings.POLICY_URL}.",
            "effective_at": f"At least {settings.POLICY_NOTICE_DAYS} days after publication, or publishing asks for a reason.",
        }

    def clean_label(self):
        label = self.cleaned_data["label"].strip()
        if not LABEL_PATTERN.match(label):
            raise ValidationError(
                "Use letters, digits, dots, dashes and underscores, e.g. 2025-09-01: it goes into the page's address."
            )
        return label


class PublishForm(forms.Form):
    short_notice_reason = forms.ChoiceField(
        label="Reason for the short notice",
        choices=[c for c in PolicyVersion.ShortNoticeReason.choices if c[0]],
        required=False,
        widget=forms.RadioSelect,
    )
    short_notice_note = forms.CharField(label="Note", required=False, widget=forms.Textarea(attrs={"rows": 3}))


@admin.register(PolicyVersion)
class PolicyVersionAdmin(admin.ModelAdmin):
    form = PolicyVersionForm
    list_display = ("label", "last_updated", "effective_at", "state", "published_at", "notice_progress")
    list_display_links = ("label",)
    ordering = ("-effective_at",)
    search_fields = ("label",)
    readonly_fields = (
        "state",
        "short_notice_reason",
        "short_notice_note",
        "published_at",
        "published_by_label",
        "notice_sent_at",
        "notice_progress",
    )
    change_form_template = "admin/policies/policyversion/change_form.html"

    def get_fieldsets(self, request, obj=None):
        fieldsets = [
            ("Version", {"fields": ("label", "last_updated", "effective_at", "url")}),
            ("What it says", {"fields": ("summary", "text")}),
        ]
        if obj is not None:
            fieldsets.append(
                (
                    "Publication and notices",
                    {
                        "fields": (
                            "state",
                            "published_at",
                            "published_by_label",
                            "short_notice_reason",
                            "short_notice_note",
                            "notice_sent_at",
                            "notice_progress",
                        )
                    },
                )
            )
        return fieldsets

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("published_by")
            .annotate(
                n_sent=Count("deliveries", filter=Q(deliveries__status__in=[Status.SENT, Status.IN_SERVICE])),
                n_rows=Count("deliveries"),
                in_force_pk=Subquery(
                    PolicyVersion.objects.filter(published_at__isnull=False, effective_at__lte=timezone.now())
                    .order_by("-effective_at", "-id")
                    .values("pk")[:1]
                ),
            )
        )

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.published_at is not None:
            return ("label", "last_updated", "effective_at", "url", "summary", "text", *self.readonly_fields)
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.published_at is not None:
            return False
        return super().has_delete_permission(request, obj)

    # Columns -----------------------------------------------------------------------------------------

    @admin.display(description="state")
    def state(self, obj):
        if obj.published_at is None:
            return badge("draft", "amber")
        if obj.effective_at > timezone.now():
            return badge("published, upcoming", "info")
        in_force_pk = obj.in_force_pk if hasattr(obj, "in_force_pk") else getattr(policy_version_in_force(), "pk", None)
        if in_force_pk == obj.pk:
            return badge("in force", "ok")
        return badge("superseded", "info")

    @admin.display(description="published by")
    def published_by_label(self, obj):
        if obj.published_at is None:
            return "—"
        return obj.published_by.get_username() if obj.published_by_id else "loadpolicy (the seed), or a removed account"

    @admin.display(description="notices sent")
    def notice_progress(self, obj):
        """Sent (e-mailed or acknowledged in the service) out of everyone the run covers so far."""
        if obj.published_at is None:
            return "—"
        sent = getattr(obj, "n_sent", None)
        rows = getattr(obj, "n_rows", None)
        if sent is None:
            sent = obj.deliveries.filter(status__in=[Status.SENT, Status.IN_SERVICE]).count()
            rows = obj.deliveries.count()
        remaining = 0 if obj.notice_sent_at else policy_notice_recipients(version=obj).count()
        text = f"{sent} / {rows + remaining}"
        if obj.notice_sent_at and rows == 0:
            return "none (nobody to notify)"
        return text if obj.notice_sent_at else format_html("{} {}", text, badge("sending", "info"))

    # Saving -------------------------------------------------------------------------------------------

    def save_model(self, request, obj, form, change):
        if change and not form.has_changed():
            return
        policy_version_save(actor=request.user, version=obj, changed_fields=form.changed_data)

    def save_related(self, request, form, formsets, change):
        pass  # no many-to-many fields and no inlines

    def delete_model(self, request, obj):
        policy_version_delete(actor=request.user, version=obj)

    def delete_queryset(self, request, queryset):
        for version in queryset:
            policy_version_delete(actor=request.user, version=version)

    # Publishing --------------------------------------------------------------------------------------

    def get_urls(self):
        publish = path(
            "<path:object_id>/publish/", self.admin_site.admin_view(self.publish_view), name="policies_policyversion_publish"
        )
        return [publish, *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_publish": request.user.has_perm(PUBLISH_PERMISSION)}
        return super().change_view(request, object_id, form_url, extra_context=extra_context)

    def publish_view(self, request, object_id):
        """PM-X-1, PM-X-2: what publishing will do, then (POST) `policy_version_publish`."""
        if not request.user.has_perm(PUBLISH_PERMISSION):
            raise PermissionDenied
        version = admin_object_or_404(self, request, object_id, queryset=PolicyVersion.objects.all())
        back = HttpResponseRedirect(reverse("admin:policies_policyversion_change", args=[version.pk]))
        if version.published_at is not None:
            messages.info(request, f"Policy {version.label} is already published.")
            return back
        form = PublishForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                policy_version_publish(
                    actor=request.user,
                    version=version,
                    short_notice_reason=form.cleaned_data["short_notice_reason"],
                    short_notice_note=form.cleaned_data["short_notice_note"],
                )
            except ValidationError as exc:
                for field, problems in getattr(exc, "message_dict", {None: exc.messages}).items():
                    for problem in problems:
                        if field in form.fields:
                            form.add_error(field, problem)
                        else:
                            form.add_error(None, problem)
            else:
                messages.success(
                    request,
                    f"Policy {version.label} is published. The notice e-mails are going out now, in batches; "
                    "the progress shows on this page.",
                )
                return back
        now = timezone.now()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Publish policy {version.label}",
            "version": version,
            "form": form,
            "recipients": policy_notice_recipients(version=version).count(),
            "short_notice": policy_notice_short(version=version, now=now),
            "notice_days": settings.POLICY_NOTICE_DAYS,
            "days_ahead": (version.effective_at - now).days,
            "in_force": policy_version_in_force(at=now),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/policies/policyversion/publish.html", context)


# --- Acceptances ----------------------------------------------------------------------------------


class SubjectRefSearchMixin:
    """Search by an exact subject_ref only: an index lookup, and no e-mail addresses on these lists."""

    subject_ref_lookup = "subject_ref"
    search_help_text = "An exact subject reference (UUID)."

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        ref = _uuid(search_term)
        if ref is None:
            return queryset.none(), False
        return queryset.filter(**{self.subject_ref_lookup: ref}), False


@admin.register(PolicyAcceptance)
class PolicyAcceptanceAdmin(SubjectRefSearchMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("subject_ref", "version", "method", "accepted_at", "client")
    list_filter = ("version", "method")
    list_select_related = ("version",)
    search_fields = ("subject_ref",)
    fields = ("subject_ref", "version", "method", "accepted_at", "client", "ua_hash")
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    ordering = ("-id",)


# --- Notice deliveries ----------------------------------------------------------------------------


class DeliveryStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [
            *Status.choices,
            ("unconfirmed", f"Unconfirmed (sending for more than {int(CLAIM_STALE_AFTER.total_seconds() // 3600)} h)"),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "unconfirmed":
            return queryset.filter(status=Status.SENDING, sent_at__lt=timezone.now() - CLAIM_STALE_AFTER)
        if value in Status.values:
            return queryset.filter(status=value)
        return queryset


@admin.register(PolicyNoticeDelivery)
class PolicyNoticeDeliveryAdmin(SubjectRefSearchMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("subject_ref", "version", "state", "sent_at", "acknowledged_at")
    list_filter = ("version", DeliveryStateFilter)
    list_select_related = ("version", "user")
    search_fields = ("user__subject_ref",)
    subject_ref_lookup = "user__subject_ref"
    fields = ("subject_ref", "version", "state", "sent_at", "acknowledged_at")
    readonly_fields = fields
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    ordering = ("-id",)
    actions = ("send_again", "mark_sent")

    @admin.display(description="subject ref")
    def subject_ref(self, obj):
        return obj.user.subject_ref

    @admin.display(description="state", ordering="status")
    def state(self, obj):
        stale = obj.sent_at < timezone.now() - CLAIM_STALE_AFTER
        if obj.status == Status.SENDING:
            return badge("unconfirmed: check the mail log", "red") if stale else badge("being sent", "info")
        if obj.status == Status.QUEUED:
            return badge("queued again (its run stopped)", "amber") if stale else badge("queued", "info")
        severity = {Status.SENT: "ok", Status.IN_SERVICE: "ok", Status.FAILED: "red"}[obj.status]
        return badge(obj.get_status_display(), severity)

    def has_publish_permission(self, request):
        return request.user.has_perm(PUBLISH_PERMISSION)

    @admin.action(description="Send again (unconfirmed or failed notices only)", permissions=["publish"])
    def send_again(self, request, queryset):
        done = 0
        for delivery in queryset.filter(status__in=[Status.SENDING, Status.FAILED]):
            try:
                policy_notice_resend(actor=request.user, delivery=delivery)
            except Exception as exc:  # the mail server: report, keep going with the others
                messages.error(request, f"Notice to {delivery.user.subject_ref} failed again: {exc}")
            else:
                done += 1
        messages.success(request, f"{done} notice(s) sent again.")

    @admin.action(description="Mark as sent (the mail log shows they went out)", permissions=["publish"])
    def mark_sent(self, request, queryset):
        done = 0
        for delivery in queryset.filter(status=Status.SENDING):
            policy_notice_confirm(actor=request.user, delivery=delivery)
            done += 1
        messages.success(request, f"{done} notice(s) marked as sent.")
