"""What the inventory app writes to the audit trail (see privacyops.audit_actions).

Every write to the register goes through `inventory.services`, which names its action after the model:
register.<model>.<verb>. `register_actions(model)` registers those codes for one model; this module does it
for every model of the register, and an app whose configuration rows are saved through the same services
(consent purposes, deadline rules ...) calls it for those models in its own audit_actions.py.
"""

from django.apps import apps

from privacyops.audit_actions import action

ENTRY_VERBS = {
    "created": "created",
    "updated": "changed",
    "deleted": "deleted",
    "imported": "imported",
    "exported": "exported",
}


def register_action(model, verb: str) -> str:
    """The code of a register write: register.<model_name>.<verb>."""
    return f"register.{model._meta.model_name}.{verb}"


def register_actions(model) -> None:
    for verb, past in ENTRY_VERBS.items():
        action(register_action(model, verb), f"Register: {model._meta.verbose_name} {past}")


for _model in apps.get_app_config("inventory").get_models():
    register_actions(_model)

RECORD_OF_PROCESSING_EXPORTED = action("register.record_of_processing.exported", "Record of processing exported")
DATASTORE_SYNCED = action("register.datastore.synced", "Data stores synchronised with the registry")
POLICY_LOADED = action("register.policy_loaded", "Register seeded from the policy")
