"""The consents workbench by role: configuration, the read-only ledger, recording on a subject's behalf, the
consent proof (the regulator's path), restrictions and API keys (POLICY-MAP 0-2, III, IX-5)."""

import hashlib
import json
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from consents.ledger import consent_record, visitor_link
from consents.models import ApiKey, ConsentEvent, ConsentNotice, ConsentPurpose, ProcessingRestriction
from privacyops.models import AuditEvent
from retention.models import LegalHold
from tests.factories.accounts import UserFactory
from tests.factories.consents import ConsentNoticeFactory, ConsentPurposeFactory, CookieFactory
from tests.factories.inventory import PurposeFactory, staff_in_role

pytestmark = pytest.mark.django_db

DPO, ANALYST, AUDITOR, SUPPORT = "DPO", "Privacy analyst", "Auditor", "Support agent"


def url(name, *args):
    return reverse(f"admin:consents_{name}", args=args)


def login(client, role):
    user = staff_in_role(role)
    client.force_login(user)
    return user


@pytest.fixture
def purpose():
    return ConsentPurposeFactory(code="marketing-communications", name="Marketing e-mails", lifetime="P13M")


@pytest.fixture
def notice(purpose):
    return ConsentNoticeFactory(purpose=purpose, version="1", text="May we e-mail you about new features? You can stop any time.")


@pytest.fixture
def subject():
    return UserFactory(email="ada@example.org")


def given(subject, purpose, *, method="portal", action="given"):
    return consent_record(subject=subject, purpose=purpose, action=action, method=method)


@pytest.fixture
def ledger(subject, purpose, notice):
    """A subject with a few events, and a visitor linked to them with one of its own."""
    events = [given(subject, purpose), given(subject, purpose, action="withdrawn")]
    visitor = uuid.uuid4()
    events.append(consent_record(visitor_id=visitor, purpose=purpose, action="given", method="banner"))
    visitor_link(visitor_id=visitor, subject=subject, method="signin")
    return events


def restriction(subject, **kwargs):
    values = {"kind": "restriction", "reason": "The subject contests the accuracy of their data.", **kwargs}
    return ProcessingRestriction.objects.create(subject=subject, **values)


# --- Who may open what ------------------------------------------------------------------------------


def read_pages(purpose, notice, event, subject):
    cookie = CookieFactory(category=ConsentPurposeFactory(cookie_category="analytics"))
    held = restriction(subject)
    key = ApiKey.objects.create(name="chat", prefix="po_abc", token_sha256="0" * 64)
    chain = event.chain
    return [
        url("consentpurpose_changelist"),
        url("consentpurpose_change", purpose.pk),
        url("consentnotice_changelist"),
        url("consentnotice_change", notice.pk),
        url("cookieinventory_changelist"),
        url("cookieinventory_change", cookie.pk),
        url("consentevent_changelist"),
        url("consentevent_change", event.pk),
        url("consentstate_changelist"),
        url("consentchain_changelist"),
        url("consentchain_change", chain.pk),
        url("visitorlink_changelist"),
        url("processingrestriction_changelist"),
        url("processingrestriction_change", held.pk),
        url("apikey_changelist"),
        url("apikey_change", key.pk),
        url("consentevent_proof_search"),
        url("consentevent_proof", subject.subject_ref),
    ]


@pytest.mark.parametrize("role", [DPO, AUDITOR])
def test_the_dpo_and_the_auditor_open_every_screen(client, role, purpose, notice, subject, ledger):
    login(client, role)
    for page in read_pages(purpose, notice, ledger[0], subject):
        assert client.get(page).status_code == 200, page


def test_a_support_agent_is_refused_everywhere(client, purpose, notice, subject, ledger):
    pages = read_pages(purpose, notice, ledger[0], subject)
    held = ProcessingRestriction.objects.get()
    key = ApiKey.objects.get()
    login(client, SUPPORT)
    writes = [
        url("consentevent_record"),
        url("consentevent_proof_export", subject.subject_ref),
        url("consentevent_receipt", ledger[0].receipt_id),
        url("processingrestriction_add"),
        url("processingrestriction_lift", held.pk),
        url("apikey_add"),
        url("apikey_revoke", key.pk),
        url("consentnotice_add"),
        url("consentpurpose_add"),
    ]
    for page in [*pages, *writes]:
        assert client.get(page).status_code == 403, page
    for page in writes:
        assert client.post(page, {"reason": "x", "instruction": "x"}).status_code == 403, page
    assert not AuditEvent.objects.filter(action__startswith="consent.proof_").exists()


def test_the_auditor_reads_but_writes_nothing(client, purpose, notice, subject, ledger):
    held = restriction(subject)
    key = ApiKey.objects.create(name="chat", prefix="po_abc", token_sha256="0" * 64)
    login(client, AUDITOR)
    events = ConsentEvent.objects.count()

    for page in (
        url("consentevent_record"),
        url("processingrestriction_add"),
        url("processingrestriction_lift", held.pk),
        url("apikey_add"),
        url("apikey_revoke", key.pk),
        url("consentnotice_add"),
        url("consentpurpose_add"),
        url("cookieinventory_add"),
    ):
        assert client.get(page).status_code == 403, page
        assert client.post(page, {"reason": "x"}).status_code == 403, page
    assert client.post(url("consentpurpose_change", purpose.pk), {"name": "Changed"}).status_code == 403
    assert client.post(url("consentnotice_change", notice.pk), {"text": "Changed"}).status_code == 403

    assert ConsentEvent.objects.count() == events
    assert ConsentPurpose.objects.get().name == "Marketing e-mails"
    held.refresh_from_db()
    key.refresh_from_db()
    assert held.lifted_at is None and key.revoked_at is None
    changelist = client.get(url("consentevent_changelist")).content.decode()
    assert url("consentevent_record") not in changelist
    assert url("consentevent_proof_search") in changelist


def test_the_analyst_records_and_restricts_but_never_creates_or_revokes_api_keys(client, subject, purpose):
    key = ApiKey.objects.create(name="chat", prefix="po_abc", token_sha256="0" * 64)
    login(client, ANALYST)
    assert client.get(url("consentevent_record")).status_code == 200
    assert client.get(url("processingrestriction_add")).status_code == 200
    assert client.get(url("apikey_add")).status_code == 403
    assert client.post(url("apikey_add"), {"name": "x", "scope": "write"}).status_code == 403
    assert client.post(url("apikey_revoke", key.pk)).status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None and ApiKey.objects.count() == 1
    assert url("apikey_revoke", key.pk) not in client.get(url("apikey_change", key.pk)).content.decode()


# --- Purposes, notices, cookies -----------------------------------------------------------------------


def test_pm_iii_the_purpose_list_shows_the_register_purpose_and_flags_necessary_ones(client, purpose):
    necessary = ConsentPurposeFactory(code="cookies-necessary", is_necessary=True, cookie_category="necessary")
    login(client, DPO)
    page = client.get(url("consentpurpose_changelist")).content.decode()
    assert necessary.purpose.code in page and purpose.purpose.code in page
    assert reverse("admin:inventory_purpose_change", args=[necessary.purpose_id]) in page
    assert page.count("necessary: cannot be refused") == 1


def test_a_purpose_is_saved_through_the_audited_service_and_its_code_is_fixed(client, purpose):
    dpo = login(client, DPO)
    form = {
        "code": "renamed",
        "name": "Product news",
        "description": purpose.description,
        "purpose": purpose.purpose_id,
        "position": 3,
        "is_active": "on",
        "cookie_category": "",
        "lifetime": "P13M",
        "consequences": "",
        "dpv": "",
        "policy_ref": "PM-II-2",
    }
    response = client.post(url("consentpurpose_change", purpose.pk), form)
    assert response.status_code == 302, response.content.decode()
    purpose.refresh_from_db()
    assert (purpose.code, purpose.name) == ("marketing-communications", "Product news")
    event = AuditEvent.objects.get(action="register.consentpurpose.updated")
    assert event.actor_id == dpo.pk and "name" in event.details["fields"]
    assert client.post(url("consentpurpose_delete", purpose.pk)).status_code == 403


def test_pm_0_2_a_notice_is_added_with_its_hash_and_never_edited(client, purpose):
    dpo = login(client, DPO)
    text = "We would like to send you occasional e-mails about new features."
    response = client.post(url("consentnotice_add"), {"purpose": purpose.pk, "version": "2", "language": "en", "text": text})
    assert response.status_code == 302
    notice = ConsentNotice.objects.get(version="2")
    assert notice.sha256 == hashlib.sha256(text.encode()).hexdigest() and notice.created_by == dpo
    assert AuditEvent.objects.filter(action="register.consentnotice.created", target_id=str(notice.pk)).exists()

    page = client.get(url("consentnotice_change", notice.pk)).content.decode()
    assert notice.sha256 in page and text in page
    assert 'name="text"' not in page and 'name="_save"' not in page
    assert client.post(url("consentnotice_change", notice.pk), {"text": "Other words"}).status_code == 403
    notice.refresh_from_db()
    assert notice.text == text


def test_pm_0_2_a_notice_used_by_an_event_cannot_be_deleted_an_unused_one_can(client, subject, purpose, notice):
    given(subject, purpose)
    unused = ConsentNoticeFactory(purpose=purpose, version="9")
    login(client, DPO)

    page = client.get(url("consentnotice_change", notice.pk)).content.decode()
    assert "Events that used it" in page
    assert client.post(url("consentnotice_delete", notice.pk), {"post": "yes"}).status_code == 403
    assert client.post(url("consentnotice_delete", unused.pk), {"post": "yes"}).status_code == 302
    assert list(ConsentNotice.objects.all()) == [notice]
    assert AuditEvent.objects.filter(action="register.consentnotice.deleted").count() == 1


def test_pm_iii_the_cookie_inventory_filters_by_category_and_party(client):
    analytics = ConsentPurposeFactory(code="cookies-analytics", cookie_category="analytics")
    CookieFactory(name="_pk_id", category=analytics, party="third", provider="Matomo")
    CookieFactory(name="prefs", category=ConsentPurposeFactory(code="cookies-functionality", cookie_category="functionality"))
    login(client, DPO)
    page = client.get(url("cookieinventory_changelist"), {"party__exact": "third"}).content.decode()
    assert "_pk_id" in page and "prefs" not in page
    page = client.get(url("cookieinventory_changelist"), {"category__id__exact": analytics.pk}).content.decode()
    assert "_pk_id" in page and "prefs" not in page


# --- The ledger -----------------------------------------------------------------------------------------


def test_pm_0_2_the_ledger_is_read_only_for_everyone(client, ledger):
    login(client, DPO)
    event = ledger[0]
    assert client.get(url("consentevent_add")).status_code == 403
    page = client.get(url("consentevent_change", event.pk)).content.decode()
    assert 'name="_save"' not in page and event.hash in page and str(event.receipt_id) in page
    assert client.post(url("consentevent_change", event.pk), {"action": "refused"}).status_code == 403
    assert client.post(url("consentevent_delete", event.pk)).status_code == 403


def test_the_ledger_is_searched_by_exact_identifiers_only(client, subject, ledger):
    other = UserFactory()
    given(other, ledger[0].purpose)
    login(client, DPO)

    def shown(term):
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(url("consentevent_changelist"), {"q": term})
        assert not any(" LIKE " in q["sql"].upper() for q in ctx.captured_queries)
        return {e.pk for e in response.context["cl"].result_list}

    own = {e.pk for e in ledger}  # the linked visitor's event counts as the subject's
    assert shown(str(subject.subject_ref)) == own
    assert shown("ADA@example.org") == own
    assert shown(str(ledger[2].visitor_id)) == {ledger[2].pk}
    assert shown(str(ledger[1].receipt_id)) == {ledger[1].pk}
    assert shown("ada@") == set()
    assert shown("marketing") == set()


def test_the_ledger_filters_by_purpose_action_method_and_jurisdiction(client, ledger):
    login(client, DPO)
    page = client.get(url("consentevent_changelist"), {"action__exact": "withdrawn"})
    assert [e.pk for e in page.context["cl"].result_list] == [ledger[1].pk]
    page = client.get(url("consentevent_changelist"), {"method__exact": "banner"})
    assert [e.pk for e in page.context["cl"].result_list] == [ledger[2].pk]
    page = client.get(url("consentevent_changelist"), {"jurisdiction": ledger[0].jurisdiction})
    assert len(page.context["cl"].result_list) == len([e for e in ledger if e.jurisdiction == ledger[0].jurisdiction])


def test_the_ledger_list_takes_a_bounded_number_of_queries(client, subject, purpose, notice, django_assert_max_num_queries):
    login(client, DPO)
    given(subject, purpose)

    def count():
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url("consentevent_changelist")).status_code == 200
        return len(ctx.captured_queries)

    few = count()
    for n in range(30):
        other = UserFactory()
        given(other, purpose, action="given" if n % 2 else "refused")
        consent_record(visitor_id=uuid.uuid4(), purpose=purpose, action="given", method="banner")
    assert count() == few
    with django_assert_max_num_queries(12):
        client.get(url("consentevent_changelist"), {"action__exact": "given", "q": str(subject.subject_ref)})


def test_part_c_an_event_shows_its_kantara_receipt_and_offers_it_for_download(client, ledger):
    from consents.receipts import receipt_for

    login(client, AUDITOR)
    event = ledger[0]
    page = client.get(url("consentevent_change", event.pk)).content.decode()
    assert "KI-CR-v1.1.0" in page and url("consentevent_receipt", event.receipt_id) in page
    response = client.get(url("consentevent_receipt", event.receipt_id))
    assert response["Content-Disposition"] == f'attachment; filename="consent-receipt-{event.receipt_id}.json"'
    assert json.loads(response.content) == json.loads(json.dumps(receipt_for(event), default=str))


# --- Recording on the subject's behalf ---------------------------------------------------------------------


def test_recording_on_behalf_needs_the_subjects_instruction(client, subject, purpose):
    login(client, ANALYST)
    response = client.post(
        url("consentevent_record"), {"subject": subject.email, "purpose": purpose.pk, "action": "withdrawn", "instruction": " "}
    )
    assert response.status_code == 200
    assert response.context["form"].errors["instruction"]
    assert not ConsentEvent.objects.exists()


def test_recording_on_behalf_writes_exactly_one_staff_event_with_the_instruction(client, subject, purpose):
    analyst = login(client, ANALYST)
    response = client.post(
        url("consentevent_record"),
        {"subject": str(subject.subject_ref), "purpose": purpose.pk, "action": "withdrawn", "instruction": "Letter L-2025-118"},
    )
    event = ConsentEvent.objects.get()
    assert response.status_code == 302 and response["Location"] == url("consentevent_change", event.pk)
    assert (event.subject_ref, event.action, event.method) == (subject.subject_ref, "withdrawn", "staff")
    assert (event.instruction, event.actor_label) == ("Letter L-2025-118", analyst.email)
    assert (
        AuditEvent.objects.filter(action="consent.withdrawn", actor_id=analyst.pk, subject_ref=subject.subject_ref).count() == 1
    )


def test_a_refusal_from_the_ledger_is_shown_on_the_form_and_nothing_is_written(client, subject):
    necessary = ConsentPurposeFactory(code="cookies-necessary", is_necessary=True, cookie_category="necessary")
    login(client, DPO)
    response = client.post(
        url("consentevent_record"), {"subject": subject.email, "purpose": necessary.pk, "action": "refused", "instruction": "T-1"}
    )
    assert response.status_code == 200
    assert "cannot be refused" in str(response.context["form"].errors["purpose"])
    assert not ConsentEvent.objects.exists()


def test_recording_for_an_unknown_subject_is_refused_on_the_form(client, purpose):
    login(client, DPO)
    response = client.post(
        url("consentevent_record"),
        {"subject": "nobody@example.org", "purpose": purpose.pk, "action": "given", "instruction": "T"},
    )
    assert "No account" in str(response.context["form"].errors["subject"])
    assert not ConsentEvent.objects.exists()


# --- The consent proof ---------------------------------------------------------------------------------------


def test_pm_0_2_the_proof_search_finds_a_subject_by_exact_email_or_subject_ref(client, subject, ledger):
    login(client, ANALYST)
    proof = url("consentevent_proof", subject.subject_ref)
    assert client.get(url("consentevent_proof_search"), {"subject": subject.email})["Location"] == proof
    assert client.get(url("consentevent_proof_search"), {"subject": str(subject.subject_ref)})["Location"] == proof
    page = client.get(url("consentevent_proof_search"), {"subject": "ada"})
    assert page.status_code == 200 and "Nothing is known" in page.content.decode()
    assert client.get(url("consentevent_proof", uuid.uuid4())).status_code == 404


def test_pm_0_2_the_proof_shows_the_ledger_with_notice_texts_and_hashes_and_is_audited(client, subject, notice, ledger):
    auditor = login(client, AUDITOR)
    restriction(subject, reference="R-7")

    page = client.get(url("consentevent_proof", subject.subject_ref)).content.decode()

    assert notice.text in page and notice.sha256 in page
    for event in ledger:  # the linked visitor's event too
        assert event.hash in page and str(event.receipt_id) in page
    assert "withdrawn" in page and "intact" in page and "contests the accuracy" in page
    viewed = AuditEvent.objects.get(action="personal_data.viewed", details__what="consent_proof")
    assert (viewed.actor_id, viewed.subject_ref) == (auditor.pk, subject.subject_ref)


def test_pm_0_2_the_proof_exports_as_json_for_a_regulator_and_the_export_is_audited(client, subject, ledger):
    from consents.proof import consent_proof

    auditor = login(client, AUDITOR)
    response = client.get(url("consentevent_proof_export", subject.subject_ref))

    assert response.status_code == 200 and response["Content-Type"].startswith("application/json")
    assert f'filename="consent-proof-{subject.subject_ref}.json"' in response["Content-Disposition"]
    exported = json.loads(response.content)
    expected = json.loads(json.dumps(consent_proof(subject_ref=subject.subject_ref), default=str))
    assert exported.pop("generated_at") and expected.pop("generated_at")
    assert exported == expected and exported["verification"]["ok"]
    audited = AuditEvent.objects.get(action="consent.proof_exported")
    assert (audited.actor_id, audited.subject_ref) == (auditor.pk, subject.subject_ref)
    assert audited.details["sha256"] == hashlib.sha256(response.content).hexdigest()


def test_the_proof_of_an_erased_account_still_opens_by_subject_ref(client, subject, ledger):
    ref = subject.subject_ref
    ProcessingRestriction.objects.all().delete()
    subject.delete()
    login(client, DPO)
    page = client.get(url("consentevent_proof", ref))
    assert page.status_code == 200 and "erased" in page.content.decode()


# --- Restrictions and objections ----------------------------------------------------------------------------


def test_pm_ix_5_a_restriction_is_placed_through_the_service(client, subject):
    register_purpose = PurposeFactory(code="marketing")
    analyst = login(client, ANALYST)
    response = client.post(
        url("processingrestriction_add"),
        {
            "subject_identifier": subject.email,
            "kind": "objection",
            "purpose": register_purpose.pk,
            "starts_at_0": "2025-01-01",
            "starts_at_1": "10:00:00",
            "reason": "Objects to direct marketing by letter.",
            "reference": "REQ-12",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    placed = ProcessingRestriction.objects.get()
    assert (placed.subject, placed.kind, placed.purpose, placed.created_by) == (subject, "objection", register_purpose, analyst)
    assert AuditEvent.objects.filter(subject_ref=subject.subject_ref, target_id=str(placed.pk)).exists()
    page = client.get(url("processingrestriction_changelist")).content.decode()
    assert "active" in page and register_purpose.name in page


def test_pm_ix_5_a_restriction_for_legal_claims_links_its_legal_hold(client, subject):
    login(client, DPO)
    client.post(
        url("processingrestriction_add"),
        {
            "subject_identifier": str(subject.subject_ref),
            "kind": "restriction",
            "starts_at_0": "2025-01-01",
            "starts_at_1": "10:00:00",
            "reason": "Needed to defend a claim.",
            "for_legal_claims": "on",
            "reference": "CLAIM-3",
        },
    )
    placed = ProcessingRestriction.objects.get()
    hold = LegalHold.objects.get()
    assert placed.legal_hold == hold
    page = client.get(url("processingrestriction_changelist")).content.decode()
    assert "all processing" in page and reverse("admin:retention_legalhold_change", args=[hold.pk]) in page


def test_pm_ix_5_a_restriction_is_lifted_with_a_reason_through_the_service(client, subject):
    from consents.services import restriction_place

    dpo = staff_in_role(DPO)
    placed = restriction_place(actor=dpo, subject=subject, kind="restriction", reason="Accuracy contested.")
    analyst = login(client, ANALYST)

    assert (
        url("processingrestriction_lift", placed.pk)
        in client.get(url("processingrestriction_change", placed.pk)).content.decode()
    )
    assert "Accuracy contested." in client.get(url("processingrestriction_lift", placed.pk)).content.decode()
    response = client.post(url("processingrestriction_lift", placed.pk), {"reason": "Data corrected."})

    assert response.status_code == 302
    placed.refresh_from_db()
    assert placed.lifted_at and placed.lifted_by == analyst and placed.lift_reason == "Data corrected."
    assert client.get(url("processingrestriction_changelist"), {"state": "lifted"}).context["cl"].result_count == 1


def test_a_placed_restriction_cannot_be_edited_or_deleted(client, subject):
    placed = restriction(subject)
    login(client, DPO)
    page = client.get(url("processingrestriction_change", placed.pk)).content.decode()
    assert 'name="_save"' not in page
    assert client.post(url("processingrestriction_change", placed.pk), {"reason": "x"}).status_code == 403
    assert client.post(url("processingrestriction_delete", placed.pk), {"post": "yes"}).status_code == 403


# --- API keys -------------------------------------------------------------------------------------------------


def test_pm_apikey_token_is_shown_once_and_only_its_hash_is_stored(client):
    login(client, DPO)
    response = client.post(url("apikey_add"), {"name": "chat-backend", "scope": "write", "rate_limit_per_minute": "600"})

    assert response.status_code == 200
    token = response.context["token"]
    key = ApiKey.objects.get()
    assert token in response.content.decode() and "no-store" in response["Cache-Control"]
    assert key.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert token.startswith(key.prefix) and (key.scope, key.rate_limit_per_minute) == ("write", 600)
    stored = [str(v) for v in ApiKey.objects.values().get().values()]
    assert not any(token in value for value in stored)
    assert not any(token in json.dumps(e.details) for e in AuditEvent.objects.all())
    for page in (url("apikey_change", key.pk), url("apikey_changelist")):
        html = client.get(page).content.decode()
        assert key.prefix in html and token not in html


def test_an_api_key_is_revoked_through_the_service(client):
    from consents.api.keys import apikey_create

    dpo = login(client, DPO)
    key, _token = apikey_create(actor=dpo, name="chat-backend", scope="read")
    assert url("apikey_revoke", key.pk) in client.get(url("apikey_change", key.pk)).content.decode()
    assert client.post(url("apikey_revoke", key.pk)).status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert "revoked" in client.get(url("apikey_changelist"), {"state": "revoked"}).content.decode()


def test_api_keys_are_revoked_in_bulk_by_the_action(client):
    from consents.api.keys import apikey_create

    dpo = login(client, DPO)
    keys = [apikey_create(actor=dpo, name=f"service-{n}", scope="read")[0] for n in range(2)]
    response = client.post(url("apikey_changelist"), {"action": "revoke_selected", "_selected_action": [k.pk for k in keys]})
    assert response.status_code == 302
    assert not ApiKey.objects.filter(revoked_at__isnull=True).exists()


@pytest.mark.parametrize(("role", "offered"), [(DPO, True), (ANALYST, False), (AUDITOR, False)])
def test_the_ledger_offers_the_import_of_historical_consents_to_the_dpo_only(client, role, offered):
    login(client, role)
    page = client.get(url("consentevent_changelist")).content.decode()
    assert (url("consentevent_import") in page) is offered
    assert url("consentevent_proof_search") in page
    assert (url("consentevent_record") in page) is (role != AUDITOR)


def test_the_workbench_passes_the_admin_system_checks():
    from django.core import checks

    assert [e for e in checks.run_checks(tags=[checks.Tags.admin]) if e.is_serious()] == []
