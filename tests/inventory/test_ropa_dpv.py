"""The record of processing speaks DPV as DPV defines it (issue 11 §4), and names the controller's own
contact details, GDPR Art. 30(1)(a).

Every IRI the JSON-LD uses in a DPV namespace (dpv:, pd:, loc:, eu-gdpr:) must be in the vendored term list
(inventory/jsonld/dpv-terms.txt, checked against DPV's published files); countries are loc: concepts, data
sources are typed with DataSource classes, data categories carry their pd: categories, and lawful bases
their DPV and GDPR Art. 6(1) classes."""

import json

import pytest

from inventory import models, ropa
from inventory.ropa import record_of_processing, render

pytestmark = pytest.mark.django_db

DPV_NAMESPACES = ("https://w3id.org/dpv#", "https://w3id.org/dpv/")


def _document() -> dict:
    return json.loads(render(record_of_processing(), "jsonld"))


def _expand(value: str, context: dict) -> str:
    prefix, sep, local = value.partition(":")
    if sep and isinstance(context.get(prefix), str) and not local.startswith("//"):
        return context[prefix] + local
    return value


def _term_iri(term: str, context: dict) -> str | None:
    definition = context.get(term)
    if isinstance(definition, dict):
        definition = definition.get("@id")
    return _expand(definition, context) if isinstance(definition, str) else None


def emitted_iris(document: dict) -> set[str]:
    """Every IRI the document uses: its properties and classes through the context, @type and @id values,
    and the values of properties the context declares as IRIs (hasCountry ...)."""
    context = document["@context"]
    iri_valued = {t for t, d in context.items() if isinstance(d, dict) and d.get("@type") == "@id"}
    found: set[str] = set()

    def value_iri(value: str) -> str:
        return _term_iri(value, context) or _expand(value, context)

    def walk(node):
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            if key == "@context":
                continue
            if not key.startswith("@"):
                found.add(_term_iri(key, context) or key)
            if key == "@type":
                found.update(value_iri(v) for v in (value if isinstance(value, list) else [value]))
            elif key == "@id" or key in iri_valued:
                for v in value if isinstance(value, list) else [value]:
                    if isinstance(v, str):
                        found.add(_expand(v, context))
            walk(value)

    walk(document)
    return found


def test_pm_ii_every_dpv_iri_the_record_emits_is_a_published_dpv_term(seeded):
    document = _document()
    dpv = {iri for iri in emitted_iris(document) if iri.startswith(DPV_NAMESPACES)}
    assert dpv, "the record uses DPV terms"
    unknown = sorted(dpv - ropa.dpv_terms())
    assert unknown == [], f"not DPV terms (or not yet checked into dpv-terms.txt): {unknown}"


def test_pm_ii_the_context_maps_only_to_listed_dpv_terms():
    context = ropa.jsonld_context()
    mapped = {_term_iri(term, context) for term in context if not term.startswith("@")}
    in_dpv = {iri for iri in mapped if iri and iri.startswith(DPV_NAMESPACES) and not iri.endswith(("#", "/"))}
    assert sorted(in_dpv - ropa.dpv_terms()) == []


def test_pm_ii_the_mapping_names_only_listed_terms_and_known_register_codes(seeded):
    mapping = ropa.dpv_mapping()
    context = ropa.jsonld_context()
    terms = [t for ts in mapping["data_categories"].values() for t in ts]
    terms += list(mapping["collection_sources"].values()) + list(mapping["jurisdictions"].values())
    terms += [v for b in mapping["lawful_bases"].values() for v in b.values()]
    assert sorted({_expand(t, context) for t in terms} - ropa.dpv_terms()) == []
    assert set(mapping["data_categories"]) <= set(models.DataCategory.objects.values_list("code", flat=True))
    assert set(mapping["collection_sources"]) == set(models.CollectionSource.objects.values_list("code", flat=True))
    assert set(mapping["lawful_bases"]) <= set(models.LawfulBasis.objects.values_list("code", flat=True))


def test_pm_v_1_countries_are_dpv_location_concepts(seeded):
    document = _document()
    transfers = {t["identifier"]: t for t in document["transfers"]}
    assert (transfers["sg-to-id"]["hasCountry"], transfers["sg-to-id"]["hasThirdCountry"]) == ("loc:SG", "loc:ID")
    assert {r["hasCountry"] for r in document["recipients"] if "hasCountry" in r} == {"loc:SG", "loc:ID", "loc:CN"}
    assert document["hasDataController"]["hasCountry"] == "loc:SG"
    jurisdictions = {b["hasJurisdiction"] for p in document["hasProcess"] for b in p["hasLegalBasis"] if "hasJurisdiction" in b}
    assert jurisdictions and all(j.startswith("loc:") for j in jurisdictions), jurisdictions


def test_pm_i_8_data_sources_are_typed_with_dpv_data_source_classes(seeded):
    document = _document()
    sources = {s["identifier"]: s for s in document["dataSources"]}
    assert sources["provided-by-user"]["@type"] == ["DataSource", "dpv:DataSubjectDataSource"]
    assert sources["from-third-parties"]["@type"] == ["DataSource", "dpv:ThirdPartyDataSource"]
    assert sources["generated-by-system"]["@type"] == ["DataSource", "dpv:DataControllerDataSource"]
    account = next(c for c in document["personalDataCategories"] if c["identifier"] == "account-information")
    assert {s["@id"] for s in account["hasDataSource"]} == {
        "urn:privacyops:source:provided-by-user",
        "urn:privacyops:source:from-third-parties",
    }
    assert set(account["hasDataSource"][0]) == {"@id"} and all(
        s["@id"] in {src["@id"] for src in document["dataSources"]} for s in account["hasDataSource"]
    )
    # The register's "provided by the user" names how the data was obtained: it types the data itself.
    assert "dpv:ProvidedPersonalData" in account["@type"]


def test_pm_i_1_data_categories_carry_their_dpv_pd_categories(seeded):
    categories = {c["identifier"]: c["@type"] for c in _document()["personalDataCategories"]}
    assert {"PersonalData", "pd:Name", "pd:EmailAddress"} <= set(categories["account-information"])
    assert {"pd:IPAddress", "pd:UserAgent"} <= set(categories["log-data"])
    assert "pd:Communication" in categories["user-content"]
    assert "pd:Opinion" in categories["feedback"]
    # Our own records have no pd: category: only PersonalData and how the data came about.
    assert not any(t.startswith("pd:") for t in categories["audit-records"])


def test_pm_ii_lawful_bases_carry_the_dpv_and_gdpr_article_6_classes(seeded):
    bases = [b for p in _document()["hasProcess"] for b in p["hasLegalBasis"]]
    contract = next(b for b in bases if b["identifier"] == "contract" and "hasJurisdiction" not in b)
    assert contract["@type"] == ["LegalBasis", "dpv:Contract", "eu-gdpr:A6-1-b"]
    consent = [b for b in bases if b["identifier"] == "consent"]
    assert consent and all("dpv:Consent" in b["@type"] for b in consent)
    # A basis that holds only outside the EU gets no GDPR class.
    for basis in bases:
        if basis.get("hasJurisdiction") not in (None, "loc:EU"):
            assert not any(t.startswith("eu-gdpr:") for t in basis["@type"]), basis
    deemed = [b for b in bases if b["identifier"].startswith("deemed-consent")]
    assert all("dpv:ImpliedConsent" in b["@type"] for b in deemed)


def test_pm_xi_1_the_record_names_the_controllers_own_contact_details(seeded, settings):
    settings.CONTROLLER_ADDRESS = "1 Example Road, Singapore 000001"
    settings.CONTROLLER_EMAIL = "privacy@controller.example"
    settings.CONTROLLER_PHONE = "+65 6000 0000"
    settings.CONTROLLER_REPRESENTATIVE = "EU Representative Ltd, Dublin"
    settings.CONTROLLER_REPRESENTATIVE_CONTACT = "eu-rep@example.org"
    record = record_of_processing()
    controller = record["controller"]
    assert (controller["address"], controller["email"], controller["phone"]) == (
        "1 Example Road, Singapore 000001",
        "privacy@controller.example",
        "+65 6000 0000",
    )
    document = json.loads(render(record, "jsonld"))["hasDataController"]
    assert document["hasAddress"] == "1 Example Road, Singapore 000001"
    assert document["hasContact"] == ["privacy@controller.example", "+65 6000 0000"]
    assert document["hasRepresentative"]["hasContact"] == ["eu-rep@example.org"]
    assert document["hasDataProtectionOfficer"]["hasContact"] == [settings.DPO_EMAIL]


def test_pm_xi_1_the_defaults_are_the_policys_controller(settings):
    details = ropa.controller_details()
    assert details["name"] == "Alibaba Cloud (Singapore) Private Limited"
    assert "Times Square" in details["address"] and details["address_country"] == "HK"
    assert details["email"] == settings.DPO_EMAIL and details["country"] == "SG"


def test_pm_xi_1_the_admin_page_shows_the_controllers_contact_details(client, seeded, settings):
    from django.urls import reverse

    from tests.factories.inventory import staff_in_role

    settings.CONTROLLER_PHONE = "+65 6000 0000"
    client.force_login(staff_in_role("DPO"))
    page = client.get(reverse("admin:inventory_record_of_processing")).content.decode()
    section = page[page.index('id="ropa-controller"') : page.index('id="ropa-purposes"')]
    assert settings.CONTROLLER_ADDRESS in section and settings.CONTROLLER_EMAIL in section and "+65 6000 0000" in section
