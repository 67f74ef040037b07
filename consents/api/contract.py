"""What the consent API promises, in one place: the views enforce it and the OpenAPI document states it."""

from consents.models import ConsentEvent

# Questions in one POST /consent-checks.
BATCH_MAX = 1000
# What a client may record: an expiry is ours to write, when a consent's lifetime ends.
EVENT_ACTIONS = (ConsentEvent.Action.GIVEN, ConsentEvent.Action.REFUSED, ConsentEvent.Action.WITHDRAWN)
