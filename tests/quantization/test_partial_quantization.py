"""A partly annotated model: QAT ranges where learned, calibration elsewhere."""

import keras
import numpy as np
import tensorflow as tf
from qat_helpers import L
from qat_helpers import op_names
from qat_helpers import tensor_types

import keras_tflq as tflq


def _partly_annotated():
    inputs = keras.Input((8, 8, 1))
    x = tflq.quantize_annotate_layer(L.Conv2D(4, 3))(inputs)
    x = L.Conv2D(4, 3)(x)  # left in float by the user
    x = L.Flatten()(x)
    outputs = tflq.quantize_annotate_layer(L.Dense(3))(x)
    return tflq.quantize_apply(keras.Model(inputs, outputs))


def _converter(model):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter


def test_unannotated_ops_stay_float_without_calibration():
    model = _partly_annotated()
    x = np.random.default_rng(0).random((16, 8, 8, 1), dtype="float32")
    model(x, training=True)
    content = _converter(model).convert()
    assert "float32" in tensor_types(content).values()
    assert "DEQUANTIZE" in op_names(content)


def test_calibration_data_completes_a_partly_quantized_model():
    model = _partly_annotated()
    x = np.random.default_rng(0).random((16, 8, 8, 1), dtype="float32")
    model(x, training=True)
    converter = _converter(model)
    converter.representative_dataset = lambda: (
        [x[i : i + 1]] for i in range(16)
    )
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    content = converter.convert()
    assert set(tensor_types(content).values()) <= {"int8", "int32"}
    ops = op_names(content)
    assert "QUANTIZE" not in ops and "DEQUANTIZE" not in ops
