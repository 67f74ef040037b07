import pytest


@pytest.fixture(autouse=True)
def anchor_log(settings, tmp_path):
    """Every test anchors to its own file: never to var/audit-anchors.log of a developer's running system."""
    settings.AUDIT_ANCHOR_LOG = str(tmp_path / "audit-anchors.log")
    return settings.AUDIT_ANCHOR_LOG
