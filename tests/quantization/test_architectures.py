"""keras.applications architectures: quantize_model, then a full-int8 export."""

import keras
import numpy as np
import pytest
from qat_helpers import convert
from qat_helpers import op_names
from qat_helpers import tensor_types

import keras_tflq as tflq

A = keras.applications
SHAPE = (32, 32, 3)
ARCHITECTURES = {
    "MobileNetV2": lambda: A.MobileNetV2(
        input_shape=SHAPE, weights=None, classes=10
    ),
    "MobileNetV3Small": lambda: A.MobileNetV3Small(
        input_shape=SHAPE,
        weights=None,
        classes=10,
        include_preprocessing=False,
    ),
    "EfficientNetB0": lambda: A.EfficientNetB0(
        input_shape=SHAPE, weights=None, classes=10
    ),
    "ResNet50": lambda: A.ResNet50(input_shape=SHAPE, weights=None, classes=10),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "build", ARCHITECTURES.values(), ids=ARCHITECTURES.keys()
)
def test_architecture_exports_full_int8(build):
    keras.utils.set_random_seed(0)
    qat = tflq.quantize_model(build())
    x = np.random.default_rng(0).random((4,) + SHAPE, dtype="float32")
    qat(x, training=True)  # one training-mode step sets every range
    content = convert(qat)
    types = tensor_types(content)
    assert set(types.values()) <= {"int8", "int32"}, {
        name: t for name, t in types.items() if t not in ("int8", "int32")
    }
    ops = op_names(content)
    assert "QUANTIZE" not in ops and "DEQUANTIZE" not in ops
