from django.apps import AppConfig


class PrivacyOpsConfig(AppConfig):
    """The core: audit trail, dashboard registry and (later) the personal-data registry API."""

    name = "privacyops"
    label = "privacyops"
    verbose_name = "PrivacyOps core"
    default_auto_field = "django.db.models.BigAutoField"
