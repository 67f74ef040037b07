from django.conf import settings


def controller(request):
    """The controller and DPO identity (PM-XI-1), available to every template."""
    return {
        "controller": {
            "name": settings.CONTROLLER_NAME,
            "representative": settings.CONTROLLER_REPRESENTATIVE,
            "dpo_name": settings.DPO_NAME,
            "dpo_email": settings.DPO_EMAIL,
            "dpo_postal_address": settings.DPO_POSTAL_ADDRESS,
        }
    }
