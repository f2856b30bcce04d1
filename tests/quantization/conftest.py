"""Real digits data and a trained float/QAT/int8 trio, shared by the tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402
from qat_helpers import compile_classifier  # noqa: E402
from qat_helpers import convert  # noqa: E402
from qat_helpers import digits_cnn  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import keras_tflq as tflq  # noqa: E402

FLOAT_EPOCHS = 20
QAT_EPOCHS = 3


@pytest.fixture(scope="session")
def digits_split():
    """sklearn's real 8x8 digits scaled to [0, 1]: (x_train, y_train,
    x_test, y_test), stratified 70/30."""
    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    y = data.target.astype("int32")
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=0, stratify=y
    )
    return x_train, y_train, x_test, y_test


@pytest.fixture(scope="session")
def digits_trio(digits_split):
    """The digits CNN trained in float, fine-tuned with QAT (as tfmot
    recommends), and the QAT model converted to full int8 with int8 I/O."""
    x_train, y_train, x_test, y_test = digits_split
    keras.utils.set_random_seed(0)
    float_model = compile_classifier(digits_cnn(), 3e-3)
    float_model.fit(
        x_train, y_train, epochs=FLOAT_EPOCHS, batch_size=32, verbose=0
    )
    qat_model = compile_classifier(tflq.quantize_model(float_model), 3e-4)
    qat_model.fit(x_train, y_train, epochs=QAT_EPOCHS, batch_size=32, verbose=0)
    return float_model, qat_model, convert(qat_model)


@pytest.fixture
def tiny_data():
    rng = keras.random.SeedGenerator(0)
    del rng
    import numpy as np

    generator = np.random.default_rng(0)
    x = generator.random((32, 8, 8, 1), dtype="float32")
    y = generator.integers(0, 10, 32).astype("int32")
    return x, y
