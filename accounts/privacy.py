"""Account Information (POLICY-MAP I-1, I-8): the account itself and its social sign-in links.

The account row is the subject, so it declares no subject path. Erasing an account deletes the row (its
email and subject_ref go with it); afterwards the audit trail's subject_ref points at nobody.
"""

from privacyops import privacy
from privacyops.privacy import Erase, Field

from .models import SocialIdentity, User

privacy.register(
    User,
    category="account-information",
    created="date_joined",
    timestamps=("last_activity_at", "closed_at"),
    fields={
        "email": Field("account-information", Erase.DELETE, "The address you sign in with", rectifiable=True),
        "name": Field("account-information", Erase.NULL, "Your name", rectifiable=True),
        "subject_ref": Field("account-information", Erase.DELETE, "The random reference our records use instead of your name"),
        "password": Field("account-information", Erase.DELETE, "A one-way hash of your password (never the password)"),
        "country": Field("account-information", Erase.GENERALISE_COUNTRY, "Your country", rectifiable=True),
        "region": Field("account-information", Erase.NULL, "Your state or province", rectifiable=True),
        "date_of_birth": Field("account-information", Erase.NULL, "Your date of birth", rectifiable=True),
        "last_login": Field("account-information", Erase.NULL, "When you last signed in"),
        "last_activity_at": Field("account-information", Erase.NULL, "When you last used the service"),
        "closed_at": Field("account-information", Erase.NULL, "When you closed the account"),
        "date_joined": Field("account-information", Erase.GENERALISE_DAY, "When you opened the account"),
    },
    not_personal=("id", "is_superuser", "is_staff", "is_active", "groups", "user_permissions"),
)

privacy.register(
    SocialIdentity,
    subject="user",
    category="account-information",
    created="linked_at",
    fields={
        "provider": Field("account-information", Erase.DELETE, "The network you sign in with (Google, GitHub)"),
        "provider_uid": Field("account-information", Erase.DELETE, "Your account's identifier at that network"),
        "linked_at": Field("account-information", Erase.GENERALISE_DAY, "When you linked it"),
    },
    not_personal=("id", "user"),
)
