"""Reads of the register that more than one caller needs: a subject's jurisdiction, the lawful bases a
purpose rests on for it, and how many records the system holds about a subject (from the registry).

The override rule for lawful bases: a PurposeBasis with no jurisdiction applies everywhere. When a
purpose has one or more rows for a jurisdiction, those rows REPLACE the general rows for subjects of that
jurisdiction — they are the complete list there, not additions. So a jurisdiction that keeps a general
basis and adds another (Singapore: contract plus deemed consent) lists both; a jurisdiction that lacks a
basis (China: no legitimate interests) lists only what it has.

A subject's jurisdiction follows from their country and region: a region entry (US-CA) wins over a
country entry, and a subject that matches nothing falls under DEFAULT.
"""

from __future__ import annotations

from .models import Jurisdiction, Purpose, PurposeBasis


def _norm(code: str | None) -> str:
    return (code or "").strip().upper()


def jurisdiction_for(*, country: str, region: str = "") -> Jurisdiction:
    """The jurisdiction for a country (ISO 3166-1) and optional region (ISO 3166-2, e.g. US-CA).

    Region first, then country, else DEFAULT. Raises Jurisdiction.DoesNotExist if the register has no
    DEFAULT (run `manage.py loadpolicy`).
    """
    country, region = _norm(country), _norm(region)
    # A handful of rows: matching in Python works the same on SQLite and PostgreSQL (JSON containment
    # lookups do not exist on SQLite).
    jurisdictions = [j for j in Jurisdiction.objects.order_by("code") if j.code != Jurisdiction.DEFAULT]
    if region:
        for jurisdiction in jurisdictions:
            if region in jurisdiction.countries:
                return jurisdiction
    if country:
        for jurisdiction in jurisdictions:
            if country in jurisdiction.countries:
                return jurisdiction
    try:
        return Jurisdiction.objects.get(code=Jurisdiction.DEFAULT)
    except Jurisdiction.DoesNotExist:
        raise Jurisdiction.DoesNotExist("The register has no DEFAULT jurisdiction; run `manage.py loadpolicy`.") from None


def jurisdiction_for_subject(*, subject) -> Jurisdiction:
    """The jurisdiction of a data subject (an accounts.User), from their country and region."""
    return jurisdiction_for(country=subject.country, region=subject.region)


def purpose_bases_for(*, purpose: Purpose, jurisdiction: Jurisdiction | None) -> list[PurposeBasis]:
    """The lawful bases `purpose` rests on for subjects of `jurisdiction`, applying the override rule.

    `jurisdiction=None` asks for the general rows.
    """
    rows = PurposeBasis.objects.filter(purpose=purpose).select_related("basis", "jurisdiction").order_by("basis__code")
    if jurisdiction is not None:
        specific = list(rows.filter(jurisdiction=jurisdiction))
        if specific:
            return specific
    return list(rows.filter(jurisdiction__isnull=True))


def subject_model_counts(user) -> list[tuple]:
    """(declaration, rows) for every registered model that can find `user`'s rows (a subject path, the
    account itself, or an identifier such as the email for rows with no account): one COUNT query per
    model, 0 included, so a reader sees where we looked. Reads the personal-data registry: names no model."""
    from privacyops.privacy import registry

    counts = []
    for declaration in registry.personal():
        condition = declaration.subject_q(user)
        if condition is not None:
            counts.append((declaration, declaration.model._default_manager.filter(condition).count()))
    return counts


def subject_record_counts(user) -> dict[str, dict[str, int]]:
    """How many records the system holds about `user`, per data category and per data store (PM-I, PM-IX);
    categories and stores that could hold the subject's rows but hold none are listed with 0."""
    counts: dict[str, dict[str, int]] = {"categories": {}, "stores": {}}
    for declaration, n in subject_model_counts(user):
        counts["categories"][declaration.category] = counts["categories"].get(declaration.category, 0) + n
        counts["stores"][declaration.store_code] = counts["stores"].get(declaration.store_code, 0) + n
    return counts
