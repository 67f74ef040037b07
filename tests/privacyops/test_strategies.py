"""Erasure strategies: anonymised rows keep nothing derived from the subject; pseudonyms are keyed and stable.

Both legs run the same tests: anonymise_updates is applied with a real `QuerySet.update()` on SQLite and on
PostgreSQL (the IP network is computed by the database in each).
"""

import datetime
import ipaddress

import pytest
from django.db import NotSupportedError, connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from chat import models as chat
from privacyops.privacy import (
    REDACTED,
    Erase,
    RegistryError,
    anonymise_updates,
    erase_updates,
    generalise_ip,
    pseudonym,
    registry,
)
from privacyops.privacy.strategies import GeneraliseIP
from tests.factories.accounts import UserFactory
from tests.factories.chat import AccessLogFactory, FeedbackFactory, SupportMessageFactory, UsageEventFactory

pytestmark = pytest.mark.django_db

WHEN = datetime.datetime(2024, 5, 17, 13, 45, 12, 345678, tzinfo=datetime.UTC)


def _identifiers(user) -> set[str]:
    """Every identifier of the subject, as text: what an anonymised row must not contain."""
    values = {user.email, user.name, str(user.subject_ref), user.subject_ref.hex, str(user.pk)}
    return {v.lower() for v in values if v}


def _row_values(instance) -> dict[str, object]:
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def _assert_holds_nothing_of(instance, originals: set[str], user):
    """No column of the row equals, or contains, any original personal value or the subject's identifiers."""
    forbidden = {v.lower() for v in originals if v and len(v) > 2} | _identifiers(user)
    for column, value in _row_values(instance).items():
        if column in {"id"}:
            continue
        if value is None:
            continue
        text = str(value).lower()
        for secret in forbidden:
            assert secret != text, f"{column} still holds {value!r}"
            if len(secret) >= 6:
                assert secret not in text, f"{column} still contains {secret!r}"
    subject_fk = registry.get(type(instance)).subject_fk
    assert getattr(instance, f"{subject_fk}_id") is None


def _personal_originals(instance) -> set[str]:
    declaration = registry.get(type(instance))
    values = set()
    for name, spec in declaration.fields.items():
        if spec.erase in (Erase.GENERALISE_DAY, Erase.GENERALISE_COUNTRY):
            continue  # a day or a country is what generalising keeps by design
        field = instance._meta.get_field(name)
        value = getattr(instance, field.attname)
        if value not in (None, "", [], {}):
            values.add(str(value))
    return values


def _anonymise(instance):
    model = type(instance)
    updated = model.objects.filter(pk=instance.pk).update(**anonymise_updates(registry.get(model)))
    assert updated == 1
    return model.objects.get(pk=instance.pk)


def test_pm_i_5_anonymised_access_log_keeps_nothing_derived_from_the_subject():
    user = UserFactory(name="Quinn Zamora", email="quinn.zamora@example.org")
    row = AccessLogFactory(
        user=user,
        ip_address="203.0.113.77",
        device_id="device-9f3c2a1b",
        path=f"/account/{user.pk}/profile?email={user.email}",
        created=WHEN,
    )
    originals = _personal_originals(row)
    after = _anonymise(row)
    _assert_holds_nothing_of(after, originals, user)
    assert after.ip_address == "203.0.113.0"
    assert after.device_id == after.device_brand == after.device_model == after.browser == after.user_agent == after.path == ""
    assert after.created == datetime.datetime(2024, 5, 17, tzinfo=datetime.UTC)
    assert after.anonymised_at is not None


def test_pm_i_5_ipv6_is_generalised_to_its_48_network_in_the_database():
    row = AccessLogFactory(ip_address="2001:db8:abcd:12:3456:789a:bcde:f012")
    after = _anonymise(row)
    assert ipaddress.ip_address(after.ip_address) == ipaddress.ip_address("2001:db8:abcd::")


def test_pm_i_6_anonymised_usage_event_keeps_country_and_statistics_only():
    user = UserFactory(name="Rowan Achterberg", email="rowan@example.org", country="US", region="US-CA")
    row = UsageEventFactory(user=user, country="US", time_zone="America/Los_Angeles", created=WHEN)
    originals = _personal_originals(row)
    after = _anonymise(row)
    _assert_holds_nothing_of(after, originals, user)
    assert after.country == "US"
    assert (after.event_type, after.feature) == (row.event_type, row.feature)
    assert after.time_zone == after.user_agent == ""


def test_pm_i_3_anonymised_feedback_keeps_the_rating_and_drops_comment_snapshot_and_message():
    feedback = FeedbackFactory(comment="Please call me, Quinn, on +65 9123 4567")
    user = feedback.user
    assert feedback.conversation_snapshot
    originals = _personal_originals(feedback) | {m["content"] for m in feedback.conversation_snapshot}
    after = _anonymise(feedback)
    _assert_holds_nothing_of(after, originals, user)
    assert after.comment == REDACTED
    assert after.conversation_snapshot == []
    assert after.message_id is None
    assert after.rating == feedback.rating


def test_pm_i_4_anonymised_support_message_loses_name_email_and_body():
    user = UserFactory(name="Ines Okafor", email="ines.okafor@example.org")
    message = SupportMessageFactory(user=user, body="My neighbour Tom Baker (tom@example.net) gave me his consent.")
    originals = _personal_originals(message)
    after = _anonymise(message)
    _assert_holds_nothing_of(after, originals, user)
    assert after.body == REDACTED
    assert after.name == after.email == ""


def test_pm_i_2_redact_leaves_an_empty_text_empty():
    feedback = FeedbackFactory(comment="")
    after = _anonymise(feedback)
    assert after.comment == ""


def test_pm_i_anonymise_is_one_update_statement_per_batch():
    rows = AccessLogFactory.create_batch(5)
    updates = anonymise_updates(registry.get(chat.AccessLog))
    with CaptureQueriesContext(connection) as queries:
        chat.AccessLog.objects.filter(pk__in=[r.pk for r in rows]).update(**updates)
    assert len(queries) == 1
    assert queries[0]["sql"].lstrip().upper().startswith("UPDATE")
    assert set(chat.AccessLog.objects.values_list("user", flat=True)) == {None}


def test_pm_i_anonymising_twice_gives_the_same_row():
    row = AccessLogFactory(ip_address="198.51.100.200", created=WHEN)
    once = _row_values(_anonymise(row))
    twice = _row_values(_anonymise(row))
    once.pop("anonymised_at"), twice.pop("anonymised_at")
    assert once == twice


@pytest.mark.parametrize("label", ["chat.Message", "chat.Attachment", "chat.Conversation", "privacyops.AuditEvent"])
def test_pm_i_models_that_cannot_lose_their_subject_link_are_refused(label):
    from django.apps import apps

    declaration = registry.get(apps.get_model(label))
    assert not declaration.anonymisable
    with pytest.raises(RegistryError):
        anonymise_updates(declaration)


def test_pm_i_anonymise_never_writes_a_pseudonym(settings):
    """Even a field declared PSEUDONYMISE is cleared by anonymise: a pseudonym is derived from the subject."""
    from privacyops.privacy.registry import Declaration, Field

    base = registry.get(chat.AccessLog)
    fields = dict(base.fields, device_id=Field("log-data", Erase.PSEUDONYMISE, "Device"))
    declaration = Declaration(**{**base.__dict__, "fields": fields})
    row = AccessLogFactory(device_id="device-1")
    chat.AccessLog.objects.filter(pk=row.pk).update(**anonymise_updates(declaration))
    row.refresh_from_db()
    assert row.device_id == ""


def test_pm_ii_5_erase_pseudonymises_with_the_subjects_constant_pseudonym():
    from privacyops.privacy.registry import Declaration, Field

    base = registry.get(chat.AccessLog)
    fields = dict(base.fields, device_id=Field("log-data", Erase.PSEUDONYMISE, "Device"))
    declaration = Declaration(**{**base.__dict__, "fields": fields})
    user = UserFactory()
    a, b = AccessLogFactory(user=user, device_id="one"), AccessLogFactory(user=user, device_id="two")
    chat.AccessLog.objects.filter(user=user).update(**erase_updates(declaration, subject=user))
    a.refresh_from_db(), b.refresh_from_db()
    assert a.device_id == b.device_id == pseudonym(user.subject_ref, scope="chat.AccessLog.device_id")
    assert a.user_id is None
    assert a.anonymised_at is None  # pseudonymised is not anonymised


def test_pm_i_erase_leaves_delete_and_retain_fields_to_the_caller():
    user = UserFactory()
    assert "content" not in erase_updates(registry.get(chat.Message), subject=user)
    assert registry.get(chat.Message).erasure_deletes_row
    from privacyops.models import AuditEvent

    assert erase_updates(registry.get(AuditEvent), subject=user) == {}


def test_pm_ii_5_pseudonyms_are_stable_per_subject_and_differ_across_subjects_and_scopes():
    a, b = UserFactory(), UserFactory()
    assert pseudonym(a.subject_ref) == pseudonym(a.subject_ref)
    assert pseudonym(a.subject_ref, scope="dataset-1") == pseudonym(str(a.subject_ref), scope="dataset-1")
    assert pseudonym(a.subject_ref) != pseudonym(b.subject_ref)
    assert pseudonym(a.subject_ref, scope="dataset-1") != pseudonym(a.subject_ref, scope="dataset-2")
    assert str(a.subject_ref) not in pseudonym(a.subject_ref)


def test_pm_ii_5_pseudonyms_depend_on_the_key(settings):
    ref = UserFactory().subject_ref
    first = pseudonym(ref)
    settings.PSEUDONYM_KEY = "another-key"
    assert pseudonym(ref) != first
    settings.PSEUDONYM_KEY = ""
    with pytest.raises(RegistryError):
        pseudonym(ref)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("192.0.2.123", "192.0.2.0"),
        ("10.0.0.1", "10.0.0.0"),
        ("2001:db8:1234:5678::1", "2001:db8:1234::"),
        ("::ffff:192.0.2.9", "192.0.2.0"),
        ("not an address", None),
        (None, None),
    ],
)
def test_pm_i_5_generalise_ip(value, expected):
    assert generalise_ip(value) == expected


def test_pm_i_5_generalising_ip_on_a_database_without_its_sql_fails_loudly():
    # PostgreSQL and SQLite have their own SQL (as_postgresql / as_sqlite); Django falls back to as_sql on
    # any other backend, which must refuse rather than leave a full address in an "anonymised" row.
    compiler = chat.AccessLog.objects.all().query.get_compiler(connection=connection)
    with pytest.raises(NotSupportedError, match=f"not available on {connection.vendor}"):
        GeneraliseIP(F("ip_address")).as_sql(compiler, connection)
