"""Real data and small models for the callback tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402
from export_helpers import make_cnn  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402


@pytest.fixture(scope="session")
def digits():
    """sklearn's 1,797 real 8x8 digits, scaled to [0, 1], as (x, y)."""
    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    return x, data.target.astype("int32")


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
