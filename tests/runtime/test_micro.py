"""TensorFlow Lite Micro on the host: op check, arena, agreement with LiteRT."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_tflq.runtime.micro import MicroError
from keras_tflq.runtime.micro import MicroModel
from keras_tflq.runtime.micro import allocates
from keras_tflq.runtime.micro import analyze_micro
from keras_tflq.runtime.micro import check_micro_ops
from keras_tflq.runtime.micro import compare_with_litert
from keras_tflq.runtime.micro import micro_ops
from keras_tflq.runtime.micro import resolver_method
from keras_tflq.runtime.micro import smallest_arena


@pytest.fixture(scope="module")
def gelu_int8():
    """A real int8 artifact with GELU, an op TFLM has no kernel for."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,), name="features")
    x = keras.layers.Dense(6, activation="gelu", name="gelu_dense")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    samples = np.random.default_rng(0).random((32, 8), dtype=np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return model, converter.convert()


@pytest.mark.parametrize(
    "op, method",
    [
        ("CONV_2D", "AddConv2D"),
        ("DEPTHWISE_CONV_2D", "AddDepthwiseConv2D"),
        ("FULLY_CONNECTED", "AddFullyConnected"),
        ("PADV2", "AddPadV2"),
        ("BATCH_MATMUL", "AddBatchMatMul"),
        ("L2_NORMALIZATION", "AddL2Normalization"),
        ("UNIDIRECTIONAL_SEQUENCE_LSTM", "AddUnidirectionalSequenceLSTM"),
        ("TFLite_Detection_PostProcess", "AddDetectionPostprocess"),
    ],
    ids=lambda value: value,
)
def test_resolver_method_names_match_tflm(op, method):
    assert resolver_method(op) == method


@pytest.mark.parametrize(
    "mode_id", ["int8", "int8_uint8_io", "int16x8", "float32"]
)
def test_modes_tflm_runs_agree_with_litert(tflite_content, mode_id):
    _, content = tflite_content("conv", mode_id)
    # Inputs in [0, 1), as the conversion's calibration data.
    x = np.random.default_rng(1).random((16, 1, 8, 8, 3), dtype=np.float32)
    result = compare_with_litert(content, [[sample] for sample in x])
    assert result["samples"] == 16
    (output,) = result["outputs"]
    if mode_id == "float32":
        assert result["agreement"] in ("exact", "float rounding")
        assert output["max_relative_diff"] <= 1e-5
    else:
        assert result["agreement"] in ("exact", "within one quantization step")
        assert output["max_steps"] <= 1.0 + 1e-2


def test_several_inputs_and_outputs_keep_their_order(tflite_content):
    _, content = tflite_content("two_inputs", "int8")
    result = analyze_micro(content)
    assert result["litert_agreement"]["source"] == "random"
    assert result["litert_agreement"]["agreement"] in (
        "exact",
        "within one quantization step",
    )
    _, content = tflite_content("many_outputs", "int8")
    outputs = compare_with_litert(
        content, [[np.zeros((1, 6), np.float32)]]
    )["outputs"]
    assert len(outputs) == 12


def test_smallest_arena_allocates_and_less_does_not(tflite_content):
    _, content = tflite_content("conv", "int8")
    arena = smallest_arena(content)
    assert allocates(content, arena)
    assert not allocates(content, arena - 1)
    assert not allocates(content, arena - max(1024, arena // 10))
    # And the model runs in that arena.
    micro = MicroModel(content, arena)
    (output,) = micro.run([np.zeros((1, 8, 8, 3), np.int8)])
    assert output.shape == (1, 5)


def test_an_arena_small_enough_to_crash_tflm_answers_false():
    # TFLM (2026-10) crashes, not fails, allocating this DS-CNN block in 4 KiB.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((49, 10, 1), name="mfcc")
    x = keras.layers.Conv2D(64, (10, 4), strides=2, padding="same")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(12)(x))
    samples = np.random.default_rng(0).normal(size=(16, 49, 10, 1))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [s[None].astype(np.float32)] for s in samples
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    content = converter.convert()
    assert not allocates(content, 4096)
    arena = smallest_arena(content)
    assert allocates(content, arena) and not allocates(content, arena - 1)


def test_report_lists_resolver_ops_arena_and_flash(tflite_content):
    _, content = tflite_content("conv", "int8")
    result = analyze_micro(content)
    assert result["ops"] == sorted(
        resolver_method(op) for op in result["op_counts"]
    )
    assert {"AddConv2D", "AddFullyConnected"} <= set(result["ops"])
    assert result["arena_bytes"] == smallest_arena(content)
    assert result["flash_bytes"] == len(content)


def test_op_tflm_lacks_is_named_with_its_layer(gelu_int8):
    model, content = gelu_int8
    assert "GELU" in {op["op"] for op in micro_ops(content)}
    layers = [layer.name for layer in model.layers]
    with pytest.raises(MicroError, match=r"op GELU of layer 'gelu_dense'"):
        check_micro_ops(content, layers)
    # Without the Keras model, the tensor name still points at the layer.
    expected = r"op GELU \(output tensor '.*gelu_dense"
    with pytest.raises(MicroError, match=expected):
        check_micro_ops(content)


@pytest.mark.parametrize(
    "mode_id, diagnostic",
    [
        ("dynamic", r"FULLY_CONNECTED.*FLOAT32 with filter type: INT8"),
        ("float16", r"DEQUANTIZE.*kTfLiteInt8"),
    ],
    ids=["dynamic", "float16"],
)
def test_modes_tflm_cannot_run_are_named(tflite_content, mode_id, diagnostic):
    # The dense model's 32x48 kernel is large enough for dynamic range.
    _, content = tflite_content("dense", mode_id)
    with pytest.raises(MicroError, match=diagnostic):
        check_micro_ops(content, ["hidden", "logits"])
