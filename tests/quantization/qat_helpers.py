"""Conversion and LiteRT helpers shared by the quantization tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from ai_edge_litert.interpreter import OpResolverType  # noqa: E402

# The conversion module's fix for QAT 16x8 artifacts (int32 conv biases
# where the int16 kernels read int64), used as TFLiteExport uses it.
from keras_tflq.conversion.int16x8_bias import widen_int16x8_conv_bias  # noqa: E402, F401

# The digits CNN and its compile settings, shared with tests/callbacks.
from tests.helpers.models import compile_classifier  # noqa: E402, F401
from tests.helpers.models import digits_cnn  # noqa: E402, F401

L = keras.layers


def convert(model, io_type=tf.int8, int16x8=False):
    """A QAT model converted as the lead's conversion module does."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if int16x8:
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    if io_type is not None:
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    return converter.convert()


def interpreter(content):
    """An interpreter without delegates, so op names are the model's."""
    runner = Interpreter(
        model_content=content,
        experimental_op_resolver_type=(
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        ),
    )
    runner.allocate_tensors()
    return runner


def op_names(content):
    return [op["op_name"] for op in interpreter(content)._get_ops_details()]


def tensor_types(content):
    """{tensor name: numpy dtype name} for every tensor of the model."""
    return {
        t["name"]: np.dtype(t["dtype"]).name
        for t in interpreter(content).get_tensor_details()
    }


def run(content, x):
    """Runs the model on float `x`; returns (float outputs, output scale)."""
    runner = interpreter(content)
    inp = runner.get_input_details()[0]
    out = runner.get_output_details()[0]
    runner.resize_tensor_input(inp["index"], x.shape)
    runner.allocate_tensors()
    scale, zero = inp["quantization"]
    dtype = inp["dtype"]
    if scale:
        info = np.iinfo(dtype)
        x = np.clip(np.round(x / scale + zero), info.min, info.max)
    runner.set_tensor(inp["index"], x.astype(dtype))
    runner.invoke()
    y = runner.get_tensor(out["index"]).astype("float32")
    scale, zero = out["quantization"]
    if scale:
        y = (y - zero) * scale
    return y, scale
