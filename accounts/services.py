"""Writes about accounts that must leave an audit event.

Staff are actors, not data subjects, in the audit trail: a change to a staff account's access is
recorded with subject=None and the account as the target (by id), so the record stays meaningful
after the account is gone.
"""

from __future__ import annotations

from django.db import transaction

from privacyops.audit import audit_personal_data_viewed, audit_record

from .models import User

# Fields of a user that decide what the account may do in the workbench.
STAFF_ACCESS_FIELDS = ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")


def staff_access_change_record(*, actor: User, user: User, changed_fields: list[str], was_staff: bool):
    """PM-VII-2: record a saved change to a staff account's access (flags, groups, own permissions).

    `changed_fields` are the fields the save changed; `was_staff` tells whether the account had workbench
    access before it (a change that grants or removes that access is recorded too). Returns the event,
    or None when nothing about staff access changed.
    """
    changed = sorted(set(changed_fields) & set(STAFF_ACCESS_FIELDS))
    if not changed or not (was_staff or user.is_staff or user.is_superuser):
        return None
    with transaction.atomic():
        return audit_record(
            actor=actor,
            action="account.staff_changed",
            target=user,
            subject=None,
            details={
                "user_id": user.pk,
                "changed": changed,
                "is_active": user.is_active,
                "is_staff": user.is_staff,
                "is_superuser": user.is_superuser,
                "groups": sorted(user.groups.values_list("name", flat=True)),
                "user_permissions": sorted(
                    f"{app}.{codename}"
                    for app, codename in user.user_permissions.values_list("content_type__app_label", "codename")
                ),
            },
        )


def account_view_record(*, actor: User, user: User):
    """Staff opened an account's page in the workbench: a view of a subject's data (ARCHITECTURE, audit trail).

    A subject is named only by subject_ref; a staff account is an actor, so it is the target alone.
    """
    subject = None if (user.is_staff or user.is_superuser) else user
    with transaction.atomic():
        return audit_personal_data_viewed(actor=actor, subject=subject, what="account", target=user, details={"user_id": user.pk})
