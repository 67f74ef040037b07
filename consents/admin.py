"""The DPO's workbench for consents: purposes, notices, cookies, the ledger and its proofs, restrictions, API keys.

Policy versions, acceptances and notice deliveries have their workbench in `policies.admin`.

Invariants:
- Every write goes through a service that writes its own audit event: consent events through
  `consents.ledger.consent_record` (method "staff", always with the subject's documented instruction),
  restrictions through `consents.services.restriction_place` / `restriction_lift`, API keys through
  `consents.api.keys`, and the configuration rows (purposes, notices, cookies) through the register's audited
  save and delete. A service's ValidationError is shown on the form and nothing is written.
- The ledger and its caches (events, states, chains, visitor links) are read-only here whatever the user's
  permissions say; the database refuses changes to events anyway. A purpose's code is fixed once saved: the
  event hashes cover it, so renaming it would break every chain that mentions it.
- The ledger list never reads the whole table: it walks the primary key backwards, counts at most a capped
  number of rows (EstimatedCountPaginator), takes its filter choices from small tables (never SELECT
  DISTINCT on the ledger) and searches by exact identifiers only (subject ref, visitor id, receipt id, or an
  account's exact e-mail), each an index lookup.
- A notice text never changes once saved (the hashes in the events point at it); it may be deleted only
  while no event uses it.
- An API key's token exists only in the response to the form that created it: never stored, logged or
  shown again; the database keeps its SHA-256.
- Looking at a subject's consent proof, and exporting it, are themselves audited (`personal_data.viewed`
  with what "consent_proof", and `consent.proof_exported`): who looked at whose consents, and the SHA-256 of what left the system.
"""

from __future__ import annotations

import hashlib
import json
import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from accounts.models import User
from accounts.selectors import account_by_email
from inventory.models import Jurisdiction
from inventory.services import register_entries_delete, register_entry_delete, register_entry_save
from policies.models import PolicyAcceptance
from privacyops.admin_utils import (
    EstimatedCountPaginator,
    ReadOnlyAdminMixin,
    admin_object_or_404,
    admin_url_for,
    badge,
    validation_messages,
)
from privacyops.audit import audit_personal_data_viewed, audit_record

from . import dashboard, ledger
from .api.keys import RATE_LIMIT_MAX, apikey_create, apikey_revoke
from .imports.admin import ConsentImportMixin
from .models import (
    ApiKey,
    ConsentChain,
    ConsentEvent,
    ConsentNotice,
    ConsentPurpose,
    ConsentState,
    CookieInventory,
    ProcessingRestriction,
    VisitorLink,
)
from .proof import ChainReport, chain_verify, consent_proof
from .receipts import receipt_for
from .services import restriction_lift, restriction_place

LEDGER_PAGE = 100
ACTION_SEVERITY = {"given": "ok", "refused": "info", "withdrawn": "amber", "expired": "info"}


_url = admin_url_for("consents")


def _add_service_errors(form: forms.Form, exc: ValidationError) -> None:
    """Put a service's ValidationError on the fields it names (or on the form when it names none here)."""
    if hasattr(exc, "error_dict"):
        for name, errors in exc.error_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, exc)


def _principal(subject_ref, visitor_id) -> str:
    return f"subject {subject_ref}" if subject_ref else f"visitor {visitor_id}"


def _pretty_json(data) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, cls=DjangoJSONEncoder)


# --- Finding a subject ---------------------------------------------------------------------------------


def subject_ref_for(term: str) -> uuid.UUID | None:
    """An exact subject ref, or the subject ref of the account with exactly this e-mail address. Never a LIKE."""
    term = (term or "").strip()
    if not term:
        return None
    try:
        return uuid.UUID(term)
    except ValueError:
        pass
    if "@" not in term:
        return None
    account = account_by_email(term, active_only=False)
    return account.subject_ref if account is not None else None


class SubjectField(forms.CharField):
    """An account named by its exact e-mail address or its subject ref; cleans to the User."""

    def __init__(self, **kwargs):
        kwargs.setdefault("label", "Subject")
        kwargs.setdefault("help_text", "The account's exact e-mail address, or its subject ref (a UUID).")
        kwargs.setdefault("max_length", 254)
        super().__init__(**kwargs)

    def clean(self, value):
        term = super().clean(value)
        ref = subject_ref_for(term)
        user = User.objects.filter(subject_ref=ref).first() if ref else None
        if user is None:
            raise ValidationError("No account has this e-mail address or subject ref.", code="unknown_subject")
        return user


# --- Purposes, notices, cookies ----------------------------------------------------------------------


class AuditedSaveMixin:
    """Configuration rows are saved and deleted through the register's audited services."""

    def save_model(self, request, obj, form, change):
        if change and not form.has_changed():
            return
        register_entry_save(actor=request.user, instance=obj, changed_fields=form.changed_data)

    def delete_model(self, request, obj):
        register_entry_delete(actor=request.user, instance=obj)

    def delete_queryset(self, request, queryset):
        register_entries_delete(actor=request.user, instances=list(queryset))


@admin.register(ConsentPurpose)
class ConsentPurposeAdmin(AuditedSaveMixin, admin.ModelAdmin):
    """PM-II-2, PM-III: what subjects and visitors are asked to agree to, and the register purpose each serves."""

    list_display = (
        "code",
        "name",
        "register_purpose",
        "necessary",
        "cookie_category",
        "lifetime",
        "is_sale_or_sharing",
        "ends_service",
        "is_active",
        "position",
    )
    list_filter = ("is_necessary", "cookie_category", "is_sale_or_sharing", "is_active")
    list_select_related = ("purpose",)
    search_fields = ("code", "name")
    fieldsets = (
        (None, {"fields": ("code", "name", "description", "purpose", "position", "is_active")}),
        ("Asking", {"fields": ("is_necessary", "cookie_category", "lifetime", "consequences", "ends_service")}),
        ("Classification", {"fields": ("is_sale_or_sharing", "dpv", "policy_ref")}),
        ("Notices", {"fields": ("notice_list",)}),
        ("Bookkeeping", {"fields": ("seed_digest", "updated_at"), "classes": ("collapse",)}),
    )

    def has_delete_permission(self, request, obj=None):
        return False  # events point at a purpose: retire it (is_active off), never delete it

    def get_readonly_fields(self, request, obj=None):
        fixed = ("code",) if obj is not None else ()
        return (*fixed, "notice_list", "seed_digest", "updated_at")

    @admin.display(description="register purpose", ordering="purpose__code")
    def register_purpose(self, obj):
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:inventory_purpose_change", args=[obj.purpose_id]), obj.purpose.code
        )

    @admin.display(description="necessary", ordering="is_necessary")
    def necessary(self, obj):
        return badge("necessary: cannot be refused", "info") if obj.is_necessary else ""

    @admin.display(description="notice texts")
    def notice_list(self, obj):
        if obj.pk is None:
            return "Add the text shown to people under Consent notices once the purpose is saved."
        notices = list(obj.notices.order_by("language", "-created_at"))
        if not notices:
            return badge("no notice text yet: banner, portal and sign-up cannot ask for it", "amber")
        items = format_html_join(
            "",
            '<li><a href="{}">v{} ({})</a> <code>{}…</code></li>',
            ((_url("consentnotice_change", n.pk), n.version, n.language, n.sha256[:12]) for n in notices),
        )
        return format_html("<ul>{}</ul>", items)


class ConsentNoticeForm(forms.ModelForm):
    class Meta:
        model = ConsentNotice
        fields = ("purpose", "version", "language", "text")


@admin.register(ConsentNotice)
class ConsentNoticeAdmin(AuditedSaveMixin, admin.ModelAdmin):
    """The exact texts people were shown (PM-0-2): added, never edited; deleted only while no event uses one."""

    form = ConsentNoticeForm
    list_display = ("__str__", "purpose", "version", "language", "short_sha256", "created_at", "in_use")
    list_filter = ("purpose", "language")
    list_select_related = ("purpose",)
    search_fields = ("version", "purpose__code", "sha256")
    actions = None  # deleting is one notice at a time, and only an unused one
    view_fields = ("purpose", "version", "language", "text_block", "sha256", "event_count", "created_at", "created_by")

    def get_queryset(self, request):
        used = ConsentEvent.objects.filter(notice=OuterRef("pk"))
        return super().get_queryset(request).annotate(_in_use=Exists(used))

    def get_fields(self, request, obj=None):
        return self.view_fields if obj is not None else ConsentNoticeForm.Meta.fields

    def get_readonly_fields(self, request, obj=None):
        return self.view_fields if obj is not None else ()

    def has_change_permission(self, request, obj=None):
        return False  # a text never changes: a correction is a new version

    def has_delete_permission(self, request, obj=None):
        if obj is not None and ConsentEvent.objects.filter(notice=obj).exists():
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        obj.created_by = request.user
        obj.sha256 = ConsentNotice.digest(obj.text)
        super().save_model(request, obj, form, change)

    @admin.display(description="SHA-256")
    def short_sha256(self, obj):
        return format_html("<code title='{}'>{}…</code>", obj.sha256, obj.sha256[:12])

    @admin.display(description="used by events", boolean=True, ordering="_in_use")
    def in_use(self, obj):
        return obj._in_use

    @admin.display(description="text")
    def text_block(self, obj):
        return format_html('<pre class="consent-notice-text">{}</pre>', obj.text)

    @admin.display(description="events that used it")
    def event_count(self, obj):
        return ConsentEvent.objects.filter(notice=obj).count()


@admin.register(CookieInventory)
class CookieInventoryAdmin(AuditedSaveMixin, admin.ModelAdmin):
    """PM-III: every cookie, beacon and storage item the service sets; the banner's details show this list."""

    list_display = ("name", "category", "kind", "party", "provider", "duration", "is_active")
    list_filter = ("category", "party", "kind", "is_active")
    list_select_related = ("category",)
    search_fields = ("name", "provider", "description")
    readonly_fields = ("seed_digest",)


# --- The ledger ----------------------------------------------------------------------------------------


class JurisdictionFilter(admin.SimpleListFilter):
    """Choices from the register's jurisdictions (a small table), never from SELECT DISTINCT on the ledger."""

    title = "jurisdiction"
    parameter_name = "jurisdiction"

    def lookups(self, request, model_admin):
        codes = set(Jurisdiction.objects.values_list("code", flat=True)) | {Jurisdiction.DEFAULT}
        return [(code, code) for code in sorted(codes)]

    def queryset(self, request, queryset):
        return queryset.filter(jurisdiction=self.value()) if self.value() else queryset


class RecentFilter(admin.SimpleListFilter):
    """The events the dashboard tile counts: recorded in the last days, among the newest of the ledger."""

    title = "recorded"
    parameter_name = "recent"

    def lookups(self, request, model_admin):
        return [(dashboard.RECENT_FILTER, f"In the last {dashboard.RECENT_DAYS} days")]

    def queryset(self, request, queryset):
        if self.value() == dashboard.RECENT_FILTER:
            return dashboard.ledger_recent(queryset, now=timezone.now())
        return queryset


class RecordOnBehalfForm(forms.Form):
    subject = SubjectField()
    purpose = forms.ModelChoiceField(queryset=ConsentPurpose.objects.order_by("position", "code"))
    action = forms.ChoiceField(
        choices=[
            (a.value, a.label) for a in (ConsentEvent.Action.GIVEN, ConsentEvent.Action.REFUSED, ConsentEvent.Action.WITHDRAWN)
        ]
    )
    instruction = forms.CharField(
        max_length=300,
        label="The subject's instruction",
        help_text="Reference of the subject's documented instruction: ticket, letter or e-mail (required).",
    )


class LedgerChangeList(ChangeList):
    """Never sort by anything but the primary key: the ledger has no index on other orderings."""

    def get_ordering(self, request, queryset):
        return ["-pk"]


class PrincipalColumnMixin:
    """The "subject or visitor" column of the ledger's tables (each row is about an account or a visitor)."""

    @admin.display(description="subject or visitor")
    def principal(self, obj):
        return _principal(obj.subject_ref, obj.visitor_id)


@admin.register(ConsentEvent)
class ConsentEventAdmin(PrincipalColumnMixin, ConsentImportMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """The ledger (PM-0-2): every consent given, refused, withdrawn or expired; read-only, searched exactly."""

    list_display = (
        "effective_at",
        "principal",
        "purpose",
        "action_badge",
        "method",
        "jurisdiction",
        "notice_version",
        "policy_label",
        "receipt_id",
    )
    list_display_links = ("effective_at",)
    list_filter = (RecentFilter, "purpose", "action", "method", JurisdictionFilter)
    list_select_related = ("purpose",)
    list_per_page = LEDGER_PAGE
    sortable_by = ()
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    search_fields = ("subject_ref",)  # shows the box; get_search_results decides what a term means
    search_help_text = (
        "An exact subject ref, visitor id or receipt id (UUID), or an account's exact e-mail address. "
        "An account (by subject ref or e-mail) also shows the events of the browsers linked to it."
    )
    actions = None
    change_list_template = "admin/consents/consentevent/change_list.html"
    import_export_change_list_template = "admin/consents/consentevent/change_list.html"
    fieldsets = (
        (
            "Consent",
            {"fields": ("principal", "purpose", "action", "method", "effective_at", "recorded_at", "jurisdiction", "language")},
        ),
        ("What was shown", {"fields": ("notice_link", "notice_version", "notice_sha256", "policy_label")}),
        ("How", {"fields": ("gpc", "ip_hash", "ua_hash", "actor_label", "instruction")}),
        ("Chain", {"fields": ("chain", "seq", "prev_hash", "hash")}),
        ("Receipt", {"fields": ("receipt_id", "receipt_download", "receipt_json")}),
    )
    readonly_fields = (
        "principal",
        "purpose",
        "action",
        "method",
        "effective_at",
        "recorded_at",
        "jurisdiction",
        "language",
        "notice_link",
        "notice_version",
        "notice_sha256",
        "policy_label",
        "gpc",
        "ip_hash",
        "ua_hash",
        "actor_label",
        "instruction",
        "chain",
        "seq",
        "prev_hash",
        "hash",
        "receipt_id",
        "receipt_download",
        "receipt_json",
    )

    def get_changelist(self, request, **kwargs):
        return LedgerChangeList

    def get_search_results(self, request, queryset, search_term):
        ref = subject_ref_for(search_term)
        if ref is None:
            return (queryset.none() if search_term.strip() else queryset), False
        linked = VisitorLink.objects.filter(subject_ref=ref).values("visitor_id")
        own = Q(subject_ref=ref) | Q(visitor_id__in=linked)
        if "@" not in search_term:  # a UUID may also be a visitor id or a receipt id
            own |= Q(visitor_id=ref) | Q(receipt_id=ref)
        return queryset.filter(own), False

    # Columns and fields ----------------------------------------------------------------------------------

    @admin.display(description="action")
    def action_badge(self, obj):
        return badge(obj.get_action_display(), ACTION_SEVERITY.get(obj.action, "info"))

    @admin.display(description="notice")
    def notice_link(self, obj):
        if not obj.notice_id:
            return "none (no text was shown: staff, API, GPC, import or expiry)"
        return format_html('<a href="{}">{}</a>', _url("consentnotice_change", obj.notice_id), obj.notice)

    @admin.display(description="download")
    def receipt_download(self, obj):
        return format_html('<a href="{}" download>Consent receipt (JSON)</a>', _url("consentevent_receipt", obj.receipt_id))

    @admin.display(description="Kantara consent receipt")
    def receipt_json(self, obj):
        return format_html('<pre class="consent-receipt">{}</pre>', _pretty_json(receipt_for(obj)))

    # Screens -------------------------------------------------------------------------------------------

    def get_urls(self):
        def view(route, fn, name):
            return path(route, self.admin_site.admin_view(fn), name=f"consents_consentevent_{name}")

        return [
            view("record/", self.record_view, "record"),
            view("proof/", self.proof_search_view, "proof_search"),
            view("proof/<uuid:subject_ref>/", self.proof_view, "proof"),
            view("proof/<uuid:subject_ref>/export/", self.proof_export_view, "proof_export"),
            view("receipt/<uuid:receipt_id>/", self.receipt_view, "receipt"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_record": request.user.has_perm("consents.add_consentevent"),
        }
        return super().changelist_view(request, extra_context=extra_context)

    def _page(self, request, template, title, **context):
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": title, **context}
        request.current_app = self.admin_site.name
        return TemplateResponse(request, template, context)

    def receipt_view(self, request, receipt_id):
        """The event's Kantara Consent Receipt v1.1 as a file (Part C)."""
        if not request.user.has_perm("consents.view_consentevent"):
            raise PermissionDenied
        event = get_object_or_404(ConsentEvent.objects.select_related("purpose", "notice"), receipt_id=receipt_id)
        response = HttpResponse(_pretty_json(receipt_for(event)), content_type="application/json; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="consent-receipt-{event.receipt_id}.json"'
        return response

    def record_view(self, request):
        """Record a consent on the subject's behalf, on their documented instruction (method "staff")."""
        if not request.user.has_perm("consents.add_consentevent"):
            raise PermissionDenied
        form = RecordOnBehalfForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                event = ledger.consent_record(
                    subject=data["subject"],
                    purpose=data["purpose"],
                    action=data["action"],
                    method=ConsentEvent.Method.STAFF,
                    actor=request.user,
                    instruction=data["instruction"],
                )
            except ValidationError as exc:
                _add_service_errors(form, exc)
            else:
                messages.success(
                    request,
                    f"Recorded: {event.purpose.name} {event.get_action_display().lower()} for subject {event.subject_ref} "
                    f"(receipt {event.receipt_id}).",
                )
                return HttpResponseRedirect(_url("consentevent_change", event.pk))
        return self._page(
            request, "admin/consents/consentevent/record.html", "Record a consent on the subject's behalf", form=form
        )

    # The consent proof (the regulator's path) --------------------------------------------------------------

    def _proof_permission(self, request):
        if not request.user.has_perm("consents.view_consentevent"):
            raise PermissionDenied

    def proof_search_view(self, request):
        """Find the subject whose proof to show: an exact e-mail address or subject ref."""
        self._proof_permission(request)
        term = request.GET.get("subject", "").strip()
        error = ""
        if term:
            ref = subject_ref_for(term)
            if ref is not None and proof_subject_known(ref):
                return HttpResponseRedirect(_url("consentevent_proof", ref))
            error = "Nothing is known under this e-mail address or subject ref."
        return self._page(request, "admin/consents/consentevent/proof_search.html", "Consent proof", term=term, error=error)

    def proof_view(self, request, subject_ref):
        """PM-0-2: the subject's whole ledger with the texts shown, the state, restrictions, acceptances, chain checks."""
        self._proof_permission(request)
        if not proof_subject_known(subject_ref):
            raise Http404("Nothing is known under this subject ref.")
        data = proof_screen_data(subject_ref=subject_ref)
        with transaction.atomic():
            audit_personal_data_viewed(
                actor=request.user,
                subject=subject_ref,
                what="consent_proof",
                details={"events": len(data["proof"]["events"]), "chains": len(data["proof"]["chains"])},
            )
        return self._page(
            request,
            "admin/consents/consentevent/proof.html",
            f"Consent proof for subject {subject_ref}",
            subject_ref=subject_ref,
            **data,
        )

    def proof_export_view(self, request, subject_ref):
        """The same proof as a JSON file for a regulator (`consents.proof.consent_proof`)."""
        self._proof_permission(request)
        if not proof_subject_known(subject_ref):
            raise Http404("Nothing is known under this subject ref.")
        body = _pretty_json(consent_proof(subject_ref=subject_ref)).encode("utf-8")
        with transaction.atomic():
            audit_record(
                actor=request.user,
                action="consent.proof_exported",
                subject=subject_ref,
                details={"format": "json", "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()},
            )
        response = HttpResponse(body, content_type="application/json; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="consent-proof-{subject_ref}.json"'
        response["Cache-Control"] = "no-store"
        return response


def proof_subject_known(subject_ref: uuid.UUID) -> bool:
    """An account, a chain, a linked visitor or a policy acceptance carries this subject ref."""
    return (
        User.objects.filter(subject_ref=subject_ref).exists()
        or ConsentChain.objects.filter(subject_ref=subject_ref).exists()
        or VisitorLink.objects.filter(subject_ref=subject_ref).exists()
        or PolicyAcceptance.objects.filter(subject_ref=subject_ref).exists()
    )


def proof_screen_data(*, subject_ref: uuid.UUID) -> dict:
    """What the proof screen shows: the very document the export gives (`consent_proof`), plus the account it
    belongs to while it exists and each distinct notice text once."""
    document = consent_proof(subject_ref=subject_ref)
    texts: dict[tuple, dict] = {}
    for event in document["events"]:
        notice = event["notice"]
        if notice["sha256"]:
            key = (event["purpose"]["code"], notice["version"], notice["language"], notice["sha256"])
            texts.setdefault(key, {"purpose": event["purpose"]["name"], **notice})
    return {
        "account": User.objects.filter(subject_ref=subject_ref).first(),
        "proof": document,
        "texts": list(texts.values()),
    }


# --- The ledger's caches: read-only -----------------------------------------------------------------------


class ExactIdentifierSearchMixin:
    """Search by an exact UUID in the given fields (each indexed), or an account's exact e-mail address."""

    uuid_fields: tuple[str, ...] = ()
    email_field = "subject_ref"

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            value = uuid.UUID(term)
        except ValueError:
            ref = subject_ref_for(term)
            return (queryset.filter(**{self.email_field: ref}) if ref else queryset.none()), False
        match = Q()
        for name in self.uuid_fields:
            match |= Q(**{name: value})
        return queryset.filter(match), False


class ExpiryFilter(admin.SimpleListFilter):
    """The states the dashboard tile flags: consents about to expire, or past their lifetime."""

    title = "expiry"
    parameter_name = "expiry"

    def lookups(self, request, model_admin):
        return [("soon", f"Expiring in the next {dashboard.EXPIRY_DAYS} days"), ("overdue", "Past their lifetime")]

    def queryset(self, request, queryset):
        if self.value() in ("soon", "overdue"):
            soon, overdue = dashboard.expiry_conditions(now=timezone.now())
            return queryset.filter(soon if self.value() == "soon" else overdue)
        return queryset


@admin.register(ConsentState)
class ConsentStateAdmin(PrincipalColumnMixin, ExactIdentifierSearchMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """The current consent per principal and purpose: a cache of the ledger, rebuilt from it, never edited."""

    list_display = ("principal", "purpose", "action_badge", "effective_at", "event_link", "updated_at")
    list_filter = (ExpiryFilter, "purpose", "action")
    list_select_related = ("purpose",)
    list_per_page = LEDGER_PAGE
    sortable_by = ()
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    ordering = ("-pk",)
    search_fields = ("subject_ref",)
    search_help_text = "An exact subject ref or visitor id (UUID), or an account's exact e-mail address."
    uuid_fields = ("subject_ref", "visitor_id")
    actions = None
    fields = ("principal", "purpose", "action", "effective_at", "event_link", "updated_at")
    readonly_fields = fields

    @admin.display(description="state")
    def action_badge(self, obj):
        return badge(obj.get_action_display(), ACTION_SEVERITY.get(obj.action, "info"))

    @admin.display(description="latest event")
    def event_link(self, obj):
        return format_html('<a href="{}">#{}</a>', _url("consentevent_change", obj.event_id), obj.event_id)


@admin.register(ConsentChain)
class ConsentChainAdmin(PrincipalColumnMixin, ExactIdentifierSearchMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """One hash chain per principal; its page checks the chain now."""

    list_display = ("principal", "length", "version", "short_head", "updated_at")
    list_per_page = LEDGER_PAGE
    sortable_by = ()
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    ordering = ("-pk",)
    search_fields = ("subject_ref",)
    search_help_text = "An exact subject ref or visitor id (UUID), or an account's exact e-mail address."
    uuid_fields = ("subject_ref", "visitor_id")
    actions = None
    fields = ("principal", "length", "version", "head_hash", "updated_at", "chain_check", "events_link")
    readonly_fields = fields

    @admin.display(description="head")
    def short_head(self, obj):
        return format_html("<code title='{}'>{}…</code>", obj.head_hash, obj.head_hash[:12])

    @admin.display(description="chain check (now)")
    def chain_check(self, obj):
        return chain_report_html(chain_verify(obj))

    @admin.display(description="events")
    def events_link(self, obj):
        ref = obj.subject_ref or obj.visitor_id
        return format_html('<a href="{}?q={}">the {} events of this chain</a>', _url("consentevent_changelist"), ref, obj.length)


@admin.register(VisitorLink)
class VisitorLinkAdmin(ExactIdentifierSearchMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Visitor ids joined to the account that signed in or up on that browser."""

    list_display = ("visitor_id", "subject_ref", "method", "linked_at")
    list_filter = ("method",)
    list_per_page = LEDGER_PAGE
    sortable_by = ()
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    ordering = ("-pk",)
    search_fields = ("subject_ref",)
    search_help_text = "An exact subject ref or visitor id (UUID), or an account's exact e-mail address."
    uuid_fields = ("subject_ref", "visitor_id")
    actions = None
    fields = ("visitor_id", "subject_ref", "method", "linked_at")
    readonly_fields = fields


def chain_report_html(report: ChainReport):
    """A chain check's result as a badge, with what broke when it is broken."""
    if report.ok:
        return badge(f"intact: {report.checked} events verified", "ok")
    problems = format_html_join("", "<li>{}</li>", ((p,) for p in report.problems))
    return format_html("{}<ul class='chain-problems'>{}</ul>", badge("broken", "red"), problems)


# --- Restrictions and objections (PM-IX-5) -----------------------------------------------------------------


class RestrictionStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("scheduled", "Not started yet"), ("ended", "Ended"), ("lifted", "Lifted")]

    def queryset(self, request, queryset):
        now = timezone.now()
        open_ = Q(lifted_at__isnull=True)
        running = Q(ends_at__isnull=True) | Q(ends_at__gt=now)
        if self.value() == "active":
            return queryset.filter(open_, running, starts_at__lte=now)
        if self.value() == "scheduled":
            return queryset.filter(open_, starts_at__gt=now)
        if self.value() == "ended":
            return queryset.filter(open_, ends_at__lte=now)
        if self.value() == "lifted":
            return queryset.filter(lifted_at__isnull=False)
        return queryset


class RestrictionAddForm(forms.ModelForm):
    """Places the restriction through `restriction_place` while validating, so the service's errors land on
    the form's fields with everything still filled in, and nothing is written."""

    subject_identifier = SubjectField()

    class Meta:
        model = ProcessingRestriction
        fields = ("kind", "purpose", "starts_at", "ends_at", "reason", "for_legal_claims", "reference")
        help_texts = {"purpose": "Empty: every processing of the subject's data."}

    actor = None  # set by the admin

    field_order = ("subject_identifier", *Meta.fields)

    def _post_clean(self):
        super()._post_clean()
        self.placed = None
        if self.errors:
            return
        data = self.cleaned_data
        try:
            self.placed = restriction_place(
                actor=self.actor,
                subject=data["subject_identifier"],
                kind=data["kind"],
                reason=data["reason"],
                purpose=data.get("purpose"),
                starts_at=data.get("starts_at"),
                ends_at=data.get("ends_at"),
                for_legal_claims=data.get("for_legal_claims", False),
                reference=data.get("reference", ""),
            )
        except ValidationError as exc:
            if hasattr(exc, "error_dict") and "subject" in exc.error_dict:
                exc.error_dict["subject_identifier"] = exc.error_dict.pop("subject")
            _add_service_errors(self, exc)


@admin.register(ProcessingRestriction)
class ProcessingRestrictionAdmin(admin.ModelAdmin):
    """PM-IX-5: restrictions (Art. 18) and objections (Art. 21). Placed and lifted through the services;
    fixed once placed (lift it and place another)."""

    list_display = ("subject", "kind", "scope", "starts_at", "ends_at", "state", "hold_link", "reference", "created_by")
    list_filter = (RestrictionStateFilter, "kind", "for_legal_claims", "purpose")
    list_select_related = ("subject", "purpose", "legal_hold", "created_by")
    search_fields = ("reference",)
    search_help_text = "The exact reference, or an account's exact e-mail address or subject ref."
    actions = None
    change_form_template = "admin/consents/processingrestriction/change_form.html"
    view_fields = (
        "subject",
        "kind",
        "scope",
        "state",
        "starts_at",
        "ends_at",
        "reason",
        "reference",
        "for_legal_claims",
        "hold_link",
        "created_by",
        "created_at",
        "lifted_by",
        "lifted_at",
        "lift_reason",
    )

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        ref = subject_ref_for(term)
        if ref is not None:
            return queryset.filter(subject__subject_ref=ref), False
        return queryset.filter(reference=term), False

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = type("RestrictionAddForm", (RestrictionAddForm,), {"actor": request.user})
            kwargs["fields"] = None
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        return self.view_fields if obj is not None else ("subject_identifier", *RestrictionAddForm.Meta.fields)

    def get_readonly_fields(self, request, obj=None):
        return self.view_fields if obj is not None else ()

    def has_change_permission(self, request, obj=None):
        return False if obj is not None else super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False  # lifted, never deleted: the record of what was restricted stays

    def save_model(self, request, obj, form, change):
        """`restriction_place` already placed it while the form was validated; the admin only logs the addition."""
        obj.pk = form.placed.pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        pass  # no many-to-many fields and no inlines

    @admin.display(description="applies to")
    def scope(self, obj):
        return obj.purpose.name if obj.purpose_id else "all processing"

    @admin.display(description="state", ordering="lifted_at")
    def state(self, obj):
        now = timezone.now()
        if obj.lifted_at:
            return badge("lifted", "info")
        if obj.starts_at > now:
            return badge("not started yet", "info")
        if obj.ends_at and obj.ends_at <= now:
            return badge("ended", "info")
        return badge("active", "amber")

    @admin.display(description="legal hold")
    def hold_link(self, obj):
        if not obj.legal_hold_id:
            return "—"
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:retention_legalhold_change", args=[obj.legal_hold_id]), obj.legal_hold
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_lift": request.user.has_perm("consents.lift_processingrestriction"),
        }
        return super().change_view(request, object_id, form_url, extra_context=extra_context)

    def get_urls(self):
        lift = path(
            "<path:object_id>/lift/", self.admin_site.admin_view(self.lift_view), name="consents_processingrestriction_lift"
        )
        return [lift, *super().get_urls()]

    def lift_view(self, request, object_id):
        """Lift a restriction or objection: why, then (POST) `restriction_lift`."""
        if not request.user.has_perm("consents.lift_processingrestriction"):
            raise PermissionDenied
        restriction = admin_object_or_404(
            self, request, object_id, queryset=ProcessingRestriction.objects.select_related("subject", "purpose", "legal_hold")
        )
        back = HttpResponseRedirect(_url("processingrestriction_change", restriction.pk))
        if restriction.lifted_at:
            messages.info(request, f"{restriction} was already lifted.")
            return back
        if request.method == "POST":
            try:
                restriction_lift(actor=request.user, restriction=restriction, reason=request.POST.get("reason", "").strip())
            except ValidationError as exc:
                for message in validation_messages(exc):
                    messages.error(request, message)
            else:
                messages.success(request, f"{restriction} is lifted.")
            return back
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Lift {restriction}",
            "restriction": restriction,
            "scope": self.scope(restriction),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/consents/processingrestriction/lift.html", context)


# --- API keys for the consent API ----------------------------------------------------------------------------


class ApiKeyAddForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Which service uses it, e.g. chat-backend.")
    scope = forms.ChoiceField(choices=ApiKey.Scope.choices, initial=ApiKey.Scope.READ)
    rate_limit_per_minute = forms.IntegerField(
        min_value=1, max_value=RATE_LIMIT_MAX, required=False, help_text="Requests per minute; empty for the default."
    )


class RevokedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "In use"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys of the services that call the consent API. The token is shown once, right after creation."""

    list_display = ("name", "prefix", "scope", "rate_limit_per_minute", "created_at", "last_used_at", "revoked")
    list_filter = (RevokedFilter, "scope")
    list_select_related = ("created_by",)
    search_fields = ("name", "prefix")
    actions = ["revoke_selected"]
    change_form_template = "admin/consents/apikey/change_form.html"
    fields = ("name", "prefix", "scope", "rate_limit_per_minute", "created_by", "created_at", "last_used_at", "revoked")
    readonly_fields = fields

    def has_change_permission(self, request, obj=None):
        return False  # name, scope and limit are fixed: revoke the key and create another

    def has_delete_permission(self, request, obj=None):
        return False  # revoked, never deleted: events recorded through a key name it

    def has_revoke_permission(self, request):
        return request.user.has_perm("consents.change_apikey")

    @admin.display(description="revoked", ordering="revoked_at")
    def revoked(self, obj):
        return badge(f"revoked {timezone.localtime(obj.revoked_at):%Y-%m-%d %H:%M}", "info") if obj.revoked_at else ""

    @admin.action(description="Revoke the selected keys", permissions=["revoke"])
    def revoke_selected(self, request, queryset):
        keys = list(queryset.filter(revoked_at__isnull=True))
        for key in keys:
            apikey_revoke(actor=request.user, key=key)
        messages.success(request, f"{len(keys)} key{'s' if len(keys) != 1 else ''} revoked: they stop working now.")

    def add_view(self, request, form_url="", extra_context=None):
        """Create a key through `apikey_create`, then show its token on this response only."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ApiKeyAddForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                key, token = apikey_create(
                    actor=request.user,
                    name=data["name"],
                    scope=data["scope"],
                    rate_limit_per_minute=data["rate_limit_per_minute"],
                )
            except ValidationError as exc:
                _add_service_errors(form, exc)
            else:
                response = self._page(request, "admin/consents/apikey/token.html", f"API key {key.name}", key=key, token=token)
                response["Cache-Control"] = "no-store"
                return response
        return self._page(request, "admin/consents/apikey/add.html", "Create an API key", form=form)

    def _page(self, request, template, title, **context):
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": title, **context}
        request.current_app = self.admin_site.name
        return TemplateResponse(request, template, context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_revoke": self.has_revoke_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context=extra_context)

    def get_urls(self):
        revoke = path("<path:object_id>/revoke/", self.admin_site.admin_view(self.revoke_view), name="consents_apikey_revoke")
        return [revoke, *super().get_urls()]

    def revoke_view(self, request, object_id):
        """Revoke one key (asks first): `apikey_revoke`."""
        if not self.has_revoke_permission(request):
            raise PermissionDenied
        key = admin_object_or_404(self, request, object_id, queryset=ApiKey.objects.all())
        back = HttpResponseRedirect(_url("apikey_change", key.pk))
        if key.revoked_at:
            messages.info(request, f"{key} was already revoked.")
            return back
        if request.method == "POST":
            apikey_revoke(actor=request.user, key=key)
            messages.success(request, f"{key} is revoked: it stops working now.")
            return back
        return self._page(request, "admin/consents/apikey/revoke.html", f"Revoke {key}", key=key)
