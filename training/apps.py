from django.apps import AppConfig


class TrainingConfig(AppConfig):
    """The PM-II-5 model-improvement dataset. It depends on consents (the gate) and chat (the content); nothing
    depends on it. No models: a run is recorded in the audit trail."""

    name = "training"
    verbose_name = "Model-improvement dataset"
    default_auto_field = "django.db.models.BigAutoField"
