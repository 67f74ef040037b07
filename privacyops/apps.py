from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class PrivacyOpsConfig(AppConfig):
    """The core: audit trail, dashboard registry and the personal-data registry API."""

    name = "privacyops"
    label = "privacyops"
    verbose_name = "PrivacyOps core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Apps declare their dashboard tiles in <app>/dashboard.py; the core imports them and knows none.
        autodiscover_modules("dashboard")
        # Apps declare their personal data in <app>/privacy.py (the registry lives in privacyops.privacy).
        from privacyops import privacy

        privacy.autodiscover()
        # Apps name their audit actions in <app>/audit_actions.py (the vocabulary lives in the core).
        from privacyops import audit_actions

        audit_actions.autodiscover()
        # Every app's tasks are registered in every process (web ones too), so services can queue a task
        # by its name without importing the tasks module that imports them (privacyops.queueing).
        autodiscover_modules("tasks")
