"""convert_model / convert_and_inspect: real conversions of tiny models."""

import keras
import numpy as np
import pytest

from keras_tflq import ConversionError
from keras_tflq import LiteRTModel
from keras_tflq.conversion.calibration import CalibrationSet
from keras_tflq.conversion.converter import convert_and_inspect
from keras_tflq.conversion.converter import convert_model
from keras_tflq.conversion.data_source import DataSource
from keras_tflq.conversion.model_inputs import ModelInputs
from tests.helpers.models import Sine


def _dense(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,), name="features")
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(hidden))


def _calibration(model, x):
    return CalibrationSet(
        DataSource(x), ModelInputs(model)
    ).representative_dataset


def _assert_same_outputs(content, model, x):
    """A float artifact computes what the Keras model computes."""
    np.testing.assert_allclose(
        LiteRTModel(model_content=content).predict(x),
        model.predict(x, verbose=0),
        rtol=1e-5,
        atol=1e-5,
    )


def test_float32_artifact_computes_what_keras_computes():
    model = _dense()
    x = np.random.default_rng(0).random((16, 6), dtype=np.float32)
    content = convert_model(model, "float32")
    assert isinstance(content, bytes)
    _assert_same_outputs(content, model, x)


def test_inspection_describes_the_returned_bytes():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32,), name="features")
    # 2,048 weights: enough for the converter to quantize them.
    hidden = keras.layers.Dense(64, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(hidden))
    content, inspection = convert_and_inspect(model, "dynamic")
    assert inspection["bytes"] == len(content)
    assert inspection["op_counts"] == {"FULLY_CONNECTED": 2}
    assert inspection["inputs"][0]["name"] == "features"
    # Dynamic range: int8 weights, float activations.
    assert "int8" in inspection["tensor_dtypes"]
    assert inspection["all_integer"] is False


def test_int8_with_calibration_is_all_integer():
    model = _dense()
    x = np.random.default_rng(1).random((32, 6), dtype=np.float32)
    content, inspection = convert_and_inspect(
        model,
        "int8",
        representative_dataset=_calibration(model, x),
        input_type="int8",
        output_type="int8",
    )
    assert inspection["all_integer"] is True
    assert inspection["inputs"][0]["dtype"] == "int8"
    predictions = LiteRTModel(model_content=content).predict(x)
    expected = model.predict(x, verbose=0)
    assert np.mean(predictions.argmax(-1) == expected.argmax(-1)) >= 0.9


def test_dict_inputs_keep_the_input_names():
    keras.utils.set_random_seed(0)
    inputs = {
        "zeta": keras.Input((4,), name="zeta"),
        "alpha": keras.Input((2,), name="alpha"),
    }
    merged = keras.layers.Concatenate()([inputs["zeta"], inputs["alpha"]])
    model = keras.Model(inputs, keras.layers.Dense(3)(merged))
    content, inspection = convert_and_inspect(model, "float32")
    assert sorted(t["name"] for t in inspection["inputs"]) == ["alpha", "zeta"]
    rng = np.random.default_rng(0)
    x = {
        "zeta": rng.random((5, 4), "float32"),
        "alpha": rng.random((5, 2), "float32"),
    }
    _assert_same_outputs(content, model, x)


def _sine_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,), name="features")
    hidden = Sine(name="sine_features")(keras.layers.Dense(4)(inputs))
    return keras.Model(inputs, keras.layers.Dense(2)(hidden), name="sine")


def test_float_op_in_integer_mode_is_refused_with_its_place():
    model = _sine_model()
    x = np.random.default_rng(0).random((16, 4), dtype=np.float32)
    with pytest.raises(
        ConversionError,
        match=r"integer in mode='int8'.*SIN at .*sine_features.*"
        r"allow_float_ops=True",
    ):
        convert_and_inspect(
            model, "int8", representative_dataset=_calibration(model, x)
        )


def test_allow_float_ops_keeps_the_float_op():
    model = _sine_model()
    x = np.random.default_rng(0).random((16, 4), dtype=np.float32)
    _, inspection = convert_and_inspect(
        model,
        "int8",
        representative_dataset=_calibration(model, x),
        allow_float_ops=True,
    )
    float_ops = [op["op"] for op in inspection["float_ops"]]
    assert [op for op in float_ops if op not in ("QUANTIZE", "DEQUANTIZE")] == [
        "SIN"
    ]
