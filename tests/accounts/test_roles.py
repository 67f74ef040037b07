"""Staff roles with least privilege (PM-VII-2): the groups follow the matrix in accounts/roles.py."""

import io

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command

from accounts.models import User
from accounts.roles import (
    ROLE_AUDITOR,
    ROLE_DPO,
    ROLE_PERMISSIONS,
    ROLE_PRIVACY_ANALYST,
    ROLE_SUPPORT_AGENT,
    ROLES,
    RoleConfigurationError,
    resolve_specs,
    sync_roles,
)
from privacyops.models import AuditEvent
from tests.factories.accounts import StaffFactory

pytestmark = pytest.mark.django_db

INVENTORY_MODELS = [m._meta.model_name for m in apps.get_app_config("inventory").get_models()]


def _perms(group_name: str) -> set[str]:
    group = Group.objects.get(name=group_name)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def _member(role: str) -> User:
    user = StaffFactory()
    user.groups.add(Group.objects.get(name=role))
    return User.objects.get(pk=user.pk)  # fresh object: no permission cache


def test_pm_vii_2_every_role_group_exists_after_migrate_with_the_matrix_permissions():
    for role in ROLES:
        assert _perms(role) == set(resolve_specs(ROLE_PERMISSIONS[role], role=role))


def test_pm_vii_2_sync_is_idempotent():
    sync_roles()
    changes = sync_roles()
    assert not any(change.changed for change in changes.values())


def test_pm_vii_2_sync_removes_a_permission_granted_by_hand():
    stray = Permission.objects.get(content_type__app_label="inventory", codename="delete_transfer")
    Group.objects.get(name=ROLE_AUDITOR).permissions.add(stray)

    changes = sync_roles()

    assert changes[ROLE_AUDITOR].removed == ["inventory.delete_transfer"]
    assert "inventory.delete_transfer" not in _perms(ROLE_AUDITOR)


def test_pm_vii_2_sync_restores_a_permission_removed_by_hand_and_a_deleted_group():
    Group.objects.get(name=ROLE_PRIVACY_ANALYST).permissions.remove(
        Permission.objects.get(content_type__app_label="inventory", codename="change_purpose")
    )
    Group.objects.filter(name=ROLE_SUPPORT_AGENT).delete()

    changes = sync_roles()

    assert changes[ROLE_PRIVACY_ANALYST].added == ["inventory.change_purpose"]
    assert changes[ROLE_SUPPORT_AGENT].created
    assert Group.objects.filter(name=ROLE_SUPPORT_AGENT).exists()


def test_pm_vii_2_privacy_analyst_can_change_import_and_export_the_register():
    analyst = _member(ROLE_PRIVACY_ANALYST)
    for model in INVENTORY_MODELS:
        for action in ("view", "add", "change", "delete", "import", "export"):
            assert analyst.has_perm(f"inventory.{action}_{model}"), f"{action}_{model}"
    assert analyst.has_perm("accounts.view_user")
    assert analyst.has_perm("privacyops.view_auditevent")
    assert not analyst.has_perm("accounts.change_user")
    assert not analyst.has_perm("auth.change_group")


def test_pm_vii_2_auditor_can_only_view_and_export_the_register():
    auditor = _member(ROLE_AUDITOR)
    for model in INVENTORY_MODELS:
        assert auditor.has_perm(f"inventory.view_{model}")
        assert auditor.has_perm(f"inventory.export_{model}")
        for action in ("add", "change", "delete", "import"):
            assert not auditor.has_perm(f"inventory.{action}_{model}"), f"{action}_{model}"
    assert auditor.has_perm("privacyops.view_auditevent")
    assert auditor.has_perm("privacyops.verify_auditevent")
    assert not auditor.has_perm("accounts.view_user")


def test_pm_vii_2_support_agent_has_nothing_on_the_register():
    agent = _member(ROLE_SUPPORT_AGENT)
    assert agent.get_all_permissions() == {"requests.view_rightsrequest", "requests.add_rightsrequest"}
    assert not agent.has_perm("inventory.view_purpose")


@pytest.mark.parametrize(
    ("role", "granted", "refused"),
    [
        (
            ROLE_DPO,
            {"approve_erasure_rightsrequest", "approve_rightsrequest", "view_personal_data_rightsrequest", "change_deadlinerule"},
            set(),
        ),
        (
            ROLE_PRIVACY_ANALYST,
            {"view_rightsrequest", "change_rightsrequest", "approve_rightsrequest", "view_personal_data_rightsrequest"},
            {"approve_erasure_rightsrequest", "change_deadlinerule", "delete_rightsrequest"},
        ),
        (
            ROLE_AUDITOR,
            {"view_rightsrequest", "view_requestevent", "view_deadlinerule"},
            {"change_rightsrequest", "add_rightsrequest", "approve_rightsrequest", "view_personal_data_rightsrequest"},
        ),
        (
            ROLE_SUPPORT_AGENT,
            {"view_rightsrequest", "add_rightsrequest"},
            {"change_rightsrequest", "approve_rightsrequest", "view_personal_data_rightsrequest", "view_deadlinerule"},
        ),
    ],
)
def test_pm_vii_2_rights_request_permissions_per_role(role, granted, refused):
    """Issue 5: erasure is approved by the DPO, other rights by the DPO or an analyst; support agents log
    requests; auditors read."""
    member = _member(role)
    for codename in granted:
        assert member.has_perm(f"requests.{codename}"), codename
    for codename in refused:
        assert not member.has_perm(f"requests.{codename}"), codename


def test_pm_vii_2_dpo_holds_every_permission_of_our_apps_but_writing_history():
    dpo = _member(ROLE_DPO)
    ours = Permission.objects.filter(content_type__app_label__in=["privacyops", "accounts", "inventory"]).select_related(
        "content_type"
    )
    assert ours.exists()
    history_writes = {"privacyops.add_auditevent", "privacyops.change_auditevent", "privacyops.delete_auditevent"}
    for perm in ours:
        label = f"{perm.content_type.app_label}.{perm.codename}"
        assert dpo.has_perm(label) == (label not in history_writes), label
    assert dpo.has_perm("privacyops.verify_auditevent")
    assert dpo.has_perm("auth.change_group")
    assert dpo.has_perm("django_celery_beat.change_periodictask")
    assert not dpo.is_superuser


def test_a_spec_that_matches_no_permission_raises_and_changes_nothing():
    before = _perms(ROLE_AUDITOR)
    with pytest.raises(RoleConfigurationError, match=r"inventory\.veiw_"):
        sync_roles(matrix={ROLE_AUDITOR: ("inventory.veiw_*",)})
    assert _perms(ROLE_AUDITOR) == before


def test_a_grant_the_role_must_never_hold_raises():
    with pytest.raises(RoleConfigurationError, match="must never hold"):
        sync_roles(matrix={ROLE_AUDITOR: ("inventory.view_*", "inventory.change_purpose")})


def test_syncroles_command_audits_a_run_that_changed_roles_and_only_that():
    Group.objects.get(name=ROLE_AUDITOR).permissions.add(
        Permission.objects.get(content_type__app_label="inventory", codename="change_purpose")
    )
    before = AuditEvent.objects.count()

    first, second = io.StringIO(), io.StringIO()
    call_command("syncroles", stdout=first)
    call_command("syncroles", stdout=second)

    events = list(AuditEvent.objects.order_by("id")[before:])
    assert [e.action for e in events] == ["roles.synced"]
    assert events[0].details[ROLE_AUDITOR]["removed"] == ["inventory.change_purpose"]
    assert "removed 1: inventory.change_purpose" in first.getvalue()
    assert f"{ROLE_AUDITOR}: unchanged" in second.getvalue()
