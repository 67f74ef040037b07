"""Reads about accounts that several apps need: finding an account by its address, and the staff who hold
a permission.

Addresses are stored normalised and in lower case (`UserManager`, `User.save`), so an exact match on the
lowered address finds what a case-insensitive one would, and uses the unique index instead of scanning
the table. An account is never found by part of its address: a lookup by fragment would let anyone who
can search browse people's addresses.
"""

from __future__ import annotations

from django.contrib.auth.models import Permission
from django.db.models import Q, QuerySet

from .models import User


def normalised_email(email: str) -> str:
    """The address as accounts store it: stripped, the domain normalised, all in lower case."""
    return User.objects.normalize_email((email or "").strip()).lower()


def account_by_email(email: str, *, active_only: bool = True) -> User | None:
    """The account with exactly this address (case ignored), or None. Closed accounts (`is_active` off)
    count only with `active_only=False`: a public form must not act for an account that was closed."""
    address = normalised_email(email)
    if not address:
        return None
    accounts = User.objects.filter(email=address)
    if active_only:
        accounts = accounts.filter(is_active=True)
    return accounts.first()


def staff_with_permission(permission: str) -> QuerySet[User]:
    """Active staff who hold `permission` ("app_label.codename") through a role, directly, or as
    superusers, by address: whom a request can be assigned to, who can approve a disclosure."""
    app_label, codename = permission.split(".", 1)
    granted = Permission.objects.filter(content_type__app_label=app_label, codename=codename)
    holders = Q(is_superuser=True) | Q(groups__permissions__in=granted) | Q(user_permissions__in=granted)
    return User.objects.filter(holders, is_staff=True, is_active=True).distinct().order_by("email")
