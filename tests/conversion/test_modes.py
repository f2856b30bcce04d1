"""Export modes: checks, calibration needs, and real converter settings."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_tflq import MODES
from keras_tflq import inspect_tflite
from keras_tflq.conversion import modes


def test_modes_from_no_quantization_to_full_integer():
    assert MODES == ("float32", "float16", "dynamic", "int8", "int16x8")


def test_check_mode_names_the_valid_modes():
    assert modes.check_mode("int8") == "int8"
    with pytest.raises(
        ValueError, match=r"Expected mode to be one of \('float32'.*mode='int4'"
    ):
        modes.check_mode("int4")


@pytest.mark.parametrize(
    "mode, quantization_aware, need",
    [
        ("float32", False, "none"),
        ("dynamic", False, "none"),
        ("int8", False, "required"),
        ("int16x8", False, "required"),
        ("int8", True, "optional"),
        ("int16x8", True, "none"),
    ],
)
def test_calibration_need(mode, quantization_aware, need):
    assert modes.calibration_need(mode, quantization_aware) == need


@pytest.mark.parametrize(
    "io_type", ["int8", np.int8, tf.int8], ids=["str", "numpy", "tf"]
)
def test_io_type_accepts_names_and_dtypes(io_type):
    assert modes.check_io_type("int8", io_type, "input_type") == "int8"


def test_io_type_defaults_and_refusals():
    assert modes.check_io_type("int8", None, "input_type") == "int8"
    assert modes.check_io_type("float16", None, "output_type") == "float32"
    with pytest.raises(
        ValueError,
        match=r"Expected input_type to be one of \('int16', 'float32'\) for "
        r"mode='int16x8'. Received: input_type='int8'",
    ):
        modes.check_io_type("int16x8", "int8", "input_type")


def _converted(mode, **options):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    samples = np.random.default_rng(0).random((16, 1, 8, 8, 1), "float32")

    def representative_dataset():
        for sample in samples:
            yield {"image": sample}

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode in ("int8", "int16x8"):
        options.setdefault("representative_dataset", representative_dataset)
    assert modes.configure_converter(converter, mode, **options) is converter
    return inspect_tflite(converter.convert())


def test_float32_leaves_the_converter_alone():
    report = _converted("float32")
    assert set(report["tensor_dtypes"]) == {"float32", "int32"}


def test_float16_stores_float16_weights():
    assert "float16" in _converted("float16")["tensor_dtypes"]


def test_int8_uses_the_requested_io_types():
    report = _converted("int8", input_type="int8", output_type="uint8")
    assert report["all_integer"] is True
    assert report["inputs"][0]["dtype"] == "int8"
    assert report["outputs"][0]["dtype"] == "uint8"


def test_int16x8_has_int16_activations():
    report = _converted("int16x8")
    assert "int16" in report["tensor_dtypes"]
    assert report["inputs"][0]["dtype"] == "float32"
