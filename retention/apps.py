from django.apps import AppConfig


class RetentionConfig(AppConfig):
    name = "retention"
    verbose_name = "Retention"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # The register (inventory) must not import retention; retention plugs itself into the register's
        # seed load and the record of processing's (f) instead.
        from inventory import policy, ropa

        from . import record, seeding

        policy.register_seed_loader(seeding.LOADER_NAME, read=seeding.read, apply=seeding.apply)
        ropa.register_retention_source(record.retention_by_category)
