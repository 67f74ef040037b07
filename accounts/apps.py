from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from .roles import sync_roles_after_migrate

        # Staff roles follow the matrix in accounts/roles.py after every migrate (and every flush).
        post_migrate.connect(sync_roles_after_migrate, dispatch_uid="accounts.sync_roles_after_migrate")
