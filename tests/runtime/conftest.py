"""Tiny Keras models and their TFLite conversions, built once per session
for the runtime tests (the builders live in tests/helpers/tiny_models.py)."""

import keras
import pytest

from tests.helpers.tiny_models import BUILDERS
from tests.helpers.tiny_models import convert


@pytest.fixture(scope="session")
def keras_model():
    """Returns the named tiny Keras model, built once per session."""
    cache = {}

    def get(name):
        if name not in cache:
            keras.utils.set_random_seed(0)
            cache[name] = BUILDERS[name]()
        return cache[name]

    return get


@pytest.fixture(scope="session")
def tflite_content(keras_model):
    """Returns `(keras_model, tflite_bytes)`, converted once per session."""
    cache = {}

    def get(name, mode_id):
        if (name, mode_id) not in cache:
            cache[name, mode_id] = convert(keras_model(name), mode_id)
        return keras_model(name), cache[name, mode_id]

    return get
