"""16-bit QAT with sigmoid and tanh (TFLite's fixed int16 output grid), and
the export's check that a QAT model's activation bits fit the mode."""

import keras
import numpy as np
import pytest

import keras_tflq as tflq
from keras_tflq import LiteRTModel
from keras_tflq import TFLiteExport
from keras_tflq.conversion.int16x8_bias import fix_int16x8_fixed_range_outputs
from keras_tflq.quantization.default_scheme.default_quantize_config import (
    DefaultQuantizeConfig,
)
from keras_tflq.quantization.default_scheme.fixed_range import (
    FixedRangeQuantizer,
)
from keras_tflq.quantization.quantize import quantized_activation_bits
from tests.helpers.models import op_dtypes
from tests.quantization.qat_helpers import convert
from tests.quantization.qat_helpers import interpreter

L = keras.layers
# TFLite's int16 LOGISTIC and TANH output grid.
_INT16_GRID = (1.0 / 32768.0, 0)


def _qat_model():
    """Dense with `activation="sigmoid"`, an `Activation("tanh")` layer and
    an `Activation("sigmoid")` layer, quantized with 16-bit activations."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,), name="pixels")
    x = L.Dense(32, activation="sigmoid")(inputs)
    x = L.Activation("tanh")(L.Dense(16)(x))
    x = L.Activation("sigmoid")(L.Dense(16)(x))
    model = tflq.quantize_model(
        keras.Model(inputs, L.Dense(10)(x)), activation_bits=16
    )
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


@pytest.fixture(scope="module")
def rows(digits):
    """The digits as rows of 64 pixels."""
    x, y = digits
    return x.reshape(len(x), 64), y


@pytest.fixture(scope="module")
def trained(rows, tmp_path_factory):
    """The QAT model trained with a `TFLiteExport(mode="int16x8")` that
    evaluates its artifact."""
    x, y = rows
    model = _qat_model()
    path = tmp_path_factory.mktemp("export") / "model.tflite"
    export = TFLiteExport(str(path), mode="int16x8", verbose=0)
    model.fit(
        x[:1200],
        y[:1200],
        batch_size=32,
        validation_data=(x[1200:], y[1200:]),
        epochs=5,
        callbacks=[export],
        verbose=0,
    )
    return model


def _fixed_range_outputs(content):
    """`[(op name, dtype, (scale, zero point))]` of the LOGISTIC and TANH
    outputs."""
    runner = interpreter(content)
    tensors = {t["index"]: t for t in runner.get_tensor_details()}
    found = []
    for op in runner._get_ops_details():
        if op["op_name"] in ("LOGISTIC", "TANH"):
            tensor = tensors[op["outputs"][0]]
            found.append(
                (
                    op["op_name"],
                    np.dtype(tensor["dtype"]).name,
                    tensor["quantization"],
                )
            )
    return found


def test_qat_int16x8_export_allocates_is_integer_and_agrees(
    trained, rows, tmp_path
):
    x, y = rows
    path = tmp_path / "sigmoid_tanh.tflite"
    tflq.export_tflite(trained, str(path), mode="int16x8")

    outputs = _fixed_range_outputs(path.read_bytes())
    assert [name for name, _, _ in outputs] == ["LOGISTIC", "TANH", "LOGISTIC"]
    assert all(
        dtype == "int16" and params == _INT16_GRID
        for _, dtype, params in outputs
    )
    # All-integer: every op but the float input's QUANTIZE and the float
    # output's DEQUANTIZE reads and writes integers (int16 activations).
    inner = {
        name: signatures
        for name, signatures in op_dtypes(path).items()
        if name not in ("QUANTIZE", "DEQUANTIZE")
    }
    assert set(inner) == {"FULLY_CONNECTED", "LOGISTIC", "TANH"}
    for signatures in inner.values():
        for inputs, results in signatures:
            assert "float32" not in inputs + results
            assert results[0] == "int16"
    litert = LiteRTModel(model_path=str(path)).predict(x).argmax(-1)
    keras_argmax = trained.predict(x, verbose=0).argmax(-1)
    assert np.mean(litert == keras_argmax) >= 0.99
    assert np.mean(keras_argmax == y) >= 0.8


def test_converter_output_is_refused_until_the_int16_grid_is_set(trained):
    # What the fix is for: the converter gives the int16 LOGISTIC output
    # scale 2^-16 (zero point -32768), which LiteRT refuses.
    content = convert(trained, io_type=None, int16x8=True)
    with pytest.raises(RuntimeError, match=r"1\. / 32768"):
        interpreter(content)
    fixed = fix_int16x8_fixed_range_outputs(content)
    assert [params for _, _, params in _fixed_range_outputs(fixed)] == [
        _INT16_GRID
    ] * 3
    assert fix_int16x8_fixed_range_outputs(fixed) is fixed


def test_sigmoid_and_tanh_outputs_get_the_fixed_grid_in_16_bits_only():
    for activation, bits, expected in [
        ("sigmoid", 8, []),
        ("tanh", 8, []),
        ("sigmoid", 16, [FixedRangeQuantizer(-1.0, 32767 / 32768, 16)]),
        ("tanh", 16, [FixedRangeQuantizer(-1.0, 32767 / 32768, 16)]),
    ]:
        # The plan gives a fixed-range activation no range of its own
        # (`quantize_output=False`); 16 bits still need TFLite's grid.
        config = DefaultQuantizeConfig(
            quantize_output=False, activation_bits=bits
        )
        layer = L.Activation(activation)
        assert config.get_output_quantizers(layer) == expected
    eight_bit = DefaultQuantizeConfig(activation_bits=8)
    learned = eight_bit.get_output_quantizers(L.Activation("sigmoid"))
    assert not isinstance(learned[0], FixedRangeQuantizer)


def test_saved_16_bit_sigmoid_qat_model_reloads(trained, rows, tmp_path):
    x, _ = rows
    path = tmp_path / "qat.keras"
    trained.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        reloaded.predict(x[:64], verbose=0), trained.predict(x[:64], verbose=0)
    )


def test_tflite_export_int16x8_evaluates_a_sigmoid_qat_model(trained):
    history = trained.history.history
    assert history["val_tflite_accuracy"][-1] == pytest.approx(
        history["val_accuracy"][-1], abs=0.01
    )


def _tiny_qat(activation_bits):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), L.Dense(3)])
    return tflq.quantize_model(model, activation_bits=activation_bits)


@pytest.mark.parametrize(
    ("activation_bits", "mode"),
    [(8, "int16x8"), (16, "int8")],
    ids=["8_bit_in_int16x8", "16_bit_in_int8"],
)
def test_export_refuses_a_qat_model_of_the_other_width(
    activation_bits, mode, tmp_path
):
    model = _tiny_qat(activation_bits)
    assert quantized_activation_bits(model) == activation_bits
    expected = 16 if mode == "int16x8" else 8
    match = (
        f"Expected a quantization-aware model with activation_bits="
        f"{expected} for mode='{mode}'. Received: a model quantized with "
        f"activation_bits={activation_bits}"
    )
    with pytest.raises(ValueError, match=match):
        tflq.export_tflite(model, str(tmp_path / "m.tflite"), mode=mode)
    assert not (tmp_path / "m.tflite").exists()

    model.compile("adam", "mse")
    export = TFLiteExport(str(tmp_path / "m.tflite"), mode=mode, verbose=0)
    with pytest.raises(ValueError, match=match):
        model.fit(
            np.zeros((8, 4)), np.zeros((8, 3)), callbacks=[export], verbose=0
        )
    # Refused before the first batch.
    assert int(model.optimizer.iterations) == 0


def test_float_model_has_no_activation_bits():
    model = keras.Sequential([keras.Input((4,)), L.Dense(3)])
    assert quantized_activation_bits(model) is None
