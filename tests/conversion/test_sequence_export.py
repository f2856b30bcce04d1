"""Keras 3 recurrent models exported to TFLite: fused LSTM, unrolled GRU/RNN."""

import json

import keras
import numpy as np
import pytest

import keras_tflq
from keras_tflq.conversion.converter import convert_and_inspect
from keras_tflq.conversion.errors import ConversionError
from keras_tflq.conversion.sequence_checks import check_sequence_lengths
from keras_tflq.conversion.sequence_checks import recurrent_layers
from keras_tflq.conversion.sequence_export import FUSED_LSTM
from keras_tflq.conversion.sequence_export import UNROLLED
from keras_tflq.runtime.litert_model import LiteRTModel

L = keras.layers
STEPS, FEATURES = 8, 8
_FORBIDDEN = ("WHILE", "FlexTensorList", "TensorList", "Flex")
# Largest |TFLite - Keras| per mode, on outputs of magnitude ~0.5.
_TOLERANCE = {
    "float32": 1e-4,
    "float16": 5e-3,
    "dynamic": 5e-2,
    "int8": 0.15,
    "int16x8": 2e-2,
}


def _model(kind):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((STEPS, FEATURES), name="sequence")
    if kind == "lstm":
        x = L.LSTM(16, name="rnn")(inputs)
    elif kind == "stacked_lstm":
        x = L.LSTM(16, return_sequences=True, name="rnn_1")(inputs)
        x = L.LSTM(12, name="rnn_2")(x)
    elif kind == "gru":
        x = L.GRU(16, name="rnn")(inputs)
    elif kind == "gru_reset_before":
        x = L.GRU(16, reset_after=False, return_sequences=True, name="rnn")(
            inputs
        )
        x = L.Flatten()(x)
    elif kind == "simple_rnn":
        x = L.SimpleRNN(16, name="rnn")(inputs)
    elif kind == "bidirectional_lstm":
        # return_sequences: the backward output comes back reversed.
        x = L.Bidirectional(
            L.LSTM(8, return_sequences=True, name="rnn"), name="bi"
        )(L.TimeDistributed(L.Dense(6, activation="relu"))(inputs))
        x = L.Flatten()(x)
    elif kind == "relu_lstm":
        x = L.LSTM(16, activation="relu", name="rnn")(inputs)
    outputs = L.Dense(4, name="logits")(x)
    return keras.Model(inputs, outputs, name=kind)


@pytest.fixture(scope="module")
def data():
    return np.random.RandomState(1).rand(48, STEPS, FEATURES).astype("float32")


_ONE_FUSED = {"rnn": FUSED_LSTM}
_BOTH_FUSED = {"bi/forward_rnn": FUSED_LSTM, "bi/backward_rnn": FUSED_LSTM}
_CASES = [
    ("lstm", "float32", _ONE_FUSED),
    ("lstm", "float16", _ONE_FUSED),
    ("lstm", "dynamic", _ONE_FUSED),
    ("lstm", "int8", _ONE_FUSED),
    ("lstm", "int16x8", {"rnn": UNROLLED}),
    ("stacked_lstm", "int8", {"rnn_1": FUSED_LSTM, "rnn_2": FUSED_LSTM}),
    ("gru", "int8", {"rnn": UNROLLED}),
    ("gru_reset_before", "float32", {"rnn": UNROLLED}),
    ("simple_rnn", "int8", {"rnn": UNROLLED}),
    ("bidirectional_lstm", "int8", _BOTH_FUSED),
    ("relu_lstm", "float32", {"rnn": UNROLLED}),
]


@pytest.mark.parametrize(
    "kind, mode, paths", _CASES, ids=[f"{k}-{m}" for k, m, _ in _CASES]
)
def test_recurrent_model_exports_without_loops(
    kind, mode, paths, data, tmp_path
):
    model = _model(kind)
    path = str(tmp_path / f"{kind}_{mode}.tflite")
    report = keras_tflq.export_tflite(
        model,
        path,
        mode=mode,
        calibration_data=data,
        input_type="float32",
        output_type="float32",
    )
    ops = report["op_counts"]
    assert not [op for op in ops if op.startswith(_FORBIDDEN)], ops
    assert report["sequence_layers"] == paths
    fused = sum(path == FUSED_LSTM for path in paths.values())
    assert ops.get("UNIDIRECTIONAL_SEQUENCE_LSTM", 0) == fused
    if mode in ("int8", "int16x8"):
        assert report["all_integer"], report["tensor_dtypes"]
    if mode == "int8" and fused:
        # TFLite's int8 LSTM keeps its cell state in int16, as the spec says.
        assert "int16" in report["tensor_dtypes"]
    if kind == "lstm" and mode == "int8":
        _assert_tflites_integer_lstm(path)
    with open(path[: -len(".tflite")] + ".json") as file:
        assert json.load(file)["sequence_layers"] == paths
    # Batch-1 artifact, run one sample per invoke: the fused op keeps its
    # state in variable tensors, which LiteRTModel resets before each one.
    got = LiteRTModel(model_path=path).predict(data)
    want = model.predict(data, verbose=0)
    assert np.abs(got - want).max() < _TOLERANCE[mode]


def test_recurrent_layers_found_inside_wrappers_and_nested_models():
    inner = keras.Sequential(
        [
            keras.Input((STEPS, FEATURES)),
            L.GRU(4, return_sequences=True, name="gru"),
        ],
        name="encoder",
    )
    inputs = keras.Input((STEPS, FEATURES))
    x = L.Bidirectional(L.LSTM(4, name="lstm"), name="bidirectional")(
        inner(inputs)
    )
    model = keras.Model(inputs, L.Dense(2)(x))
    names = [name for name, _ in recurrent_layers(model)]
    assert names == [
        "encoder/gru",
        "bidirectional/forward_lstm",
        "bidirectional/backward_lstm",
    ]


def test_dynamic_time_axis_is_refused_naming_the_input_and_the_fix():
    inputs = keras.Input((None, FEATURES), name="frames")
    model = keras.Model(inputs, L.Dense(2)(L.LSTM(4, name="lstm")(inputs)))
    with pytest.raises(
        ValueError,
        match=r"Expected input 'frames' .* fixed sequence length.*"
        r"LSTM 'lstm'.*Received: shape=\(None, None, 8\).*"
        r"keras.Input\(shape=\(timesteps, 8\)\)",
    ):
        check_sequence_lengths(model)


def test_dynamic_time_axis_fails_in_on_train_begin_before_any_batch(tmp_path):
    inputs = keras.Input((None, FEATURES), name="frames")
    model = keras.Model(inputs, L.Dense(2)(L.SimpleRNN(4)(inputs)))
    model.compile("adam", "mse")
    seen = []
    counter = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: seen.append(batch)
    )
    export = keras_tflq.TFLiteExport(
        str(tmp_path / "rnn.tflite"), mode="float32", check_conversion=False
    )
    x = np.zeros((8, STEPS, FEATURES), "float32")
    with pytest.raises(ValueError, match="Expected input 'frames'"):
        model.fit(
            x, np.zeros((8, 2)), callbacks=[export, counter], verbose=0
        )
    assert seen == []


def test_fit_exports_an_lstm_model_in_int8_with_its_tflite_score(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.RandomState(0)
    x = rng.rand(96, STEPS, FEATURES).astype("float32")
    y = (x[:, :, 0].mean(axis=1) > 0.5).astype("int32")
    model = keras.Sequential(
        [keras.Input((STEPS, FEATURES)), L.LSTM(8, name="rnn"), L.Dense(2)],
        name="seq",
    )
    model.compile(
        keras.optimizers.Adam(0.02),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    export = keras_tflq.TFLiteExport(
        str(tmp_path / "seq.tflite"), mode="int8", check_conversion=False
    )
    history = model.fit(
        x, y, validation_split=0.25, epochs=2, callbacks=[export], verbose=0
    )
    assert export.report["sequence_layers"] == _ONE_FUSED
    assert export.report["all_integer"]
    keras_accuracy = history.history["val_accuracy"][-1]
    tflite_accuracy = history.history["val_tflite_accuracy"][-1]
    assert abs(keras_accuracy - tflite_accuracy) <= 1 / 24 + 1e-6


def _qat_lstm():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((STEPS, FEATURES), name="sequence")
    model = keras.Model(inputs, L.Dense(2)(L.LSTM(4, name="rnn")(inputs)))
    qat = keras_tflq.quantize_model(model)
    qat.compile("adam", "mse")
    return qat


@pytest.mark.parametrize(
    "mode, message",
    [
        (
            "int8",
            r"Expected calibration data for mode='int8' on a "
            r"quantization-aware model with recurrent layers \(LSTM "
            r"'quant_rnn/rnn'\).*validation_data=",
        ),
        (
            "int16x8",
            r"Expected a float model for mode='int16x8' with recurrent "
            r"layers: .*internal tensors.*have none, so it leaves those ops "
            r"in float.*Received: quantization-aware model .* \(LSTM "
            r"'quant_rnn/rnn'\)\. Export the float model \(before "
            r"quantize_model\) with mode='int16x8'.*mode='int8'",
        ),
    ],
    ids=["int8_without_validation_data", "int16x8"],
)
def test_qat_recurrent_export_refused_before_the_first_batch(
    mode, message, tmp_path
):
    qat = _qat_lstm()
    seen = []
    counter = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: seen.append(batch)
    )
    export = keras_tflq.TFLiteExport(str(tmp_path / "qat.tflite"), mode=mode)
    x = np.zeros((8, STEPS, FEATURES), "float32")
    with pytest.raises(ValueError, match=message):
        qat.fit(x, np.zeros((8, 2)), callbacks=[export, counter], verbose=0)
    assert seen == []
    with pytest.raises(ValueError, match="quantization-aware model with"):
        keras_tflq.export_tflite(qat, str(tmp_path / "qat2.tflite"))


def test_converter_leaves_16_bit_qat_recurrent_cells_in_float():
    """Why a QAT recurrent model is refused in int16x8: TF 2.21's converter
    quantizes it from fake quant only and leaves the cell's own ops
    float. If this starts to pass, the refusal can be lifted."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((STEPS, FEATURES), name="sequence")
    model = keras.Model(inputs, L.Dense(2)(L.SimpleRNN(4, name="rnn")(inputs)))
    qat = keras_tflq.quantize_model(model, activation_bits=16)
    with pytest.raises(
        ConversionError, match=r"op\(s\) left in float: .*FULLY_CONNECTED"
    ):
        convert_and_inspect(qat, "int16x8", isolate=False)


# UNIDIRECTIONAL_SEQUENCE_LSTM's inputs, by TFLite's schema.
_LSTM_INPUT, _LSTM_WEIGHTS, _LSTM_BIASES = 0, range(1, 9), range(12, 16)
_LSTM_INPUT_WEIGHTS = range(1, 5)  # Input to each gate; 5-8: recurrent.
_LSTM_OUTPUT_STATE, _LSTM_CELL_STATE = 18, 19


def _fused_lstm(path):
    """The interpreter, and the fused op's details, of an artifact whose
    one fused LSTM has int8 weights, per tensor, symmetric, constant."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    ops = interpreter._get_ops_details()
    (op,) = [o for o in ops if o["op_name"] == "UNIDIRECTIONAL_SEQUENCE_LSTM"]
    produced = {int(i) for o in ops for i in o["outputs"]}
    for position in _LSTM_WEIGHTS:
        weights, weights_q = _tensor(interpreter, op, position)
        assert weights["dtype"] == np.int8
        assert weights["index"] not in produced  # A constant buffer.
        assert list(weights_q["zero_points"]) == [0]  # Symmetric.
        assert len(weights_q["scales"]) == 1
    return interpreter, op


def _tensor(interpreter, op, position):
    details = interpreter._get_tensor_details(int(op["inputs"][position]), 0)
    return details, details["quantization_parameters"]


def _lstm_model(units, features):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((STEPS, features)),
            L.LSTM(units, name="rnn"),
            L.Dense(4, name="logits"),
        ],
        name=f"lstm_{units}",
    )


def _assert_tflites_integer_lstm(path):
    """The int8 fused LSTM is TFLite's full-integer LSTM.

    The route TFLite's kernel takes is set by these tensors: int8
    activations and weights select the 8x8_16 integer LSTM (the one
    tf_keras' own LSTM converts to, tensor for tensor: see
    `bench/sequence_models.py --lstm-sweep`); on x86 its code is TFLite's
    portable C, which is why it runs slower there than the unrolled graph
    (docs/quantization.md). Nothing is left for the kernel to requantize
    or recompute per invoke: constant symmetric weights, biases at input
    scale x weight scale, an int16 cell state at a power-of-two scale.
    """
    interpreter, op = _fused_lstm(path)
    sequence, sequence_q = _tensor(interpreter, op, _LSTM_INPUT)
    assert sequence["dtype"] == np.int8
    for weights, bias in zip(_LSTM_INPUT_WEIGHTS, _LSTM_BIASES, strict=True):
        _, weights_q = _tensor(interpreter, op, weights)
        bias, bias_q = _tensor(interpreter, op, bias)
        assert bias["dtype"] == np.int32
        assert list(bias_q["zero_points"]) == [0]
        np.testing.assert_allclose(
            bias_q["scales"],
            sequence_q["scales"] * weights_q["scales"],
            rtol=1e-3,
        )
    output_state, _ = _tensor(interpreter, op, _LSTM_OUTPUT_STATE)
    assert output_state["dtype"] == np.int8
    cell_state, cell_q = _tensor(interpreter, op, _LSTM_CELL_STATE)
    assert cell_state["dtype"] == np.int16
    assert list(cell_q["zero_points"]) == [0]
    (cell_scale,) = cell_q["scales"]
    assert np.log2(cell_scale) == np.round(np.log2(cell_scale))
    (output,) = op["outputs"]
    assert interpreter._get_tensor_details(int(output), 0)["dtype"] == np.int8


def test_dynamic_fused_lstm_is_tflites_hybrid_lstm(tmp_path):
    # mode="dynamic": int8 weights, float activations. TFLite runs this
    # hybrid LSTM with vectorized matrix products (SSE on x86), so the
    # fused artifact is as small as the int8 one and runs at float speed
    # (docs/quantization.md). Weights of fewer than 1024 values stay float:
    # 32 units x 32 features.
    path = str(tmp_path / "lstm_dynamic.tflite")
    keras_tflq.export_tflite(_lstm_model(32, 32), path, mode="dynamic")
    interpreter, op = _fused_lstm(path)
    sequence, _ = _tensor(interpreter, op, _LSTM_INPUT)
    assert sequence["dtype"] == np.float32
