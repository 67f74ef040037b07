"""The accounts workbench: users who sign in with their email, and their social sign-in links.

The admin only collects what changed and calls accounts.services, which writes the audit events.
"""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from .forms import UserChangeForm, UserCreationForm
from .models import SocialIdentity, User
from .services import account_view_record, staff_access_change_record


class SocialIdentityInline(admin.TabularInline):
    model = SocialIdentity
    extra = 0
    fields = ["provider", "provider_uid", "linked_at"]


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    inlines = [SocialIdentityInline]
    list_display = ["email", "name", "country", "region", "is_staff", "closed_at", "group_names"]
    list_filter = ["is_staff", "is_superuser", "is_active", "groups", ("closed_at", admin.EmptyFieldListFilter), "country"]
    search_fields = ["email", "name"]
    ordering = ["email"]
    readonly_fields = ["subject_ref", "date_joined", "last_login", "last_activity_at"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Person", {"fields": ["name", "country", "region", "date_of_birth"]}),
        ("Account", {"fields": ["subject_ref", "date_joined", "last_login", "last_activity_at", "closed_at"]}),
        ("Staff access", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]

    def get_inlines(self, request, obj):
        # The add page is email and password only; links are recorded once the account exists.
        return self.inlines if obj is not None else []

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    @admin.display(description="groups")
    def group_names(self, obj):
        return ", ".join(sorted(group.name for group in obj.groups.all()))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200:
            account_view_record(actor=request.user, user=response.context_data["original"])
        return response

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if change:
            staff_access_change_record(
                actor=request.user,
                user=form.instance,
                changed_fields=form.changed_data,
                was_staff=bool(form.initial.get("is_staff") or form.initial.get("is_superuser")),
            )
