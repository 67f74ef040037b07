from django.apps import AppConfig


class RequestsConfig(AppConfig):
    """Rights requests. Named `requests` at top level: never install the PyPI `requests` library."""

    name = "requests"
    default_auto_field = "django.db.models.BigAutoField"
