"""The record of processing activities, GDPR Art. 30(1)(a)–(g), built from the register.

`record_of_processing()` is the one selector: it reads the register in a fixed number of queries and
returns plain data (dicts, lists, strings) that the admin page, the CSV, the JSON and the JSON-LD
renderings all share, so the four can never disagree. Which letter of Art. 30(1) each part answers:
(a) `controller`; (b) `purposes`; (c) each purpose's `data_subject_categories` and `categories`;
(d) `recipient_categories` and each purpose's `recipients`; (e) `transfers`, each with its mechanism and
flag (none: red, unspecified: amber — PM-V-3); (f) `retention`, per category, with the data stores it
lives in (the text comes from a source the retention app registers; "not set" without one);
(g) `security_measures`.

Lawful bases follow the register's override rule (see `inventory.selectors`): rows for a jurisdiction
replace the general rows for subjects of that jurisdiction; the record lists both, each row labelled.
Nothing here writes; rendering a download is audited by the caller.

The JSON-LD uses W3C DPV terms only as DPV defines them: countries are `loc:` concepts, sources are
`DataSource` nodes, categories carry their `pd:` categories and bases their DPV and GDPR Art. 6(1)
classes. Which register code means which term is data (`jsonld/dpv-mapping.json`), and every DPV IRI the
export may emit is listed in `jsonld/dpv-terms.txt`, each checked against DPV's published files; the
tests fail on any other (docs/record-of-processing.md).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping
from pathlib import Path

from django.conf import settings
from django.db.models import Case, Prefetch, Value, When
from django.utils import timezone

from .models import CollectionSource, DataCategory, ProcessingActivity, Purpose, PurposeBasis, RecipientCategory, Transfer
from .resources import escape_formula

RETENTION_NOT_SET = "not set"
JSONLD_CONTEXT_PATH = Path(__file__).resolve().parent / "jsonld" / "ropa-context.jsonld"
# The register's codes in DPV terms (pd: categories, DataSource classes, GDPR Art. 6 classes, loc: places),
# and the DPV terms the JSON-LD may use, checked against DPV's published vocabulary (see the files).
DPV_MAPPING_PATH = JSONLD_CONTEXT_PATH.with_name("dpv-mapping.json")
DPV_TERMS_PATH = JSONLD_CONTEXT_PATH.with_name("dpv-terms.txt")
# DPV's kinds of personal data by how it was obtained: where the register's source names one of these, it
# types the data; the source itself is typed with a DataSource class from the mapping.
DATA_BY_ORIGIN = frozenset({"dpv:ProvidedPersonalData", "dpv:ObservedPersonalData", "dpv:GeneratedPersonalData"})
FORMATS = ("csv", "json", "jsonld")
# The policy's purpose table (section II) first, then the further purposes (PM-II-7), each in policy order.
PURPOSE_ORDER = (Case(When(kind=Purpose.Kind.MAIN, then=Value(0)), default=Value(1)), "position", "code")
CONTENT_TYPES = {"csv": "text/csv", "json": "application/json", "jsonld": "application/ld+json"}


def controller_details() -> dict:
    """The controller's name and own contact details, its representative's and its DPO's (GDPR Art.
    30(1)(a)), from settings: the one place the record of processing and the consent receipts
    (`consents.receipts`) take them from, so the two always name the same controller the same way."""
    return {
        "name": settings.CONTROLLER_NAME,
        "address": settings.CONTROLLER_ADDRESS,
        "address_country": settings.CONTROLLER_ADDRESS_COUNTRY,
        "email": settings.CONTROLLER_EMAIL,
        "phone": settings.CONTROLLER_PHONE,
        "country": settings.CONTROLLER_COUNTRY,
        "representative": settings.CONTROLLER_REPRESENTATIVE or None,
        "representative_contact": settings.CONTROLLER_REPRESENTATIVE_CONTACT or None,
        "dpo": {
            "name": settings.DPO_NAME,
            "email": settings.DPO_EMAIL,
            "postal_address": settings.DPO_POSTAL_ADDRESS,
        },
    }


# Art. 30(1)(f) comes from the retention app's rules. This module may not import that app (it depends on
# the register, not the reverse), so the app registers a source at start-up: a callable returning, per
# category code, {"text": the (f) line, "rules": [plain dicts]}. Without one, every category is "not set".
RetentionSource = Callable[[], Mapping[str, dict]]
_retention_source: RetentionSource | None = None


def register_retention_source(source: RetentionSource | None) -> None:
    """Where (f) comes from (PM-VI-1); None restores "not set" everywhere."""
    global _retention_source
    _retention_source = source


def retention_by_category() -> Mapping[str, dict]:
    """category code -> {"text", "rules"} from the registered source, read once per record."""
    return _retention_source() if _retention_source is not None else {}


def retention_for(category: DataCategory, retention: Mapping[str, dict] | None = None) -> str:
    """Art. 30(1)(f): how long `category` is kept, or "not set" when no rule says."""
    retention = retention_by_category() if retention is None else retention
    entry = retention.get(category.code)
    return entry["text"] if entry else RETENTION_NOT_SET


def _flag(severity: str, text: str, ref: str) -> dict:
    return {"severity": severity, "text": text, "ref": ref}


def _basis_row(row: PurposeBasis) -> dict:
    return {
        "code": row.basis.code,
        "name": row.basis.name,
        "legal_reference": row.basis.legal_reference,
        "dpv": row.basis.dpv,
        "jurisdiction": row.jurisdiction.code if row.jurisdiction_id else None,
        "jurisdiction_name": row.jurisdiction.name if row.jurisdiction_id else "",
        "jurisdiction_countries": list(row.jurisdiction.countries or []) if row.jurisdiction_id else [],
        "condition": row.condition,
        "needs_review": row.needs_review or row.basis.needs_review,
        "review_note": row.review_note or row.basis.review_note,
    }


def _transfer_row(transfer: Transfer) -> dict:
    return {
        "code": transfer.code,
        "name": transfer.name,
        "from_country": transfer.from_country,
        "to_country": transfer.to_country,
        "recipient": transfer.recipient.code if transfer.recipient_id else None,
        "recipient_name": transfer.recipient.name if transfer.recipient_id else "",
        "recipient_category": transfer.recipient_category.code if transfer.recipient_category_id else None,
        "recipient_category_name": transfer.recipient_category.name if transfer.recipient_category_id else "",
        "data_categories": sorted(c.code for c in transfer.data_categories.all()),
        "mechanism": transfer.mechanism,
        "mechanism_label": transfer.get_mechanism_display(),
        "flag": transfer.flag,
        "needs_review": transfer.needs_review,
        "review_note": transfer.review_note,
    }


def _transfer_flags(transfer: dict) -> list[dict]:
    flags = []
    if transfer["flag"] == "red":
        flags.append(_flag("red", f"Transfer {transfer['code']} has no transfer mechanism.", transfer["code"]))
    elif transfer["flag"] == "amber":
        flags.append(_flag("amber", f"Transfer {transfer['code']}: the mechanism is unspecified.", transfer["code"]))
    if transfer["needs_review"]:
        flags.append(_flag("amber", f"Transfer {transfer['code']} needs review.", transfer["code"]))
    return flags


def record_of_processing() -> dict:
    """The whole Art. 30(1) record as plain data. See the module docstring for its parts."""
    retention = retention_by_category()
    activities = ProcessingActivity.objects.select_related("category").prefetch_related("category__sources", "category__stores")
    purposes = Purpose.objects.prefetch_related(
        Prefetch("activities", queryset=activities.order_by("category__code")),
        Prefetch("purpose_bases", queryset=PurposeBasis.objects.select_related("basis", "jurisdiction")),
        "subject_categories",
        "recipients__category",
    ).order_by(*PURPOSE_ORDER)
    transfers = [
        _transfer_row(t)
        for t in Transfer.objects.select_related("recipient", "recipient_category").prefetch_related("data_categories")
    ]
    transfers_by_category: dict[str, list[dict]] = {}
    for transfer in transfers:
        for code in transfer["data_categories"]:
            transfers_by_category.setdefault(code, []).append(transfer)

    record_flags: list[dict] = []
    purpose_rows = []
    for purpose in purposes:
        bases = sorted(
            (_basis_row(row) for row in purpose.purpose_bases.all()),
            key=lambda b: (b["jurisdiction"] is not None, b["jurisdiction"] or "", b["code"]),
        )
        categories = [
            {
                "code": a.category.code,
                "name": a.category.name,
                "dpv": a.category.dpv,
                "form": a.form,
                "form_label": a.get_form_display(),
                "is_system_record": a.is_system_record or a.category.is_system_record,
                "sources": sorted(s.code for s in a.category.sources.all()),
                "stores": sorted(s.code for s in a.category.stores.all()),
                "retention": retention_for(a.category, retention),
                "note": a.note,
                "needs_review": a.category.needs_review,
            }
            for a in purpose.activities.all()
        ]
        recipients = sorted(
            (
                {
                    "code": r.code,
                    "name": r.name,
                    "category": r.category.code,
                    "category_name": r.category.name,
                    "role": r.role,
                    "country": r.country,
                }
                for r in purpose.recipients.all()
            ),
            key=lambda r: r["code"],
        )
        category_codes = {c["code"] for c in categories}
        purpose_transfers = sorted(
            {t["code"] for code in category_codes for t in transfers_by_category.get(code, [])},
        )
        flags = []
        if purpose.needs_review:
            flags.append(_flag("amber", f"Purpose {purpose.code} needs review.", purpose.code))
        if not bases:
            flags.append(_flag("red", f"Purpose {purpose.code} rests on no lawful basis.", purpose.code))
        for basis in bases:
            if basis["needs_review"]:
                where = basis["jurisdiction"] or "everywhere"
                flags.append(_flag("amber", f"Basis {basis['code']} ({where}) of {purpose.code} needs review.", purpose.code))
        record_flags.extend(flags)
        purpose_rows.append(
            {
                "code": purpose.code,
                "name": purpose.name,
                "description": purpose.description,
                "kind": purpose.kind,
                "kind_label": purpose.get_kind_display(),
                "policy_ref": purpose.policy_ref,
                "dpv": purpose.dpv,
                "needs_review": purpose.needs_review,
                "review_note": purpose.review_note,
                "bases": bases,
                "data_subject_categories": [
                    {"code": s.code, "name": s.name, "dpv": s.dpv}
                    for s in sorted(purpose.subject_categories.all(), key=lambda s: s.code)
                ],
                "categories": categories,
                "recipients": recipients,
                "recipient_categories": sorted({r["category"] for r in recipients}),
                "transfers": purpose_transfers,
                "flags": flags,
            }
        )

    for transfer in transfers:
        record_flags.extend(_transfer_flags(transfer))

    recipient_categories = [
        {
            "code": rc.code,
            "name": rc.name,
            "description": rc.description,
            "dpv": rc.dpv,
            "policy_ref": rc.policy_ref,
            "recipients": sorted(r.code for r in rc.recipients.all()),
        }
        for rc in RecipientCategory.objects.prefetch_related("recipients")
    ]
    used_by: dict[str, list[str]] = {}
    for purpose in purpose_rows:
        for category in purpose["categories"]:
            used_by.setdefault(category["code"], []).append(purpose["code"])
    data_categories = [
        {
            "code": c.code,
            "name": c.name,
            "description": c.description,
            "dpv": c.dpv,
            "policy_ref": c.policy_ref,
            "example_fields": c.example_fields,
            "sources": sorted(s.code for s in c.sources.all()),
            "is_system_record": c.is_system_record,
            "needs_review": c.needs_review,
            "purposes": used_by.get(c.code, []),
            "stores": sorted(s.code for s in c.stores.all()),
            "retention": retention_for(c, retention),
            "retention_rules": retention.get(c.code, {}).get("rules", []),
        }
        for c in DataCategory.objects.prefetch_related("sources", "stores").order_by("code")
    ]
    for category in data_categories:
        if not category["purposes"]:
            record_flags.append(_flag("amber", f"Category {category['code']} is used by no purpose.", category["code"]))
    record_flags.sort(key=lambda flag: flag["severity"] != "red")  # red first, otherwise in record order
    retention_rows = [
        {
            "category": c["code"],
            "category_name": c["name"],
            "period": c["retention"],
            "stores": c["stores"],
            "rules": c["retention_rules"],
        }
        for c in data_categories
    ]
    return {
        "title": "Record of processing activities (GDPR Art. 30(1))",
        "generated_at": timezone.now().isoformat(timespec="seconds"),
        "controller": controller_details(),
        "purposes": purpose_rows,
        "data_categories": data_categories,
        "recipient_categories": recipient_categories,
        "transfers": transfers,
        "retention": retention_rows,
        "security_measures": settings.SECURITY_MEASURES,
        "collection_sources": [
            {"code": s.code, "name": s.name, "description": s.description, "dpv": s.dpv}
            for s in CollectionSource.objects.order_by("code")
        ],
        "flags": record_flags,
    }


# --- Renderings ----------------------------------------------------------------------------------

CSV_HEADER = [
    "purpose_code",
    "purpose_name",
    "purpose_kind",
    "policy_ref",
    "category_code",
    "category_name",
    "form",
    "system_record",
    "data_subject_categories",
    "lawful_bases",
    "recipients",
    "recipient_categories",
    "transfers",
    "retention",
    "stores",
    "needs_review",
    "controller",
]


def _bases_text(bases: list[dict]) -> str:
    parts = []
    for b in bases:
        text = b["code"] + (f"@{b['jurisdiction']}" if b["jurisdiction"] else "")
        if b["condition"]:
            text += f" ({b['condition']})"
        parts.append(text)
    return "; ".join(parts)


def _transfer_text(transfer: dict) -> str:
    flag = f", {transfer['flag']}" if transfer["flag"] else ""
    return f"{transfer['code']} {transfer['from_country']}->{transfer['to_country']} ({transfer['mechanism']}{flag})"


def render_csv(record: dict) -> str:
    """One row per purpose × category (a processing activity). A purpose that uses no category yet
    (the further purposes, "as needed") still gets one row, with the category columns empty, so the
    flat file lists every purpose."""
    transfers = {t["code"]: t for t in record["transfers"]}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for purpose in record["purposes"]:
        common = {
            "purpose_code": purpose["code"],
            "purpose_name": purpose["name"],
            "purpose_kind": purpose["kind"],
            "policy_ref": purpose["policy_ref"],
            "data_subject_categories": "; ".join(s["code"] for s in purpose["data_subject_categories"]),
            "lawful_bases": _bases_text(purpose["bases"]),
            "recipients": "; ".join(r["code"] for r in purpose["recipients"]),
            "recipient_categories": "; ".join(purpose["recipient_categories"]),
            "controller": record["controller"]["name"],
        }
        purpose_review = "; ".join(f["text"] for f in purpose["flags"])
        for category in purpose["categories"] or [None]:
            row = dict(common)
            if category is not None:
                category_transfers = [t for t in record["transfers"] if category["code"] in t["data_categories"]]
                row.update(
                    {
                        "category_code": category["code"],
                        "category_name": category["name"],
                        "form": category["form"],
                        "system_record": "yes" if category["is_system_record"] else "no",
                        "transfers": "; ".join(_transfer_text(transfers[t["code"]]) for t in category_transfers),
                        "retention": category["retention"],
                        "stores": "; ".join(category["stores"]),
                    }
                )
                review = [purpose_review] if purpose_review else []
                review += [f["text"] for t in category_transfers for f in _transfer_flags(t)]
                row["needs_review"] = "; ".join(review)
            else:
                row["needs_review"] = purpose_review
            # The same reversible escaping as the register's spreadsheet exports: a cell never runs.
            writer.writerow([escape_formula(row.get(column, "")) for column in CSV_HEADER])
    return out.getvalue()


def render_json(record: dict) -> str:
    return json.dumps(record, indent=2, ensure_ascii=False)


def jsonld_context() -> dict:
    """The shipped @context, read from disk (never fetched)."""
    with JSONLD_CONTEXT_PATH.open(encoding="utf-8") as f:
        return json.load(f)["@context"]


def _node(prefix: str, code: str) -> str:
    return f"urn:privacyops:{prefix}:{code}"


def _typed(base_type: str, *terms: str) -> list[str] | str:
    types = list(dict.fromkeys([base_type, *(t for t in terms if t)]))
    return types if len(types) > 1 else base_type


def dpv_mapping() -> dict:
    """The shipped mapping of register codes to DPV terms, read from disk (never fetched)."""
    with DPV_MAPPING_PATH.open(encoding="utf-8") as f:
        return json.load(f)


def dpv_terms() -> frozenset[str]:
    """The full IRIs of every DPV term the JSON-LD may use (the vendored, checked list)."""
    lines = DPV_TERMS_PATH.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def _loc(country: str | None) -> str | None:
    """A register country or region code (SG, US-CA) as DPV's location concept (loc:SG, loc:US-CA)."""
    return f"loc:{country}" if country else None


def _jurisdiction_loc(code: str | None, countries: list[str], mapping: dict) -> str | None:
    """Where a jurisdiction is, in loc: terms: its one country or region, else the mapping's concept (EU)."""
    if code is None:
        return None
    if code in mapping["jurisdictions"]:
        return mapping["jurisdictions"][code]
    return _loc(countries[0]) if len(countries) == 1 else _node("jurisdiction", code)


def _basis_types(basis: dict, mapping: dict) -> list[str] | str:
    """A lawful basis as DPV's legal-basis classes: the register's (or the mapping's) DPV class, and the GDPR
    Art. 6(1) class where the basis holds in the EU (everywhere, or for the EU)."""
    mapped = mapping["lawful_bases"].get(basis["code"], {})
    gdpr = mapped.get("eu_gdpr") if basis["jurisdiction"] in (None, "EU") else None
    return _typed("LegalBasis", basis["dpv"] or mapped.get("dpv", ""), gdpr or "")


def render_jsonld(record: dict) -> str:
    """The record in DPV terms, with the shipped @context embedded so the file stands alone."""
    controller = record["controller"]
    mapping = dpv_mapping()
    source_dpv = {s["code"]: s["dpv"] for s in record.get("collection_sources", [])}
    processes = []
    for purpose in record["purposes"]:
        processes.append(
            {
                "@id": _node("process", purpose["code"]),
                "@type": "Process",
                "identifier": purpose["code"],
                "title": purpose["name"],
                "hasPurpose": {
                    "@id": _node("purpose", purpose["code"]),
                    "@type": _typed("Purpose", purpose["dpv"]),
                    "identifier": purpose["code"],
                    "title": purpose["name"],
                    "description": purpose["description"],
                    "policyRef": purpose["policy_ref"],
                    "purposeKind": purpose["kind"],
                },
                "hasLegalBasis": [
                    {
                        "@type": _basis_types(b, mapping),
                        "identifier": b["code"],
                        "title": b["name"],
                        "legalReference": b["legal_reference"],
                        "condition": b["condition"],
                        "needsReview": b["needs_review"],
                        **(
                            {"hasJurisdiction": _jurisdiction_loc(b["jurisdiction"], b["jurisdiction_countries"], mapping)}
                            if b["jurisdiction"]
                            else {}
                        ),
                    }
                    for b in purpose["bases"]
                ],
                "hasDataSubject": [
                    {"@id": _node("data-subject", s["code"]), "@type": _typed("DataSubject", s["dpv"]), "title": s["name"]}
                    for s in purpose["data_subject_categories"]
                ],
                "hasPersonalData": [{"@id": _node("data-category", c["code"])} for c in purpose["categories"]],
                # One sub-process per activity: the form (identified / de-identified) belongs to the use of
                # a category for this purpose, not to the category itself.
                "hasProcess": [
                    {
                        "@type": "Process",
                        "hasPersonalData": {"@id": _node("data-category", c["code"])},
                        "dataForm": c["form"],
                        **({"hasTechnicalMeasure": {"@id": "dpv:Deidentification"}} if c["form"] == "de-identified" else {}),
                    }
                    for c in purpose["categories"]
                ],
                "hasRecipient": [{"@id": _node("recipient", r["code"])} for r in purpose["recipients"]],
                "needsReview": purpose["needs_review"],
            }
        )
    personal_data = [
        {
            "@id": _node("data-category", c["code"]),
            "@type": _typed(
                "PersonalData",
                *mapping["data_categories"].get(c["code"], []),
                c["dpv"],
                *sorted({source_dpv.get(s, "") for s in c["sources"]} & DATA_BY_ORIGIN),
            ),
            "identifier": c["code"],
            "title": c["name"],
            "description": c["description"],
            "hasDataSource": [{"@id": _node("source", s)} for s in c["sources"]],
            "hasStorageCondition": {"@type": "StorageDuration", "description": c["retention"]},
            "systemRecord": c["is_system_record"],
        }
        for c in record["data_categories"]
    ]
    recipients = [
        {
            "@id": _node("recipient", r["code"]),
            "@type": ["Recipient", "DataController" if r["role"] == "controller" else "DataProcessor"],
            "identifier": r["code"],
            "title": r["name"],
            "recipientCategory": {"@id": _node("recipient-category", r["category"])},
            **({"hasCountry": _loc(r["country"])} if r["country"] else {}),
        }
        for r in sorted({r["code"]: r for p in record["purposes"] for r in p["recipients"]}.values(), key=lambda r: r["code"])
    ]
    recipient_categories = [
        {
            "@id": _node("recipient-category", rc["code"]),
            "@type": _typed("Recipient", rc["dpv"]),
            "identifier": rc["code"],
            "title": rc["name"],
            "description": rc["description"],
        }
        for rc in record["recipient_categories"]
    ]
    transfers = [
        {
            "@id": _node("transfer", t["code"]),
            "@type": "CrossBorderTransfer",
            "identifier": t["code"],
            "title": t["name"],
            "hasCountry": _loc(t["from_country"]),
            "hasThirdCountry": _loc(t["to_country"]),
            "hasPersonalData": [{"@id": _node("data-category", c)} for c in t["data_categories"]],
            **({"hasRecipient": {"@id": _node("recipient", t["recipient"])}} if t["recipient"] else {}),
            **(
                {"recipientCategory": {"@id": _node("recipient-category", t["recipient_category"])}}
                if t["recipient_category"]
                else {}
            ),
            "hasLegalBasis": {"@type": "DataTransferLegalBasis", "identifier": t["mechanism"], "title": t["mechanism_label"]},
            "flag": t["flag"],
            "needsReview": t["needs_review"],
        }
        for t in record["transfers"]
    ]
    data_sources = [
        {
            "@id": _node("source", src["code"]),
            "@type": _typed("DataSource", mapping["collection_sources"].get(src["code"], "")),
            "identifier": src["code"],
            "title": src["name"],
            "description": src["description"],
        }
        for src in record.get("collection_sources", [])
    ]
    dpo = controller["dpo"]
    representative = {}
    if controller["representative"]:
        representative = {
            "hasRepresentative": {
                "@type": "Representative",
                "hasName": controller["representative"],
                **({"hasContact": [controller["representative_contact"]]} if controller.get("representative_contact") else {}),
            }
        }
    document = {
        "@context": jsonld_context(),
        "@id": "urn:privacyops:record-of-processing",
        "@type": "DataProcessingRecord",
        "title": record["title"],
        "created": record["generated_at"],
        "hasDataController": {
            "@id": "urn:privacyops:controller",
            "@type": "DataController",
            "hasName": controller["name"],
            # Art. 30(1)(a): the controller's own contact details, not only its DPO's.
            "hasAddress": controller["address"],
            "hasContact": [c for c in (controller["email"], controller["phone"]) if c],
            **({"hasCountry": _loc(controller["country"])} if controller["country"] else {}),
            **representative,
            "hasDataProtectionOfficer": {
                "@type": "DataProtectionOfficer",
                "hasName": dpo["name"],
                "hasContact": [dpo["email"]],
                "hasAddress": dpo["postal_address"],
            },
        },
        "hasProcess": processes,
        "personalDataCategories": personal_data,
        "dataSources": data_sources,
        "recipients": recipients + recipient_categories,
        "transfers": transfers,
        "hasTechnicalOrganisationalMeasure": {
            "@type": "TechnicalOrganisationalMeasure",
            "description": record["security_measures"],
        },
    }
    return json.dumps(document, indent=2, ensure_ascii=False)


RENDERERS = {"csv": render_csv, "json": render_json, "jsonld": render_jsonld}


def render(record: dict, fmt: str) -> str:
    """Render the record as csv, json or jsonld; ValueError names the formats for anything else."""
    try:
        return RENDERERS[fmt](record)
    except KeyError:
        raise ValueError(f"Unknown format “{fmt}”: use one of {', '.join(FORMATS)}.") from None
