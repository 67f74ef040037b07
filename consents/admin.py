"""The consents workbench. Policy versions, acceptances and notice deliveries live in `admin_policy`."""

from . import admin_policy  # noqa: F401 (registers the policy-version screens)
