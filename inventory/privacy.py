"""The register describes processing, not people: none of its tables holds personal data."""

from privacyops import privacy

from .models import (
    CollectionSource,
    DataCategory,
    DataStore,
    DataSubjectCategory,
    Jurisdiction,
    LawfulBasis,
    ProcessingActivity,
    Purpose,
    PurposeBasis,
    Recipient,
    RecipientCategory,
    Transfer,
)

_REASON = "The register of processing: categories, purposes, bases and systems, about no one person."

for _model in (
    CollectionSource,
    DataCategory,
    DataSubjectCategory,
    Jurisdiction,
    LawfulBasis,
    ProcessingActivity,
    Purpose,
    PurposeBasis,
    RecipientCategory,
    Recipient,
    Transfer,
):
    privacy.register_not_personal(_model, reason=_REASON)

privacy.register_not_personal(
    DataStore,
    reason="A system where personal data lives; its owner is a team or a company, not a data subject.",
)
