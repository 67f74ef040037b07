from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_migrate


class InventoryConfig(AppConfig):
    name = "inventory"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import policy
        from .checks import check_personal_data_registry
        from .services import datastore_seed_apply, datastore_sync_after_migrate

        # PM-I drift check: runs with every `manage.py check`, migrate and server start.
        checks.register(check_personal_data_registry, "privacyops")
        # Data stores of kind `django` follow the registry after every migrate (and every flush).
        post_migrate.connect(datastore_sync_after_migrate, dispatch_uid="inventory.datastore_sync_after_migrate")
        # ... and after every loadpolicy, inside its transaction and its one audit event.
        policy.register_seed_loader("inventory.datastores", read=lambda policy_file: None, apply=datastore_seed_apply)
