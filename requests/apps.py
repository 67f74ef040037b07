from django.apps import AppConfig


class RequestsConfig(AppConfig):
    """Rights requests. Named `requests` at top level: never install the PyPI `requests` library."""

    name = "requests"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # The register (inventory) must not import this app; the deadline rules plug into its seed load.
        from inventory import policy

        from . import seeding

        policy.register_seed_loader(seeding.LOADER_NAME, read=seeding.read, apply=seeding.apply)
