import pytest

from tests.factories import inventory as f


@pytest.fixture
def register():
    """A small register built by factories: a few rows of every model, with flagged transfers."""
    return f.small_register()
