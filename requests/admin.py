"""The DPO's workbench for rights requests (POLICY-MAP IX, PM-IX-9, PM-XI-2).

Invariants:
- Every change to a request goes through `requests.services` (each one transaction, a timeline event and
  an audit event); the admin decides nothing. Each action is a small screen or a button whose view checks
  the permission first (403 otherwise), then calls the service and shows its refusal
  (`RequestActionError`, `PermissionDenied`) as a message.
- A button is shown only when the workflow table (`requests.models.MOVES`) allows its move from the
  request's current status and the user holds its permission: `change_rightsrequest` to work requests,
  and to approve the one `services.approval_permission` names, the rule the service itself enforces
  (so the button shows exactly when the service would accept). Auditors see everything and no button.
  The service checks again: a button is a hint, not the guard.
- The request page is read-only: the fields the model marks not editable and the ones that drive the
  workflow or the clock (status, assignee, right, jurisdiction, receipt) change only through actions; the
  timeline and the pauses are shown and never edited. Requests are never deleted here (legal record).
- A request is added only through "Log a request" (`rights_request_submit` with the staff member as
  actor), never through a bare model form that would skip the clock, duplicates and the timeline.
- The queues are `requests.dashboard`'s conditions, so the list and the dashboard tiles agree.
- The request list fetches what its columns show in a fixed number of queries.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q
from django.http import FileResponse, Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from accounts.models import User
from accounts.selectors import account_by_email, staff_with_permission
from consents.models import ConsentPurpose
from inventory.models import DataCategory, Jurisdiction, Purpose
from inventory.services import register_entry_save
from privacyops.admin_utils import admin_object_or_404, admin_url_for, badge, validation_messages

from . import dashboard, deadlines, metrics, rectification, services
from .disclosures import disclosure_record
from .erasure import erasure_preview
from .forms import EMAIL_MAX
from .fulfil import fulfil_objection, fulfil_restriction, fulfil_withdraw_consent
from .models import (
    MOVES,
    Channel,
    DeadlineRule,
    Disclosure,
    ExportPackage,
    HoldReason,
    JobStatus,
    RecipientNotice,
    RectificationItem,
    Requester,
    RequestEvent,
    RequestPause,
    Right,
    RightsRequest,
    Status,
)
from .recipients import recipient_notice_done
from .verification import VerificationError, verification_link_send

VIEW = "requests.view_rightsrequest"
ADD = "requests.add_rightsrequest"
WORK = "requests.change_rightsrequest"
VIEW_DATA = "requests.view_personal_data_rightsrequest"
NOTICE_DONE = "requests.change_recipientnotice"
ADD_DISCLOSURE = "requests.add_disclosure"

STATUS_SEVERITY = {
    Status.RECEIVED: "info",
    Status.AWAITING_VERIFICATION: "amber",
    Status.ON_HOLD: "amber",
    Status.COMPLETED: "ok",
    Status.PARTIALLY_COMPLETED: "ok",
    Status.REJECTED: "red",
}


_url = admin_url_for("requests")


def _item_or_404(items, item_id: str) -> RectificationItem:
    """The correction a rectification POST names; its id is the form's, so junk in it is a 404 (issue 16)."""
    try:
        return items.get(pk=int(item_id))
    except (ValueError, RectificationItem.DoesNotExist):
        raise Http404("No such correction.") from None


def due_severity(rights_request: RightsRequest, now: datetime.datetime | None = None) -> str:
    """PM-IX-9: red past the deadline in force, amber within the dashboard's "due soon" days, else none.
    Closed requests are never coloured: their clock has stopped."""
    due = rights_request.effective_due_at
    if not rights_request.is_open or due is None:
        return ""
    now = now or timezone.now()
    if due < now:
        return "red"
    if due < now + datetime.timedelta(days=dashboard.DUE_SOON_DAYS):
        return "amber"
    return ""


# --- Actions: which buttons a request shows, and the screens behind them -------------------------------------


class VerifyForm(forms.Form):
    method = forms.CharField(
        max_length=200,
        label="How the identity was verified",
        help_text="E.g. signed-in session, verification link followed, documents checked (what, not their content).",
    )


class AssignForm(forms.Form):
    assignee = forms.ModelChoiceField(queryset=User.objects.none(), label="Assign to")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].queryset = staff_with_permission(WORK)  # who a request can go to


class ExtendForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        label="Why the period is extended",
        help_text="Told to the requester in the extension notice (GDPR Art. 12(3): within the first period).",
    )


class HoldForm(forms.Form):
    reason = forms.ChoiceField(choices=HoldReason.choices)
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


class RejectForm(forms.Form):
    reasons = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5}),
        label="Reasons",
        help_text="Told to the requester, with the supervisory authority they can complain to (PM-IX-7).",
    )


class CloseForm(forms.Form):
    outcome = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), label="Outcome", help_text="What we did.")
    partial = forms.TypedChoiceField(
        choices=[("0", "Completed"), ("1", "Partially completed")],
        coerce=lambda value: value == "1",
        initial="0",
        label="Result",
        widget=forms.RadioSelect,
    )


class NoteForm(forms.Form):
    message = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), label="Note")


class MoveForm(forms.Form):
    to_status = forms.ChoiceField(choices=Status.choices, widget=forms.HiddenInput)
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


class ConfirmForm(forms.Form):
    """No input: the screen says what will happen and the POST does it."""


class NoticeDoneForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="How and when they were told (their reference, the channel); no personal data.",
    )


class RestrictionForm(forms.Form):
    purpose = forms.ModelChoiceField(
        queryset=Purpose.objects.none(),
        required=False,
        empty_label="Every purpose",
        help_text="The purpose the requester named; empty: all processing of their data.",
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why (e.g. accuracy contested, Art. 18(1)(a); or the grounds of the objection). Kept with the restriction.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["purpose"].queryset = Purpose.objects.all()


class RestrictionForLegalClaimsForm(RestrictionForm):
    for_legal_claims = forms.BooleanField(
        required=False,
        label="Kept for legal claims",
        help_text="Art. 18(1)(c): the subject needs the data for a legal claim; a legal hold keeps it from purges and erasure.",
    )


class WithdrawConsentForm(forms.Form):
    purposes = forms.ModelMultipleChoiceField(
        queryset=ConsentPurpose.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="The consents the requester withdraws, effective at once (PM-IX-6). None ticked: every consent they gave.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["purposes"].queryset = ConsentPurpose.objects.filter(is_necessary=False).order_by("name")


# Plain moves of the table that no dedicated action covers (verify, hold, approve, reject, close, withdraw do).
# "Ask for verification" is not a plain move: it sends the link (requests.verification), which moves the request.
PLAIN_MOVES = (Status.IN_PROGRESS, Status.AWAITING_APPROVAL, Status.UNVERIFIED)
PLAIN_MOVE_LABELS = {
    Status.IN_PROGRESS: "Move to in progress",
    Status.AWAITING_APPROVAL: "Submit for approval",
    Status.UNVERIFIED: "Close unverified",
}


def _allows(rights_request: RightsRequest, to_status: str) -> bool:
    return to_status in MOVES.get(rights_request.status, frozenset())


@dataclass(frozen=True)
class Action:
    key: str
    label: str
    form: type[forms.Form]
    explanation: str
    offered: object  # (rights_request) -> bool: the workflow allows it from the current status
    permission: object = WORK  # a permission label, or (rights_request) -> label
    style: str = ""
    extra: dict = field(default_factory=dict)

    def permission_for(self, rights_request: RightsRequest) -> str:
        return self.permission(rights_request) if callable(self.permission) else self.permission


def _call(action: str, rights_request: RightsRequest, user, data: dict):
    """The one place the admin reaches the services: action key -> service call."""
    r = rights_request
    if action == "verify":
        return services.rights_request_verify(rights_request=r, actor=user, method=data["method"])
    if action == "assign":
        return services.rights_request_assign(rights_request=r, assignee=data["assignee"], actor=user)
    if action == "assign_me":
        return services.rights_request_assign(rights_request=r, assignee=user, actor=user)
    if action == "extend":
        return services.rights_request_extend(rights_request=r, actor=user, reason=data["reason"])
    if action == "hold":
        return services.rights_request_hold(rights_request=r, actor=user, reason=data["reason"], note=data["note"])
    if action == "resume":
        return services.rights_request_resume(rights_request=r, actor=user)
    if action == "approve":
        return services.rights_request_approve(rights_request=r, actor=user)
    if action == "reject":
        return services.rights_request_reject(rights_request=r, actor=user, reasons=data["reasons"])
    if action == "close":
        return services.rights_request_close(rights_request=r, actor=user, outcome=data["outcome"], partial=data["partial"])
    if action == "withdraw":
        return services.rights_request_withdraw(rights_request=r, actor=user)
    if action == "note":
        return services.rights_request_note(rights_request=r, actor=user, message=data["message"])
    if action == "move":
        return services.rights_request_move(rights_request=r, to_status=data["to_status"], actor=user, note=data["note"])
    if action == "send_verification":
        try:
            return verification_link_send(rights_request=r, actor=user)
        except VerificationError as exc:  # worded for the requester; shown to staff like any refusal
            raise services.RequestActionError(str(exc)) from exc
    if action == "verify_agent":
        return services.rights_request_agent_verify(rights_request=r, actor=user)
    if action == "restrict":
        return fulfil_restriction(
            rights_request=r,
            actor=user,
            purpose=data["purpose"],
            reason=data["reason"],
            for_legal_claims=data["for_legal_claims"],
        )
    if action == "object":
        return fulfil_objection(rights_request=r, actor=user, purpose=data["purpose"], reason=data["reason"])
    if action == "withdraw_consent":
        codes = [purpose.code for purpose in data["purposes"]] or None  # none chosen: every consent they gave
        return fulfil_withdraw_consent(rights_request=r, actor=user, purposes=codes)
    raise Http404(action)


ACTIONS: dict[str, Action] = {
    a.key: a
    for a in (
        Action(
            "verify",
            "Verify",
            VerifyForm,
            "Records that the requester's identity (or the agent's authority) was checked, and starts the work.",
            lambda r: r.verified_at is None and r.is_open,
            style="default",
        ),
        Action("assign_me", "Assign to me", ConfirmForm, "You become the request's assignee.", lambda r: r.is_open),
        Action("assign", "Assign", AssignForm, "The assignee gets the request's reminders.", lambda r: r.is_open),
        Action(
            "extend",
            "Extend",
            ExtendForm,
            "Extends the deadline by the period the jurisdiction's rule allows and sends the requester the notice.",
            lambda r: r.is_open,
        ),
        Action(
            "hold",
            "Put on hold",
            HoldForm,
            "Only a hold awaiting verification or clarification stops the legal clock, and only where the "
            "jurisdiction's rule pauses; an internal hold leaves it running.",
            lambda r: _allows(r, Status.ON_HOLD),
        ),
        Action(
            "resume",
            "Resume",
            ConfirmForm,
            "The request goes back to the status it was put on hold from; a clock-stopping pause pushes the deadline.",
            lambda r: r.status == Status.ON_HOLD,
        ),
        Action(
            "approve",
            "Approve",
            ConfirmForm,
            "Approves the request for fulfilment.",
            lambda r: _allows(r, Status.FULFILLING),
            permission=services.approval_permission,  # the service's own rule, so the button shows iff it accepts
            style="default",
        ),
        Action(
            "close",
            "Close",
            CloseForm,
            "Closes the request as completed or partially completed; the requester is told.",
            lambda r: _allows(r, Status.COMPLETED) or _allows(r, Status.PARTIALLY_COMPLETED),
        ),
        Action(
            "reject",
            "Reject",
            RejectForm,
            "Rejects the request; the requester is told why and where they can complain.",
            lambda r: _allows(r, Status.REJECTED),
            style="danger",
        ),
        Action(
            "withdraw",
            "Withdraw",
            ConfirmForm,
            "Records that the requester withdrew the request (on their instruction).",
            lambda r: _allows(r, Status.WITHDRAWN),
        ),
        Action(
            "send_verification",
            "Ask for verification",
            ConfirmForm,
            "Emails the requester a single-use verification link (valid for REQUEST_VERIFICATION_DAYS days) at the "
            "request's contact address; the request waits for verification. Sending again sends a new link.",
            lambda r: r.verified_at is None and r.status in (Status.RECEIVED, Status.AWAITING_VERIFICATION),
        ),
        Action(
            "verify_agent",
            "Verify the agent's authority",
            ConfirmForm,
            "Records that you checked the agent's proof of authority (PM-XI-2): open the file below first.",
            lambda r: r.requester == Requester.AGENT and r.agent_verified_at is None and r.is_open,
        ),
        Action(
            "restrict",
            "Restrict processing",
            RestrictionForLegalClaimsForm,
            "Records the restriction (Art. 18) through the consents app: consumers asking whether processing is "
            "allowed are told no for the purpose (PM-IX-5).",
            lambda r: r.right == Right.RESTRICTION and r.status == Status.FULFILLING,
        ),
        Action(
            "object",
            "Record the objection",
            RestrictionForm,
            "Records the objection (Art. 21) through the consents app: processing for the purpose stops (PM-IX-5).",
            lambda r: r.right == Right.OBJECTION and r.status == Status.FULFILLING,
        ),
        Action(
            "withdraw_consent",
            "Withdraw consents",
            WithdrawConsentForm,
            "Records the withdrawal of each chosen consent through the consents app, effective at once (PM-IX-6).",
            lambda r: r.right == Right.WITHDRAW_CONSENT and r.status == Status.FULFILLING,
        ),
        Action("move", "Move", MoveForm, "Moves the request on in the workflow.", lambda r: r.is_open),
        Action("note", "Add a note", NoteForm, "Adds a note to the timeline (staff only).", lambda r: True),
    )
}


def available_actions(rights_request: RightsRequest, user) -> list[dict]:
    """The buttons for this request and user: what the table allows now and the user may do."""
    buttons = []
    for action in ACTIONS.values():
        if action.key == "move" or not action.offered(rights_request):
            continue
        if not user.has_perm(action.permission_for(rights_request)):
            continue
        if action.key == "assign_me" and rights_request.assignee_id == user.pk:
            continue
        post = action.key == "assign_me"  # nothing to ask: a button on the page
        buttons.append({"key": action.key, "label": action.label, "style": action.style, "query": "", "post": post})
    if user.has_perm(WORK) and rights_request.is_open:
        for to_status in PLAIN_MOVES:
            # Work starts only once verified: before that, Verify is the way to in progress.
            if _allows(rights_request, to_status) and not (to_status == Status.IN_PROGRESS and not rights_request.verified_at):
                label = PLAIN_MOVE_LABELS[to_status]
                buttons.append({"key": "move", "label": label, "style": "", "query": f"?to={to_status}", "post": False})
    return buttons


# --- Logging a request received by email, post or phone ------------------------------------------------------


class LogRequestForm(forms.Form):
    subject_email = forms.EmailField(
        required=False,
        max_length=EMAIL_MAX,
        label="The subject's account email",
        help_text="Found exactly (case does not matter). Leave empty when the requester has no account.",
    )
    right = forms.ChoiceField(choices=Right.choices)
    channel = forms.ChoiceField(choices=[c for c in Channel.choices if c[0] != Channel.WEB], initial=Channel.EMAIL)
    received_at = forms.DateTimeField(
        initial=timezone.now, help_text="When the email, letter or call came in: the clock runs from then."
    )
    contact_email = forms.EmailField(
        required=False, max_length=EMAIL_MAX, help_text="Where we answer; empty: the account's address."
    )
    jurisdiction = forms.ModelChoiceField(
        queryset=Jurisdiction.objects.order_by("code"),
        required=False,
        help_text="Empty: from the account's country and region. Required when there is no account.",
    )
    details = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), required=False, label="What the request says")

    def clean(self):
        data = super().clean()
        email = data.get("subject_email")
        data["subject"] = None
        if email:
            data["subject"] = account_by_email(email, active_only=False)
            if data["subject"] is None:
                self.add_error("subject_email", "No account has this address. Leave it empty for a requester without one.")
        if not data.get("contact_email"):
            if data["subject"] is not None:
                data["contact_email"] = data["subject"].email
            elif not self.has_error("subject_email"):
                self.add_error("contact_email", "Give the address to answer at (the requester has no account).")
        if data.get("subject") is None and not data.get("jurisdiction") and not self.has_error("subject_email"):
            self.add_error("jurisdiction", "Choose the requester's jurisdiction: without an account it cannot be derived.")
        received = data.get("received_at")
        if received and received > timezone.now():
            self.add_error("received_at", "A request cannot have been received in the future.")
        return data


# --- Rights requests -------------------------------------------------------------------------------------------


class QueueFilter(admin.SimpleListFilter):
    """The workbench's queues; the same conditions as the dashboard tiles (requests.dashboard)."""

    title = "queue"
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        return [(queue.key, queue.label) for queue in dashboard.QUEUES]

    def queryset(self, request, queryset):
        if self.value() in dashboard.QUEUE_LABELS:
            return dashboard.queue_filter(queryset, self.value(), user=request.user)
        return queryset


class TimelineInline(admin.TabularInline):
    """The request's timeline (append-only): shown, never added to or edited here."""

    model = RequestEvent
    verbose_name = "timeline event"
    verbose_name_plural = "Timeline"
    fields = ("at", "kind", "actor", "from_status", "to_status", "message")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class PauseInline(TimelineInline):
    model = RequestPause
    verbose_name = "pause"
    verbose_name_plural = "Pauses"
    fields = ("reason", "stops_clock", "started_at", "ended_at", "note")
    readonly_fields = fields

    def get_queryset(self, request):
        return admin.TabularInline.get_queryset(self, request)


class PackageInline(TimelineInline):
    """Access and portability packages (PM-IX-1, PM-IX-4): what exists and how it was used, never the file."""

    model = ExportPackage
    verbose_name = "export package"
    verbose_name_plural = "Export packages"
    fields = ("status", "size", "files", "rows", "created_at", "expires_at", "downloads", "deleted_at")
    readonly_fields = fields

    def get_queryset(self, request):
        return admin.TabularInline.get_queryset(self, request)

    @admin.display(description="size")
    def size(self, obj):
        return filesizeformat(obj.size_bytes)


class RecipientNoticeInline(TimelineInline):
    """Art. 19: the recipients to tell of a rectification, erasure or restriction; the DPO marks each done."""

    model = RecipientNotice
    verbose_name = "recipient to tell"
    verbose_name_plural = "Recipients to tell (Art. 19)"
    fields = ("recipient", "categories", "created_at", "done_at", "done_by", "note", "mark_done")
    readonly_fields = fields

    def get_queryset(self, request):
        return admin.TabularInline.get_queryset(self, request).select_related("recipient", "done_by")

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        return fields if request.user.has_perm(NOTICE_DONE) else [f for f in fields if f != "mark_done"]

    @admin.display(description="")
    def mark_done(self, obj):
        if obj.done_at is not None:
            return "told"
        href = _url("rightsrequest_notice_done", obj.request_id, obj.pk)
        return format_html('<a class="button notice-done" href="{}">Mark done</a>', href)


@admin.register(RightsRequest)
class RightsRequestAdmin(admin.ModelAdmin):
    list_display = ("reference", "right", "jurisdiction_code", "status_badge", "received_at", "due", "assignee")
    list_display_links = ("reference",)
    list_filter = (QueueFilter, "status", "right", "channel", "jurisdiction")
    list_select_related = ("jurisdiction", "assignee")
    # An exact address only: a list that matches parts of people's addresses would let anyone browse them.
    search_fields = ("reference", "=contact_email")
    search_help_text = "A reference (DSR-2026-000123, or part of it) or the contact email (exactly)."
    inlines = (TimelineInline, PauseInline, RecipientNoticeInline, PackageInline)
    change_form_template = "requests/admin/change_form.html"
    change_list_template = "requests/admin/change_list.html"
    fieldsets = (
        (None, {"fields": ("reference", "status_badge", "due_in_force", "right", "jurisdiction", "channel", "assignee")}),
        (
            "Requester",
            {"fields": ("subject", "subject_ref", "requester", "agent_name", "agent_authority", "contact_email", "details")},
        ),
        (
            "Clock",
            {
                "fields": (
                    "received_at",
                    "acknowledged_at",
                    "verified_at",
                    "due_at",
                    "extended_due_at",
                    "extensions_used",
                    "extension_reason",
                    "extension_notice_sent_at",
                    "reminders_sent",
                )
            },
        ),
        (
            "Decision",
            {
                "fields": (
                    "held_from",
                    "hold_reason",
                    "agent_verified_at",
                    "agent_verified_by",
                    "approved_by",
                    "approved_at",
                    "closed_at",
                    "outcome",
                    "duplicate_of",
                )
            },
        ),
        ("Bookkeeping", {"fields": ("created_by", "created_at", "updated_at"), "classes": ("collapse",)}),
    )

    # The page is read-only (see the module's docstring): actions change requests, never this form.
    def get_readonly_fields(self, request, obj=None):
        return [name for fieldset in self.fieldsets for name in fieldset[1]["fields"]]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a request is a legal record: retention removes it, never a person

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("jurisdiction", "assignee")

    # Columns ----------------------------------------------------------------------------------------------

    @admin.display(description="jurisdiction", ordering="jurisdiction__code")
    def jurisdiction_code(self, obj):
        return obj.jurisdiction.code

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        label = obj.get_status_display()
        if obj.status == Status.ON_HOLD and obj.hold_reason:
            label = f"{label}: {obj.get_hold_reason_display().lower()}"
        return badge(label, STATUS_SEVERITY.get(obj.status, "info"))

    @admin.display(description="due", ordering="due_at")
    def due(self, obj):
        """PM-IX-9: the deadline in force, red when passed and amber within the week (open requests only)."""
        # In the zone the deadlines count days in: a period ends at the end of a day there, 23:59.
        due = timezone.localtime(obj.effective_due_at, deadlines.deadline_zone())
        text = f"{due:%Y-%m-%d %H:%M %Z}"
        if obj.extended_due_at:
            text += " (extended)"
        severity = due_severity(obj)
        if not severity:
            return text
        title = "overdue" if severity == "red" else f"due within {dashboard.DUE_SOON_DAYS} days"
        return badge(text, severity, title=title)

    @admin.display(description="deadline in force")
    def due_in_force(self, obj):
        return self.due(obj)

    # Pages --------------------------------------------------------------------------------------------------

    def get_urls(self):
        def view(route, fn, name):
            return path(route, self.admin_site.admin_view(fn), name=f"requests_rightsrequest_{name}")

        return [
            view("log/", self.log_view, "log"),
            view("metrics/", self.metrics_view, "metrics"),
            view("<path:object_id>/action/<slug:action>/", self.action_view, "action"),
            view("<path:object_id>/personal-data/", self.personal_data_view, "personal_data"),
            view("<path:object_id>/authority/", self.authority_view, "authority"),
            view("<path:object_id>/rectification/", self.rectification_view, "rectification"),
            view("<path:object_id>/notice/<int:notice_id>/done/", self.notice_done_view, "notice_done"),
            *super().get_urls(),
        ]

    def _page(self, request, template, title, **context):
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": title, **context}
        request.current_app = self.admin_site.name
        return TemplateResponse(request, template, context)

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_log": request.user.has_perm(ADD)}
        return super().changelist_view(request, extra_context=extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        rights_request = self.get_object(request, unquote(object_id))
        extra_context = {**(extra_context or {})}
        if rights_request is not None:
            extra_context.update(self._panels(request, rights_request))
        return super().change_view(request, object_id, form_url, extra_context=extra_context)

    def _panels(self, request, r: RightsRequest) -> dict:
        """What the request page shows above its fields: buttons, the job's progress, links to the data
        summary, the agent's proof and the rectification review (each only for those who may open it)."""
        user = request.user
        job = None
        if r.job_status:
            percent = round(100 * r.job_done / r.job_total) if r.job_total else None
            job = {"running": r.job_status in (JobStatus.QUEUED, JobStatus.RUNNING), "percent": percent}
        rectifications = None
        if r.right == Right.RECTIFICATION:
            counts = RectificationItem.objects.filter(request=r).aggregate(
                total=Count("pk"), pending=Count("pk", filter=Q(decision=RectificationItem.Decision.PENDING))
            )
            rectifications = {**counts, "url": _url("rightsrequest_rectification", r.pk)}
        return {
            "request_actions": available_actions(r, user),
            "job": job,
            "refresh": bool(job and job["running"]),
            "data_url": _url("rightsrequest_personal_data", r.pk) if user.has_perm(VIEW_DATA) and r.subject_id else "",
            "authority_url": _url("rightsrequest_authority", r.pk) if user.has_perm(WORK) and r.agent_authority else "",
            "rectifications": rectifications,
        }

    def _request_or_404(self, request, object_id) -> RightsRequest:
        # As the stock change view finds its object: a malformed id is a 404, never a 500 (issue 16).
        return admin_object_or_404(self, request, object_id)

    def personal_data_view(self, request, object_id):
        """The subject's data summary per category, store and model (PM-IX-1). GET says that opening it is
        recorded; the POST opens it through `metrics.subject_data_summary_open`, which writes the audit event."""
        if not request.user.has_perm(VIEW_DATA):
            raise PermissionDenied
        rights_request = self._request_or_404(request, object_id)
        summary = None
        if request.method == "POST":
            summary = metrics.subject_data_summary_open(rights_request=rights_request, actor=request.user)
        return self._page(
            request,
            "requests/admin/personal_data.html",
            f"The subject's data: {rights_request.reference}",
            rights_request=rights_request,
            summary=summary,
        )

    def authority_view(self, request, object_id):
        """The agent's proof of authority (PM-XI-2), served only to staff who work requests: uploads are not
        public media."""
        if not request.user.has_perm(WORK):
            raise PermissionDenied
        rights_request = self._request_or_404(request, object_id)
        if not rights_request.agent_authority:
            raise Http404("No proof of authority was uploaded.")
        name = rights_request.agent_authority.name.rsplit("/", 1)[-1]
        return FileResponse(rights_request.agent_authority.open("rb"), as_attachment=True, filename=name)

    def rectification_view(self, request, object_id):
        """PM-IX-3: each proposed correction, old and new side by side; apply or reject each
        (`rectification.rectification_decide`). Deciding needs the approval permission of the right."""
        if not request.user.has_perm(VIEW):
            raise PermissionDenied
        rights_request = self._request_or_404(request, object_id)
        may_decide = request.user.has_perm(rectification.PERMISSION) and rights_request.is_open
        items = RectificationItem.objects.filter(request=rights_request).select_related("decided_by")
        if request.method == "POST":
            if not may_decide:
                raise PermissionDenied
            decision = request.POST.get("decision")
            note = request.POST.get("note", "")
            try:
                if decision == "complete":
                    rectification.rectification_complete(rights_request=rights_request, actor=request.user)
                    done = "closed with the summary of the decisions"
                elif decision == "apply_all":
                    # Changes to one record are validated together (a country and its region).
                    pending = items.filter(decision=RectificationItem.Decision.PENDING)
                    decided = rectification.rectification_decide_many(items=pending, actor=request.user, apply=True, note=note)
                    done = f"{len(decided)} correction{'s' if len(decided) != 1 else ''} applied"
                elif decision in ("apply", "reject"):
                    item = _item_or_404(items, request.POST.get("item", ""))
                    rectification.rectification_decide(item=item, actor=request.user, apply=decision == "apply", note=note)
                    done = f"the correction of {item.field} was {'applied' if decision == 'apply' else 'rejected'}"
                else:
                    raise Http404("Apply, reject or complete.")
            except PermissionDenied as exc:
                messages.error(request, str(exc) or "You may not decide this correction.")
            except ValidationError as exc:  # RequestActionError included
                for message in validation_messages(exc):
                    messages.error(request, message)
            else:
                messages.success(request, f"{rights_request.reference}: {done}.")
                if decision == "complete":
                    return HttpResponseRedirect(_url("rightsrequest_change", rights_request.pk))
            return HttpResponseRedirect(_url("rightsrequest_rectification", rights_request.pk))
        return self._page(
            request,
            "requests/admin/rectification.html",
            f"Proposed corrections: {rights_request.reference}",
            rights_request=rights_request,
            items=list(items),
            may_decide=may_decide,
            pending=sum(item.decision == RectificationItem.Decision.PENDING for item in items),
        )

    def notice_done_view(self, request, object_id, notice_id):
        """Art. 19: mark a recipient as told of the rectification, erasure or restriction
        (`recipients.recipient_notice_done`)."""
        if not request.user.has_perm(NOTICE_DONE):
            raise PermissionDenied
        rights_request = self._request_or_404(request, object_id)
        notice = get_object_or_404(RecipientNotice.objects.select_related("recipient"), pk=notice_id, request=rights_request)
        back = HttpResponseRedirect(_url("rightsrequest_change", rights_request.pk))
        form = NoticeDoneForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                recipient_notice_done(notice=notice, actor=request.user, note=form.cleaned_data["note"])
            except PermissionDenied as exc:
                messages.error(request, str(exc) or "You may not mark this notice done.")
            except ValidationError as exc:
                for message in validation_messages(exc):
                    messages.error(request, message)
            else:
                messages.success(request, f"{rights_request.reference}: {notice.recipient} marked as told.")
            return back
        return self._page(
            request,
            "requests/admin/notice_done.html",
            f"Mark {notice.recipient} as told: {rights_request.reference}",
            rights_request=rights_request,
            notice=notice,
            form=form,
        )

    def metrics_view(self, request):
        """Requests per month by right and jurisdiction, time to close, on-time share and overdue now, with
        server-drawn charts (`requests.metrics`: a fixed number of queries)."""
        if not request.user.has_perm(VIEW):
            raise PermissionDenied
        try:
            months = int(request.GET.get("months", metrics.DEFAULT_MONTHS))
        except ValueError:
            months = metrics.DEFAULT_MONTHS
        data = metrics.request_metrics(months=months)
        return self._page(
            request,
            "requests/admin/metrics.html",
            "Rights-request metrics",
            metrics=data,
            charts=metrics.metrics_charts(data),
            months=len(data.months),
            month_choices=(6, 12, 24, 36),
            right_names=dict(Right.choices),
        )

    def add_view(self, request, form_url="", extra_context=None):
        # A bare model form would skip the clock, the duplicate check and the timeline.
        return HttpResponseRedirect(_url("rightsrequest_log"))

    def action_view(self, request, object_id, action):
        """One action's screen (GET: what it does and what it needs) and its service call (POST)."""
        spec = ACTIONS.get(action)
        if spec is None:
            raise Http404("No such action.")
        rights_request = self._request_or_404(request, object_id)
        if not request.user.has_perm(spec.permission_for(rights_request)):
            raise PermissionDenied
        back = HttpResponseRedirect(_url("rightsrequest_change", rights_request.pk))
        to_status = request.POST.get("to_status") or request.GET.get("to", "")
        if request.method == "POST":
            form = spec.form(request.POST)
            if form.is_valid():
                try:
                    _call(action, rights_request, request.user, form.cleaned_data)
                except PermissionDenied as exc:
                    messages.error(request, str(exc) or "You may not do this to this request.")
                    return back
                except ValidationError as exc:  # RequestActionError included
                    for message in validation_messages(exc):
                        messages.error(request, message)
                    if spec.form is ConfirmForm:
                        return back
                    form.add_error(None, exc.messages)
                else:
                    rights_request.refresh_from_db()
                    done = f"{rights_request.reference}: {self._done(action, to_status)}."
                    messages.success(request, f"{done} Now {rights_request.get_status_display().lower()}.")
                    return back
        else:
            form = spec.form(initial={"to_status": to_status} if action == "move" else None)
        label = PLAIN_MOVE_LABELS.get(to_status, spec.label) if action == "move" else spec.label
        return self._page(
            request,
            "requests/admin/action.html",
            f"{label}: {rights_request.reference}",
            rights_request=rights_request,
            form=form,
            action=spec,
            action_label=label,
            due=self.due(rights_request),
            erasure_preview=self._erasure_preview(rights_request) if action == "approve" else None,
            authority_url=_url("rightsrequest_authority", rights_request.pk) if action == "verify_agent" else "",
        )

    @staticmethod
    def _erasure_preview(rights_request: RightsRequest) -> dict | None:
        """PM-IX-2: before an erasure is approved, what it would erase, anonymise and keep (and why)."""
        if rights_request.right not in (Right.ERASURE, Right.CHILD_REPORT) or rights_request.subject is None:
            return None
        rows = erasure_preview(subject=rights_request.subject)
        names = dict(DataCategory.objects.filter(code__in=[row["category"] for row in rows]).values_list("code", "name"))
        return {"rows": [{**row, "name": names.get(row["category"], row["category"])} for row in rows]}

    @staticmethod
    def _done(action: str, to_status: str) -> str:
        if action == "move":
            return f"moved to {Status(to_status).label.lower()}" if to_status in Status.values else "moved"
        return {
            "verify": "verified",
            "assign": "assigned",
            "assign_me": "assigned to you",
            "extend": "deadline extended",
            "hold": "put on hold",
            "resume": "resumed",
            "approve": "approved",
            "reject": "rejected",
            "close": "closed",
            "withdraw": "withdrawn",
            "note": "note added",
            "send_verification": "verification link sent",
            "verify_agent": "the agent's authority is verified",
            "restrict": "processing restricted",
            "object": "objection recorded",
            "withdraw_consent": "consents withdrawn",
        }[action]

    def log_view(self, request):
        """Log a request received by email, post or phone on the subject's behalf (`rights_request_submit`).

        "Find the account" looks the subject up by exact address (case ignored) and keeps what was typed;
        "Log the request" submits it with the staff member as actor."""
        if not request.user.has_perm(ADD):
            raise PermissionDenied
        found, searched = None, False
        if request.method == "POST" and "find" in request.POST:
            email = request.POST.get("subject_email", "").strip()
            searched = bool(email)
            found = account_by_email(email, active_only=False)
            typed = {name: request.POST[name] for name in LogRequestForm.base_fields if request.POST.get(name)}
            form = LogRequestForm(initial=typed)
        elif request.method == "POST":
            form = LogRequestForm(request.POST)
            if form.is_valid():
                data = form.cleaned_data
                found, searched = data["subject"], bool(data["subject_email"])
                try:
                    created = services.rights_request_submit(
                        right=data["right"],
                        contact_email=data["contact_email"],
                        jurisdiction=data["jurisdiction"],
                        subject=data["subject"],
                        details=data["details"],
                        channel=data["channel"],
                        received_at=data["received_at"],
                        actor=request.user,
                    )
                except PermissionDenied as exc:
                    messages.error(request, str(exc) or "You may not log requests.")
                except ValidationError as exc:  # RequestActionError included
                    for message in validation_messages(exc):
                        form.add_error(None, message)
                else:
                    messages.success(request, f"Logged {created.reference} ({created.get_status_display().lower()}).")
                    if request.user.has_perm(VIEW):
                        return HttpResponseRedirect(_url("rightsrequest_change", created.pk))
                    return HttpResponseRedirect(_url("rightsrequest_log"))
        else:
            form = LogRequestForm()
        return self._page(
            request,
            "requests/admin/log.html",
            "Log a request received by email, post or phone",
            form=form,
            found=found,
            searched=searched,
        )


# --- Disclosures (PM-IV-5) ------------------------------------------------------------------------------------------


class DisclosureForm(forms.Form):
    subject_email = forms.EmailField(
        label="The subject's account email",
        max_length=EMAIL_MAX,
        help_text="Found exactly (case does not matter), never by part of it.",
    )
    authority = forms.CharField(max_length=200, help_text="Who asked: the court, police force, regulator ...")
    legal_ground = forms.CharField(max_length=300, help_text="The law or order that obliged or allowed the disclosure.")
    reference = forms.CharField(max_length=200, required=False, help_text="Their case or order number.")
    categories = forms.ModelMultipleChoiceField(
        queryset=DataCategory.objects.none(), widget=forms.CheckboxSelectMultiple, label="Data categories disclosed"
    )
    disclosed_at = forms.DateTimeField(help_text="When the data was handed over.")
    approved_by = forms.ModelChoiceField(queryset=User.objects.none(), help_text="The DPO who approved it.")
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)

    # The service names its arguments; the form shows their errors on its own fields.
    SERVICE_FIELDS = {"subject": "subject_email", "category_codes": "categories"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["categories"].queryset = DataCategory.objects.order_by("name")
        self.fields["approved_by"].queryset = staff_with_permission(ADD_DISCLOSURE)

    def clean_subject_email(self):
        email = self.cleaned_data["subject_email"]
        self.subject = account_by_email(email, active_only=False)
        if self.subject is None:
            raise ValidationError("No account has this address.")
        return email

    def add_service_errors(self, exc: ValidationError) -> None:
        if not hasattr(exc, "error_dict"):
            self.add_error(None, exc)
            return
        for name, errors in exc.message_dict.items():
            name = self.SERVICE_FIELDS.get(name, name)
            self.add_error(name if name in self.fields else None, errors)


@admin.register(Disclosure)
class DisclosureAdmin(admin.ModelAdmin):
    """PM-IV-5: one-off disclosures to authorities. Recorded through `disclosures.disclosure_record` (audited)
    and read-only afterwards: a log is not edited, and never deleted here."""

    list_display = ("disclosed_at", "authority", "legal_ground", "reference", "category_list", "approved_by", "subject_ref")
    list_select_related = ("approved_by",)
    list_filter = ("disclosed_at",)
    date_hierarchy = "disclosed_at"
    # An exact address only, as in the request list.
    search_fields = ("=subject__email", "authority", "reference")
    search_help_text = "The subject's account email (exactly), the authority or their reference."
    fields = (
        "subject",
        "subject_ref",
        "authority",
        "legal_ground",
        "reference",
        "category_list",
        "disclosed_at",
        "approved_by",
        "notes",
        "created_by",
        "created_at",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("categories")

    @admin.display(description="categories")
    def category_list(self, obj):
        return ", ".join(sorted(c.name for c in obj.categories.all()))

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def add_view(self, request, form_url="", extra_context=None):
        """The record screen: the subject found by exact email, then `disclosure_record` with the user as actor."""
        if not request.user.has_perm(ADD_DISCLOSURE):
            raise PermissionDenied
        form = DisclosureForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                disclosure = disclosure_record(
                    subject=form.subject,
                    authority=data["authority"],
                    legal_ground=data["legal_ground"],
                    reference=data["reference"],
                    category_codes=[c.code for c in data["categories"]],
                    disclosed_at=data["disclosed_at"],
                    approved_by=data["approved_by"],
                    actor=request.user,
                    notes=data["notes"],
                )
            except PermissionDenied as exc:
                messages.error(request, str(exc) or "You may not record disclosures.")
            except ValidationError as exc:
                form.add_service_errors(exc)
            else:
                messages.success(request, f"Recorded the disclosure to {disclosure.authority}.")
                return HttpResponseRedirect(reverse("admin:requests_disclosure_change", args=(disclosure.pk,)))
        context = {**self.admin_site.each_context(request), "opts": self.opts, "title": "Record a disclosure", "form": form}
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "requests/admin/disclosure_add.html", context)


# --- Deadline rules --------------------------------------------------------------------------------------------


@admin.register(DeadlineRule)
class DeadlineRuleAdmin(admin.ModelAdmin):
    """PM-IX-9: the statutory periods, data the DPO edits; saved through the register's audited service.

    Errors from the model's own checks (`clean()` and the constraints) are shown on the field they name,
    or above the form (and above the row, in the list) when they concern several fields."""

    list_display = (
        "jurisdiction",
        "right_or_every",
        "period_value",
        "period_unit",
        "extension",
        "clock_starts",
        "pauses_for_verification",
        "roll",
        "holidays",
        "acknowledgement",
        "citation",
    )
    list_display_links = ("jurisdiction",)
    list_editable = ("period_value", "period_unit", "pauses_for_verification")
    list_filter = ("jurisdiction", "period_unit", "clock_starts", "pauses_for_verification", "roll")
    list_select_related = ("jurisdiction",)
    list_per_page = 200  # every row on one page, grouped by jurisdiction
    ordering = ("jurisdiction__code", "right")
    search_fields = ("jurisdiction__code", "citation")
    readonly_fields = ("updated_at",)
    fieldsets = (
        (None, {"fields": ("jurisdiction", "right", "citation", "notes")}),
        ("Period", {"fields": ("period_value", "period_unit", "clock_starts", "pauses_for_verification")}),
        ("Non-working days", {"fields": ("roll", "holiday_calendar")}),
        ("Extension", {"fields": ("extension_value", "extension_unit", "extensions_allowed")}),
        ("Acknowledgement", {"fields": ("acknowledge_value", "acknowledge_unit")}),
        ("Bookkeeping", {"fields": ("updated_at",), "classes": ("collapse",)}),
    )

    @admin.display(description="public holidays")
    def holidays(self, obj):
        return deadlines.holiday_calendar_code(obj) or "none (weekends only)"

    @admin.display(description="right", ordering="right")
    def right_or_every(self, obj):
        return obj.get_right_display() if obj.right else "every other right"

    @admin.display(description="extension")
    def extension(self, obj):
        if not obj.extensions_allowed:
            return "none"
        times = "once" if obj.extensions_allowed == 1 else f"{obj.extensions_allowed} times"
        return f"+{obj.extension_value} {obj.get_extension_unit_display()}, {times}"

    @admin.display(description="acknowledge within")
    def acknowledgement(self, obj):
        if obj.acknowledge_value is None:
            return "-"
        return f"{obj.acknowledge_value} {obj.get_acknowledge_unit_display()}"

    def save_model(self, request, obj, form, change):
        if change and not form.has_changed():
            return
        register_entry_save(actor=request.user, instance=obj, changed_fields=form.changed_data)

    def has_delete_permission(self, request, obj=None):
        return False  # requests' clocks were computed from these rows: change them, never delete
