"""The chat service's data in the workbench: what the DPO looks at when answering a subject or a complaint.

Invariants:
- Read-only. Nobody adds, changes or deletes chat rows here: erasure and anonymisation go through retention
  and rights requests, which record why and leave an audit event; a hand edit would do neither. So there
  is no add, no change, no delete, no bulk action; content shows in the view page as read-only text.
- Only roles granted `chat.view_*` see these pages (the DPO). Auditors and support agents never hold chat
  permissions (accounts.roles NEVER), so they never see chat content.
- Search is by one exact email (lower-cased, like accounts store it): it resolves to the account's id
  through the unique email index and then uses the (user, created) index; a substring search would scan.
- Changelists fetch what their columns show in a fixed number of queries (list_select_related), whatever
  the number of rows. No list counts a big table in full: show_full_result_count is off and the paginator
  estimates (privacyops.admin_utils); the two high-volume tables (access logs, usage events) sort on their
  `created` index, the others on the primary key.
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from accounts.models import User
from accounts.selectors import normalised_email
from privacyops.admin_utils import EstimatedCountPaginator, ReadOnlyAdminMixin

from . import models


def _email_user_ids(term: str):
    return User.objects.filter(email=normalised_email(term)).values("pk")  # a subquery: no extra round trip


class ChatDataAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only pages over one chat table, searched by the subject's exact email."""

    user_path = "user"  # the lookup from this model to its subject
    extra_readonly: tuple[str, ...] = ()
    list_per_page = 50
    actions = None
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    ordering = ["-pk"]  # newest first through the primary key; a sort on `created` would read the whole table
    search_help_text = "The subject's exact email address."

    def get_search_fields(self, request):
        return [f"{self.user_path}__email"]  # shows the search box; get_search_results decides the query

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(**{f"{self.user_path}__in": _email_user_ids(term)}), False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields] + list(self.extra_readonly)

    @admin.display(description="subject", ordering="user__email")
    def user_email(self, obj):
        user = obj.user
        return user.email if user else "—"


@admin.register(models.Conversation)
class ConversationAdmin(ChatDataAdmin):
    list_display = ["title_or_id", "user_email", "created", "updated"]
    list_filter = [("created", admin.DateFieldListFilter)]
    list_select_related = ["user"]

    @admin.display(description="conversation", ordering="title")
    def title_or_id(self, obj):
        return str(obj)


@admin.register(models.Message)
class MessageAdmin(ChatDataAdmin):
    user_path = "conversation__user"
    list_display = ["__str__", "user_email", "conversation", "role", "created"]
    list_filter = ["role", ("created", admin.DateFieldListFilter)]
    list_select_related = ["conversation__user"]

    @admin.display(description="subject", ordering="conversation__user__email")
    def user_email(self, obj):
        return obj.conversation.user.email


@admin.register(models.Attachment)
class AttachmentAdmin(ChatDataAdmin):
    user_path = "message__conversation__user"
    list_display = ["__str__", "user_email", "kind", "size", "created"]
    list_filter = ["kind", ("created", admin.DateFieldListFilter)]
    list_select_related = ["message__conversation__user"]

    @admin.display(description="subject", ordering="message__conversation__user__email")
    def user_email(self, obj):
        return obj.message.conversation.user.email


@admin.register(models.Feedback)
class FeedbackAdmin(ChatDataAdmin):
    list_display = ["__str__", "user_email", "rating", "created", "anonymised_at"]
    list_filter = ["rating", ("created", admin.DateFieldListFilter), ("anonymised_at", admin.EmptyFieldListFilter)]
    list_select_related = ["user"]
    extra_readonly = ("snapshot",)
    exclude = ["conversation_snapshot"]

    def get_readonly_fields(self, request, obj=None):
        return [f for f in super().get_readonly_fields(request, obj) if f != "conversation_snapshot"]

    @admin.display(description="conversation snapshot")
    def snapshot(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.conversation_snapshot, indent=2, ensure_ascii=False))


@admin.register(models.SupportMessage)
class SupportMessageAdmin(ChatDataAdmin):
    list_display = ["__str__", "sender", "channel", "third_party_attested", "created", "anonymised_at"]
    list_filter = ["channel", "third_party_attested", ("created", admin.DateFieldListFilter)]
    list_select_related = ["user"]
    search_help_text = "The sender's exact email address (with or without an account)."

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        by_account = queryset.filter(user__in=_email_user_ids(term))
        by_address = queryset.filter(email__in={term, term.lower()})  # exact: the email index serves it
        return by_account | by_address, False

    @admin.display(description="sender", ordering="email")
    def sender(self, obj):
        return obj.user.email if obj.user else f"{obj.email} (no account)"


class HighVolumeAdmin(ChatDataAdmin):
    """Access logs and usage events: millions of rows; never a full count, never a DISTINCT for a filter."""

    list_per_page = 100
    list_select_related = ["user"]
    ordering = ["-created"]  # both tables have an index on created


@admin.register(models.AccessLog)
class AccessLogAdmin(HighVolumeAdmin):
    list_display = ["created", "user_email", "ip_address", "path", "browser", "device_model", "anonymised_at"]
    list_filter = [("created", admin.DateFieldListFilter), ("user", admin.EmptyFieldListFilter)]


@admin.register(models.UsageEvent)
class UsageEventAdmin(HighVolumeAdmin):
    list_display = ["created", "user_email", "event_type", "feature", "country", "device_type", "anonymised_at"]
    list_filter = [("created", admin.DateFieldListFilter), ("anonymised_at", admin.EmptyFieldListFilter)]
