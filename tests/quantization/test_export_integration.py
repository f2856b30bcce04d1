"""TFLiteExport on a QAT model: learned ranges, no calibration needed."""

import keras
import numpy as np
import pytest
from qat_helpers import compile_classifier
from qat_helpers import digits_cnn
from qat_helpers import op_names
from qat_helpers import run
from qat_helpers import tensor_types

import keras_tflq as tflq


@pytest.mark.parametrize(
    "mode, io_type, types",
    [
        ("int8", "int8", {"int8", "int32"}),
        ("int16x8", "int16", {"int8", "int16", "int32", "int64"}),
    ],
    ids=["int8", "int16x8"],
)
def test_tflite_export_converts_qat_model(
    tmp_path, digits_split, mode, io_type, types
):
    x_train, y_train, x_test, _ = digits_split
    keras.utils.set_random_seed(0)
    bits = 16 if mode == "int16x8" else 8
    model = compile_classifier(
        tflq.quantize_model(digits_cnn(), activation_bits=bits), 3e-3
    )
    export = tflq.TFLiteExport(
        filepath=str(tmp_path / "{name}_{mode}.tflite"),
        mode=mode,
        input_type=io_type,
        output_type=io_type,
        verbose=0,
    )
    # No validation data: a QAT model needs no calibration.
    model.fit(
        x_train,
        y_train,
        epochs=3,
        batch_size=32,
        callbacks=[export],
        verbose=0,
    )
    content = open(export.exported_path, "rb").read()
    assert set(tensor_types(content).values()) <= types
    ops = op_names(content)
    assert "DEQUANTIZE" not in ops and "QUANTIZE" not in ops
    tflite_logits, _ = run(content, x_test)
    keras_logits = model.predict(x_test, verbose=0)
    assert np.mean(tflite_logits.argmax(1) == keras_logits.argmax(1)) >= 0.99
