from django.apps import AppConfig


class ConsentsConfig(AppConfig):
    name = "consents"
    verbose_name = "Consents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # The register (inventory) must not import consents: consents plugs its seed rows (purposes, notices,
        # cookies, the policy version) into `loadpolicy`, and listens for sign-ins to link visitor ids.
        from inventory import policy

        from . import seeding, signals  # noqa: F401 (signals connects its receivers on import)

        policy.register_seed_loader(seeding.LOADER_NAME, read=seeding.read, apply=seeding.apply)
