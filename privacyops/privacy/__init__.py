"""The personal-data registry: which fields of which models hold personal data, and how erasure treats them.

Each app declares its models in its `privacy.py` (imported at start-up, as `admin.py` is):

    from privacyops import privacy
    privacy.register(
        Message,
        subject="conversation__user",
        category="user-content",
        created="created",
        fields={"content": privacy.Field("user-content", privacy.Erase.REDACT, "What you wrote")},
        not_personal=("id", "conversation", "role"),
    )

Exports, erasure, retention purges, the "your data" page and the drift check all read this one registry,
so none of them names a model. It lives in the core (as the admin site lives in contrib) so any app can
declare without importing upward; `inventory` adds the drift check against the seed register and the
data-store sync.

Invariants:
- One declaration per model; declaring a model twice is an error (a re-imported module is not: the same
  declaration again replaces itself).
- Every concrete field of a declared model is either in `fields` (personal, with a category) or in
  `not_personal`; the subject path and the timestamps name real fields. The system check enforces this
  at start-up (inventory.checks), so a new column cannot reach production unclassified.
- A pseudonymised value is still personal data. "Anonymise" never pseudonymises: it applies the
  anonymising form of each field's strategy (strategies.anonymising_strategy) and cuts the subject link.
"""

from __future__ import annotations

from django.utils.module_loading import autodiscover_modules

from .registry import (
    Declaration,
    Erase,
    Field,
    NotRegistered,
    PrivacyRegistry,
    RegistryError,
    register,
    register_not_personal,
    registry,
)
from .strategies import REDACTED, anonymise_updates, erase_updates, generalise_ip, pseudonym


def autodiscover() -> None:
    """Import every app's `privacy.py`, then the core's declarations for contrib models. Here, not in the
    registry, because the declarations import the registry."""
    autodiscover_modules("privacy")
    from . import declarations  # noqa: F401  (the core's own and contrib's models)


__all__ = [
    "REDACTED",
    "Declaration",
    "Erase",
    "Field",
    "NotRegistered",
    "PrivacyRegistry",
    "RegistryError",
    "anonymise_updates",
    "autodiscover",
    "erase_updates",
    "generalise_ip",
    "pseudonym",
    "register",
    "register_not_personal",
    "registry",
]
