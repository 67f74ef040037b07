"""PM-X-1, PM-0-1: moving the policy models from `consents` to `policies` loses nothing.

Runs the real migrations on the test database: back to the last migration before the split (consents
0007, no policies app), rows written through the historical consents models, forward again, and the rows
read through today's models; the permissions holders had keep working under their new app label.
"""

import datetime
import uuid

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from consents.models import ConsentEvent
from policies.models import PolicyAcceptance, PolicyNoticeDelivery, PolicyVersion
from policies.selectors import policy_version_in_force
from tests.factories.accounts import StaffFactory

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("consents", "0007_consent_event_no_unique_hash"), ("policies", None)]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state([t for t in targets if t[1] is not None]).apps


def _forward():
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def _rows_before_the_split(old) -> dict:
    """A published version with an acceptance, a notice delivery and a ledger event, as today's main wrote them."""
    User = old.get_model("accounts", "User")
    Version = old.get_model("consents", "PolicyVersion")
    Purpose = old.get_model("inventory", "Purpose")
    ConsentPurpose = old.get_model("consents", "ConsentPurpose")
    Chain = old.get_model("consents", "ConsentChain")
    Event = old.get_model("consents", "ConsentEvent")
    now = timezone.now()
    user = User.objects.create(email="before@example.org", subject_ref=uuid.uuid4())
    version = Version.objects.create(
        label="2025-04-25",
        last_updated=datetime.date(2025, 4, 25),
        effective_at=now - datetime.timedelta(days=10),
        summary="First",
        text="# Policy",
        published_at=now - datetime.timedelta(days=40),
    )
    acceptance = old.get_model("consents", "PolicyAcceptance").objects.create(
        subject_ref=user.subject_ref, version=version, method="signup", client="web", ua_hash="f" * 64
    )
    delivery = old.get_model("consents", "PolicyNoticeDelivery").objects.create(version=version, user=user, status="sent")
    purpose = ConsentPurpose.objects.create(
        code="migration-test",
        name="Migration test",
        description="Asked only by this test.",
        purpose=Purpose.objects.create(code="migration-test", name="Migration test"),
    )
    chain = Chain.objects.create(subject_ref=user.subject_ref, length=1)
    event = Event.objects.create(
        chain=chain,
        seq=1,
        subject_ref=user.subject_ref,
        purpose=purpose,
        action="given",
        method="signup",
        policy_version=version,
        policy_label=version.label,
        effective_at=now,
        prev_hash="0" * 64,
        hash="1" * 64,
    )
    return {"user": user.pk, "version": version.pk, "acceptance": acceptance.pk, "delivery": delivery.pk, "event": event.pk}


def test_pm_x_1_policy_rows_written_before_the_split_are_intact_and_read_through_the_policies_models():
    old = _migrate(BEFORE)
    try:
        ids = _rows_before_the_split(old)
    finally:
        _forward()

    version = PolicyVersion.objects.get()
    assert (version.pk, version.label, version.summary, version.text) == (ids["version"], "2025-04-25", "First", "# Policy")
    assert policy_version_in_force() == version
    acceptance = PolicyAcceptance.objects.select_related("version").get()
    assert (acceptance.pk, acceptance.version, acceptance.method, acceptance.ua_hash) == (
        ids["acceptance"],
        version,
        "signup",
        "f" * 64,
    )
    delivery = PolicyNoticeDelivery.objects.get()
    assert (delivery.pk, delivery.version, delivery.user_id, delivery.status) == (ids["delivery"], version, ids["user"], "sent")
    assert ConsentEvent.objects.get(pk=ids["event"]).policy_version == version
    assert list(version.acceptances.all()) == [acceptance] and list(version.deliveries.all()) == [delivery]
    # The tables kept their names: nothing was copied.
    tables = set(connection.introspection.table_names())
    assert {"consents_policyversion", "consents_policyacceptance", "consents_policynoticedelivery"} <= tables


def test_pm_x_1_the_publish_permission_keeps_its_row_and_its_holders_under_the_policies_label():
    old = _migrate(BEFORE)
    try:
        ContentType = old.get_model("contenttypes", "ContentType")
        OldPermission = old.get_model("auth", "Permission")
        OldGroup = old.get_model("auth", "Group")
        # A database from before the split: the content type is consents', the DPO's group holds the permission.
        ContentType.objects.filter(app_label="policies").delete()
        content_type, _ = ContentType.objects.get_or_create(app_label="consents", model="policyversion")
        publish, _ = OldPermission.objects.get_or_create(
            content_type=content_type, codename="publish_policyversion", defaults={"name": "Can publish a policy version"}
        )
        OldGroup.objects.create(name="Publishers").permissions.add(publish)
        publish_id = publish.pk
    finally:
        _forward()

    permission = Permission.objects.select_related("content_type").get(pk=publish_id)
    assert (permission.content_type.app_label, permission.codename) == ("policies", "publish_policyversion")
    staff = StaffFactory()
    staff.groups.add(Group.objects.get(name="Publishers"))
    assert staff.has_perm("policies.publish_policyversion")


def test_pm_x_1_when_both_content_types_exist_the_holders_get_the_policies_permission():
    old = _migrate(BEFORE)
    try:
        ContentType = old.get_model("contenttypes", "ContentType")
        OldPermission = old.get_model("auth", "Permission")
        OldGroup = old.get_model("auth", "Group")
        ContentType.objects.filter(app_label__in=["consents", "policies"], model="policyversion").delete()
        new_type = ContentType.objects.create(app_label="policies", model="policyversion")
        twin = OldPermission.objects.create(content_type=new_type, codename="publish_policyversion", name="Can publish")
        old_type = ContentType.objects.create(app_label="consents", model="policyversion")
        publish = OldPermission.objects.create(content_type=old_type, codename="publish_policyversion", name="Can publish")
        OldGroup.objects.create(name="Publishers").permissions.add(publish)
        twin_id = twin.pk
    finally:
        _forward()

    assert twin_id in Group.objects.get(name="Publishers").permissions.values_list("pk", flat=True)
