"""Settings of the gunicorn that bench/consent_api.py starts: the project's own, with the URLconf of
bench/_api_urls.py (the project's URLs plus the bench's floor view). Not a benchmark itself."""

from privacyops.settings import *  # noqa: F403 -- the project's settings, unchanged but for the URLconf

ROOT_URLCONF = "bench._api_urls"
