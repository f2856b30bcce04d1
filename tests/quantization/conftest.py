"""A trained float/QAT/int8 trio on the digits, shared by the tests.

The digits themselves (`digits_split`) come from tests/conftest.py."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402
from qat_helpers import compile_classifier  # noqa: E402
from qat_helpers import convert  # noqa: E402
from qat_helpers import digits_cnn  # noqa: E402

import keras_tflq as tflq  # noqa: E402

FLOAT_EPOCHS = 20
QAT_EPOCHS = 3


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
