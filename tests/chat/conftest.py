import pytest


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Attachment files of chat tests go to the test's own directory, never to var/media."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return settings.MEDIA_ROOT
