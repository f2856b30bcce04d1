"""Fixtures shared by every test folder: the one loader of the digits data.

TensorFlow's C++ log is quieted before any test module imports it.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402


@pytest.fixture(scope="session")
def digits():
    """sklearn's 1,797 real 8x8 digits, scaled to [0, 1], as (x, y)."""
    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    return x, data.target.astype("int32")


@pytest.fixture(scope="session")
def digits_split(digits):
    """The digits stratified 70/30: (x_train, y_train, x_test, y_test)."""
    x, y = digits
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=0, stratify=y
    )
    return x_train, y_train, x_test, y_test
