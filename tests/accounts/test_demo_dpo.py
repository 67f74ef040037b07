"""`manage.py demo_dpo`: the local demo account that script/server offers (PM-VII-2: least privilege)."""

import io
import stat

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command

from accounts.management.commands.demo_dpo import DEMO_DPO_EMAIL
from accounts.models import User
from accounts.roles import ROLE_DPO
from privacyops.audit import audit_chain_verify
from privacyops.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def debug_on(settings):
    settings.DEBUG = True
    return settings


def run(path, *args) -> str:
    out = io.StringIO()
    call_command("demo_dpo", f"--credentials-file={path}", *args, stdout=out)
    return out.getvalue()


def stored_password(path) -> str:
    lines = dict(line.split(": ", 1) for line in path.read_text().splitlines())
    assert lines["email"] == DEMO_DPO_EMAIL
    return lines["password"]


def test_pm_vii_2_demo_dpo_is_staff_in_the_dpo_group_and_not_superuser(debug_on, tmp_path):
    path = tmp_path / "demo-dpo.txt"
    output = run(path)

    user = User.objects.get(email=DEMO_DPO_EMAIL)
    assert user.is_staff and user.is_active
    assert not user.is_superuser
    assert list(user.groups.values_list("name", flat=True)) == [ROLE_DPO]
    password = stored_password(path)
    assert password in output and DEMO_DPO_EMAIL in output
    assert authenticate(email=DEMO_DPO_EMAIL, password=password) == user


def test_pm_vii_2_demo_dpo_password_file_is_readable_by_its_owner_only(debug_on, tmp_path):
    path = tmp_path / "var" / "demo-dpo.txt"
    run(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_pm_vii_2_demo_dpo_passwords_differ_between_machines(debug_on, tmp_path):
    first = tmp_path / "first.txt"
    run(first)
    User.objects.filter(email=DEMO_DPO_EMAIL).delete()
    second = tmp_path / "second.txt"
    run(second)
    assert stored_password(first) != stored_password(second)


def test_pm_vii_2_demo_dpo_second_run_creates_nothing_and_prints_the_same_password(debug_on, tmp_path):
    path = tmp_path / "demo-dpo.txt"
    run(path)
    password = stored_password(path)
    users, events = User.objects.count(), AuditEvent.objects.count()

    output = run(path)

    assert User.objects.count() == users
    assert AuditEvent.objects.count() == events
    assert stored_password(path) == password
    assert password in output
    assert authenticate(email=DEMO_DPO_EMAIL, password=password) is not None


def test_pm_vii_2_demo_dpo_creation_is_audited(debug_on, tmp_path):
    run(tmp_path / "demo-dpo.txt")
    user = User.objects.get(email=DEMO_DPO_EMAIL)
    event = AuditEvent.objects.get(action="account.demo_dpo_created")
    assert (event.target_type, event.target_id) == ("accounts.user", str(user.pk))
    assert DEMO_DPO_EMAIL not in str(event.details)
    assert audit_chain_verify().ok


def test_pm_vii_2_demo_dpo_refuses_with_debug_off(settings, tmp_path):
    settings.DEBUG = False
    path = tmp_path / "demo-dpo.txt"
    with pytest.raises(CommandError, match="DEBUG"):
        run(path)
    assert not User.objects.filter(email=DEMO_DPO_EMAIL).exists()
    assert not path.exists()


def test_pm_vii_2_demo_dpo_with_lost_password_file_says_how_to_reset_and_reset_works(debug_on, tmp_path):
    path = tmp_path / "demo-dpo.txt"
    run(path)
    old_password = stored_password(path)
    path.unlink()

    output = run(path)
    assert "--reset-password" in output
    assert not path.exists()

    run(path, "--reset-password")
    new_password = stored_password(path)
    assert new_password != old_password
    assert authenticate(email=DEMO_DPO_EMAIL, password=new_password) is not None
    assert authenticate(email=DEMO_DPO_EMAIL, password=old_password) is None
    assert AuditEvent.objects.filter(action="account.demo_dpo_password_reset").count() == 1


def test_pm_vii_2_demo_dpo_signs_in_to_the_admin(debug_on, tmp_path, client):
    path = tmp_path / "demo-dpo.txt"
    run(path)
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": DEMO_DPO_EMAIL, "password": stored_password(path)},
    )
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
