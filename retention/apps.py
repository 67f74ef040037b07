from django.apps import AppConfig


class RetentionConfig(AppConfig):
    name = "retention"
    verbose_name = "Retention"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # The register (inventory) must not import retention; retention plugs itself into the register's
        # seed load instead.
        from inventory import policy

        from . import seeding

        policy.register_seed_loader(seeding.LOADER_NAME, read=seeding.read, apply=seeding.apply)
