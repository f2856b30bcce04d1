"""The int64 bias fix for quantization-aware 16x8 artifacts."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_tflq as tflq
from keras_tflq import LiteRTModel
from keras_tflq import inspect_tflite
from keras_tflq.runtime.tensor_io import tensor_summary


@pytest.fixture(scope="module")
def qat_16x8():
    """A trained QAT 16x8 model, its data, and its converter output."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(x))
    model = tflq.quantize_model(
        keras.Model(inputs, outputs), activation_bits=16
    )
    model.compile("adam", "mse")
    x = np.random.default_rng(0).random((32, 8, 8, 1), dtype=np.float32)
    model.fit(x, np.zeros((32, 3)), epochs=1, verbose=0)
    return model, x, _convert_16x8(model)


def _convert_16x8(model):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
    ]
    return converter.convert()


def _bias_dtypes(content):
    """The dtypes of the conv biases (input 2 of CONV_2D/DEPTHWISE_CONV_2D)."""
    model = LiteRTModel(model_content=content, preserve_all_tensors=True)
    interpreter = model._interpreter
    by_index = {d["index"]: d for d in interpreter.get_tensor_details()}
    dtypes = []
    for op in interpreter._get_ops_details():
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            bias = by_index[op["inputs"][2]]
            dtypes.append(tensor_summary(bias)["dtype"])
    return dtypes


def test_qat_16x8_conv_biases_become_int64_and_the_artifact_runs(qat_16x8):
    model, x, content = qat_16x8
    # What the fix is for: LiteRT's int16 depthwise kernel wants int64.
    with pytest.raises(RuntimeError, match="bias->type != kTfLiteInt64"):
        LiteRTModel(model_content=content)
    fixed = tflq.widen_int16x8_conv_bias(content)
    assert fixed != content
    assert _bias_dtypes(fixed) == ["int64", "int64"]
    predictions = LiteRTModel(model_content=fixed).predict(x)
    expected = model.predict(x, verbose=0)
    assert np.abs(predictions - expected).max() <= 0.05 * (
        np.abs(expected).max() + 1e-3
    )


def test_artifact_without_int32_conv_bias_is_returned_unchanged(qat_16x8):
    model, _, content = qat_16x8
    fixed = tflq.widen_int16x8_conv_bias(content)
    assert tflq.widen_int16x8_conv_bias(fixed) is fixed
    float_content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    assert tflq.widen_int16x8_conv_bias(float_content) is float_content
    assert inspect_tflite(float_content)["bytes"] == len(float_content)
