"""Staff roles: Django groups whose permissions are kept equal to the matrix below (PM-VII-2).

Invariants:
- The matrix is the only source of truth. `sync_roles()` creates missing groups and makes each group's
  permissions exactly what its specs resolve to, adding and removing; running it again changes nothing.
  A permission granted by hand in the admin is removed by the next sync (after every `migrate`, and by
  `manage.py syncroles`). Users' own permissions and group membership are not touched.
- A spec is `app_label.codename`, where the codename may hold shell-style wildcards (`inventory.view_*`).
  A grant that matches no permission is an error, so a typo can never silently grant nothing.
- NEVER lists what a role must not hold whatever the grants say (an analyst lifting legal holds, an
  auditor reading chat content). It may name permissions that do not exist yet: later issues add the
  models and these guards already stand. A grant that hits a NEVER spec is an error.

Later issues extend the matrix by adding lines (their models' permissions) under each role.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.db import DEFAULT_DB_ALIAS, transaction

ROLE_DPO = "DPO"
ROLE_PRIVACY_ANALYST = "Privacy analyst"
ROLE_AUDITOR = "Auditor"
ROLE_SUPPORT_AGENT = "Support agent"
ROLES = (ROLE_DPO, ROLE_PRIVACY_ANALYST, ROLE_AUDITOR, ROLE_SUPPORT_AGENT)

# role -> permission specs it is granted
ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    ROLE_DPO: (
        # Every permission of our apps (the later issues add consents.*, requests.* here when those apps
        # get models). The audit trail is read and verified, never written by hand.
        "privacyops.view_*",
        "privacyops.verify_auditevent",
        "accounts.*",
        "inventory.*",
        # The chat service's data: the DPO answers for it (rights requests, complaints, holds).
        "chat.*",
        # Retention rules (confirm, preview, run), legal holds (place, lift), purge runs.
        "retention.*",
        # Consent purposes, notices, cookies, policy versions (publish), restrictions, API keys; the ledger
        # only through the service (add = record on a subject's documented instruction; never change).
        "consents.*",
        "policies.*",
        # Staff groups, and the permissions table the group screen lists.
        "auth.*",
        # Schedules of the periodic jobs (django-celery-beat keeps them in the database).
        "django_celery_beat.*",
        # The admin's own change history: read it, never rewrite it.
        "admin.view_logentry",
        # Rights requests: work and approve every one (erasure too), edit the statutory clock rules, open a
        # subject's data summary (PM-IX).
        "requests.*",
    ),
    ROLE_PRIVACY_ANALYST: (
        # The register: full editing, import and export.
        "inventory.view_*",
        "inventory.add_*",
        "inventory.change_*",
        "inventory.delete_*",
        "inventory.import_*",
        "inventory.export_*",
        # Finding the subject a request is about.
        "accounts.view_user",
        "accounts.view_socialidentity",
        "privacyops.view_auditevent",
        # Legal holds, retention rules and purge runs: read only (NEVER below forbids lifting holds and
        # changing or confirming rules).
        "retention.view_*",
        # The consent ledger and proofs; recording a consent or a restriction on a subject's documented
        # instruction (the service requires the instruction's reference). Not publishing policy versions,
        # not API keys.
        "consents.view_*",
        "policies.view_*",
        "consents.add_consentevent",
        "consents.add_processingrestriction",
        "consents.change_processingrestriction",
        "consents.lift_processingrestriction",
        # Rights requests: read them, their timelines and the clock rules, open a subject's data summary, work
        # them and approve every right but erasure (the DPO's, PM-IX-2). Not the clock rules themselves.
        "requests.view_*",
        "requests.change_rightsrequest",
        "requests.approve_rightsrequest",
    ),
    ROLE_AUDITOR: (
        # Read-only on the register, with export for evidence.
        "inventory.view_*",
        "inventory.export_*",
        # The audit trail, and running its verification.
        "privacyops.view_auditevent",
        "privacyops.verify_auditevent",
        # Legal holds, retention rules and purge runs.
        "retention.view_*",
        # The consent ledger, receipts and proofs, policy versions and acceptances.
        "consents.view_*",
        "policies.view_*",
        # Rights requests, their timelines and the clock rules; not a subject's data summary.
        "requests.view_rightsrequest",
        "requests.view_requestevent",
        "requests.view_requestpause",
        "requests.view_deadlinerule",
        # What fulfilment left behind: packages (their record, never their content), Art. 19 tasks, disclosures.
        "requests.view_exportpackage",
        "requests.view_recipientnotice",
        "requests.view_disclosure",
    ),
    ROLE_SUPPORT_AGENT: (
        # Signing in to the workbench needs only is_staff. They log rights requests received by email or
        # post and see the requests themselves; nothing of a subject's data beyond the request.
        "requests.view_rightsrequest",
        "requests.add_rightsrequest",
    ),
}

# role -> specs it must never hold; may name permissions that later issues create.
NEVER: dict[str, tuple[str, ...]] = {
    # Nobody edits history, not even the DPO: the table refuses it anyway, and the grant would mislead.
    ROLE_DPO: ("privacyops.add_auditevent", "privacyops.change_auditevent", "privacyops.delete_auditevent"),
    ROLE_PRIVACY_ANALYST: (
        "retention.lift_legalhold",
        "retention.confirm_retentionrule",
        "retention.run_retentionrule",
        "retention.add_retentionrule",
        "retention.change_retentionrule",
        "retention.delete_retentionrule",
        "requests.approve_erasure_rightsrequest",
        "requests.add_deadlinerule",
        "requests.change_deadlinerule",
        "requests.delete_deadlinerule",
        "policies.publish_policyversion",
        "consents.add_apikey",
        "consents.change_apikey",
        "consents.delete_apikey",
        "auth.*",
        "accounts.add_*",
        "accounts.change_*",
        "accounts.delete_*",
    ),
    ROLE_AUDITOR: (
        "*.add_*",
        "*.change_*",
        "*.delete_*",
        "*.import_*",
        "*.confirm_*",
        "*.run_*",
        "*.lift_*",
        "chat.*",
        "accounts.*",
        "auth.*",
        "requests.approve_*",
        "requests.view_personal_data_rightsrequest",
    ),
    ROLE_SUPPORT_AGENT: (
        "chat.*",
        "inventory.*",
        "privacyops.*",
        "accounts.*",
        "auth.*",
        "retention.*",
        "consents.*",
        "policies.*",
        "requests.approve_*",
        "requests.change_*",
        "requests.delete_*",
        "requests.view_personal_data_rightsrequest",
        "requests.*_deadlinerule",
    ),
}


class RoleConfigurationError(Exception):
    """The matrix names a permission that does not exist, or grants what NEVER forbids."""


@dataclass
class RoleChange:
    created: bool = False
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.created or bool(self.added) or bool(self.removed)


def _label(perm: Permission) -> str:
    return f"{perm.content_type.app_label}.{perm.codename}"


def _matches(spec: str, label: str) -> bool:
    return fnmatch.fnmatchcase(label, spec)


def resolve_specs(specs: tuple[str, ...] | list[str], *, role: str = "", using: str = DEFAULT_DB_ALIAS) -> dict[str, int]:
    """Permission label -> id for every permission the specs match. Raises if a spec matches nothing."""
    every = {_label(p): p.pk for p in Permission.objects.using(using).select_related("content_type")}
    resolved: dict[str, int] = {}
    for spec in specs:
        if "." not in spec:
            raise RoleConfigurationError(f"{role or 'role'}: {spec!r} is not of the form app_label.codename")
        hits = {label: pk for label, pk in every.items() if _matches(spec, label)}
        if not hits:
            raise RoleConfigurationError(f"{role or 'role'}: {spec!r} matches no permission (a typo, or an app not migrated?)")
        resolved.update(hits)
    return resolved


def ensure_permissions(*, using: str = DEFAULT_DB_ALIAS) -> None:
    """Create the default and Meta permissions of every installed app (idempotent).

    post_migrate fires once per app in INSTALLED_APPS order, so when accounts' handler runs the apps after
    it may not have their permissions yet; creating them all first makes the sync independent of order.
    """
    for app_config in global_apps.get_app_configs():
        if app_config.models_module is not None:
            create_permissions(app_config, verbosity=0, using=using)


def sync_roles(
    *,
    matrix: dict[str, tuple[str, ...]] | None = None,
    never: dict[str, tuple[str, ...]] | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> dict[str, RoleChange]:
    """Make every role's group hold exactly the permissions its specs resolve to. Idempotent.

    Everything is resolved and checked before anything is written; one transaction.
    """
    matrix = ROLE_PERMISSIONS if matrix is None else matrix
    never = NEVER if never is None else never
    ensure_permissions(using=using)
    wanted: dict[str, dict[str, int]] = {}
    for role, specs in matrix.items():
        wanted[role] = resolve_specs(specs, role=role, using=using)
        forbidden = sorted(label for label in wanted[role] for spec in never.get(role, ()) if _matches(spec, label))
        if forbidden:
            raise RoleConfigurationError(f"{role}: the matrix grants what the role must never hold: {', '.join(forbidden)}")

    changes: dict[str, RoleChange] = {}
    with transaction.atomic(using=using):
        for role, perms in wanted.items():
            group, created = Group.objects.using(using).get_or_create(name=role)
            current = {_label(p): p.pk for p in group.permissions.select_related("content_type")}
            add = sorted(set(perms) - set(current))
            remove = sorted(set(current) - set(perms))
            if add:
                group.permissions.add(*(perms[label] for label in add))
            if remove:
                group.permissions.remove(*(current[label] for label in remove))
            changes[role] = RoleChange(created=created, added=add, removed=remove)
    return changes


def sync_roles_after_migrate(sender, app_config=None, using=DEFAULT_DB_ALIAS, plan=None, **kwargs) -> None:
    """post_migrate receiver: sync once per migrate, when the last app's signal fires."""
    configs = [c for c in global_apps.get_app_configs() if c.models_module is not None]
    if not configs or app_config is not configs[-1]:
        return
    sync_roles(using=using)
