"""The drift check (PM-I): `manage.py check` fails while any column of ours is unclassified.

A throwaway model is defined in the `inventory` app for the length of one test (and removed after), so the
check sees it exactly as it would see a model someone added to the code without declaring it.
"""

import itertools

import pytest
from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import models

from inventory import checks as drift
from privacyops import privacy
from privacyops.privacy import Erase, Field, registry

_names = itertools.count(1)


@pytest.fixture
def scratch_model():
    """Make a model of the `inventory` app that exists only during the test."""
    made = []

    def make(**fields):
        name = f"DriftScratch{next(_names)}"
        attrs = {"__module__": "inventory.models", "Meta": type("Meta", (), {"app_label": "inventory"}), **fields}
        model = type(name, (models.Model,), attrs)
        made.append(model)
        return model

    yield make
    for model in made:
        registry.unregister(model)
        apps.all_models["inventory"].pop(model._meta.model_name, None)
    apps.clear_cache()


def _ids(messages) -> list[str]:
    return [m.id for m in messages]


def _scratch_fields():
    return {
        "owner": models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.CASCADE, related_name="+"),
        "note": models.TextField(blank=True),
        "secret_note": models.TextField(blank=True),
        "created": models.DateTimeField(null=True),
    }


def test_pm_i_the_real_project_passes_the_check():
    assert drift.check_personal_data_registry() == []
    call_command("check", tags=["privacyops"])
    call_command("check")


def test_pm_i_the_check_reads_code_and_seed_file_only_never_the_database():
    # No django_db mark: any query would raise, so this proves the check runs before `migrate`.
    assert drift.check_personal_data_registry() == []


def test_pm_i_an_undeclared_model_fails_check_naming_it_and_the_fix(scratch_model):
    model = scratch_model(**_scratch_fields())
    with pytest.raises(SystemCheckError) as failure:
        call_command("check")
    message = str(failure.value)
    assert f"inventory.{model.__name__} is not declared in the personal-data registry" in message
    assert "privacyops.E001" in message
    assert "inventory/privacy.py" in message


def test_pm_i_a_field_declared_neither_personal_nor_not_personal_fails_check_naming_model_and_field(scratch_model):
    model = scratch_model(**_scratch_fields())
    privacy.register(
        model,
        subject="owner",
        category="user-content",
        created="created",
        fields={"note": Field("user-content", Erase.REDACT, "A note"), "created": Field("user-content", Erase.GENERALISE_DAY)},
        not_personal=("id", "owner"),
    )
    with pytest.raises(SystemCheckError) as failure:
        call_command("check")
    message = str(failure.value)
    assert f"inventory.{model.__name__}.secret_note is neither declared personal nor not personal" in message
    assert "privacyops.E002" in message
    assert "add 'secret_note' to the fields" in message
    assert ".note " not in message  # only the unclassified field is named


def test_pm_i_an_undeclared_many_to_many_field_is_caught(scratch_model):
    model = scratch_model(readers=models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="+"))
    privacy.register(model, category="user-content", fields={}, not_personal=("id",))
    errors = drift.check_personal_data_registry()
    assert _ids(errors) == ["privacyops.E002"]
    assert f"{model.__name__}.readers" in errors[0].msg


def test_pm_i_a_category_code_the_seed_file_lacks_fails_check(scratch_model):
    model = scratch_model(**_scratch_fields())
    privacy.register(
        model,
        subject="owner",
        category="chat-logs",
        fields={"note": Field("user-content"), "secret_note": Field("secret-stuff")},
        not_personal=("id", "owner", "created"),
    )
    errors = drift.check_personal_data_registry()
    assert _ids(errors) == ["privacyops.E005", "privacyops.E005"]
    text = " ".join(e.msg for e in errors)
    assert "'chat-logs'" in text and "'secret-stuff'" in text
    assert "user-content" in errors[0].hint  # the fix lists the codes that exist


def test_pm_i_a_declaration_naming_a_missing_field_fails_check(scratch_model):
    model = scratch_model(**_scratch_fields())
    privacy.register(
        model,
        subject="owner",
        identifier="email",
        category="user-content",
        created="created_at",
        fields={"note": Field("user-content"), "secret_note": Field("user-content"), "body": Field("user-content")},
        not_personal=("id", "owner", "created", "colour"),
    )
    errors = drift.check_personal_data_registry()
    assert set(_ids(errors)) == {"privacyops.E003"}
    text = " ".join(e.msg for e in errors)
    for missing in ("'body'", "'colour'", "'email'", "'created_at'"):
        assert missing in text


def test_pm_i_a_broken_subject_path_fails_check(scratch_model):
    model = scratch_model(**_scratch_fields())
    fields = {"note": Field("user-content"), "secret_note": Field("user-content")}
    privacy.register(
        model, subject="owner__conversation", category="user-content", fields=fields, not_personal=("id", "owner", "created")
    )
    errors = drift.check_personal_data_registry()
    assert _ids(errors) == ["privacyops.E004"]
    assert "breaks at 'conversation'" in errors[0].msg


def test_pm_i_a_subject_path_that_ends_away_from_the_account_fails_check(scratch_model):
    from inventory.models import DataCategory

    model = scratch_model(category=models.ForeignKey(DataCategory, on_delete=models.CASCADE, related_name="+"))
    privacy.register(model, subject="category", category="user-content", fields={}, not_personal=("id", "category"))
    errors = drift.check_personal_data_registry()
    assert _ids(errors) == ["privacyops.E004"]
    assert "ends at inventory.DataCategory" in errors[0].msg


def test_pm_i_a_strategy_that_does_not_fit_its_column_fails_check(scratch_model):
    model = scratch_model(**_scratch_fields())
    privacy.register(
        model,
        subject="owner",
        category="user-content",
        fields={"note": Field("log-data", Erase.GENERALISE_IP), "secret_note": Field("user-content")},
        not_personal=("id", "owner", "created"),
    )
    errors = drift.check_personal_data_registry()
    assert _ids(errors) == ["privacyops.E009"]
    assert "GENERALISE_IP needs an IP address field" in errors[0].msg


def test_pm_i_an_unreadable_seed_file_fails_check(monkeypatch, tmp_path):
    from inventory import policy

    bad = tmp_path / "policy.yaml"
    bad.write_text("data_categories: [this is not a mapping]\n")
    monkeypatch.setattr(policy, "DEFAULT_POLICY_PATH", bad)
    errors = drift.check_personal_data_registry()
    assert "privacyops.E006" in _ids(errors)


def test_pm_i_our_apps_are_the_project_apps_not_the_virtualenvs():
    labels = {c.label for c in drift.our_app_configs()}
    assert {"privacyops", "accounts", "inventory", "chat", "consents", "requests", "retention"} <= labels
    assert not labels & {"admin", "auth", "sessions", "django_celery_beat", "import_export", "pgtrigger"}
