"""Small data and models for the callback tests (`digits` and
`digits_split` come from tests/conftest.py)."""

import pytest

from tests.helpers.models import make_cnn


@pytest.fixture
def small_digits(digits):
    """240 digits: enough for a one-epoch fit that learns something."""
    x, y = digits
    return x[:240], y[:240]


@pytest.fixture
def cnn():
    return make_cnn()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Runs the test in an empty folder, as a user in a fresh project would."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
