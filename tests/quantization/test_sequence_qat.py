"""`quantize_model` on recurrent and Embedding models, on real data (digits
rows as sequences, pixel intensities as tokens), to full int8."""

import keras
import numpy as np
import pytest
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

import keras_tflq as tflq
from keras_tflq.conversion.lstm_state import align_lstm_hidden_state
from keras_tflq.conversion.sequence_export import FUSED_LSTM
from keras_tflq.conversion.sequence_export import UNROLLED
from keras_tflq.quantization.default_scheme import registry
from keras_tflq.quantization.default_scheme.gate_quantizer import GateQuantizer
from keras_tflq.quantization.default_scheme.registry import Kind
from keras_tflq.quantization.default_scheme.sequence_configs import (
    FixedRangeQuantizer,
)
from keras_tflq.quantization.default_scheme.time_distributed_config import (
    TimeDistributedQuantizeConfig,
)
from keras_tflq.quantization.quantizers import LastValueQuantizer
from keras_tflq.runtime.litert_model import LiteRTModel
from tests.helpers.models import op_dtypes

L = keras.layers
_FUSED_LSTM_OP = schema.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM


@pytest.fixture(scope="module")
def digits_views(digits_split):
    """The digits as 8 rows x 8 features and as 64 tokens (0-16)."""
    x_train, y_train, x_test, y_test = digits_split
    rows = x_train[..., 0], x_test[..., 0]
    tokens = [np.round(x * 16).astype("int32").reshape(-1, 64) for x in rows]
    return {
        "rows": (rows[0], y_train, rows[1], y_test),
        "tokens": (tokens[0], y_train, tokens[1], y_test),
    }


def _model(kind):
    keras.utils.set_random_seed(0)
    if kind == "embedding":
        inputs = keras.Input((64,), dtype="int32", name="pixels")
        x = L.Flatten()(L.Embedding(17, 4, name="embedding")(inputs))
    else:
        inputs = keras.Input((8, 8), name="rows")
        x = {
            "lstm": lambda: L.LSTM(16, name="rnn"),
            "gru": lambda: L.GRU(16, name="rnn"),
            "simple_rnn": lambda: L.SimpleRNN(16, name="rnn"),
            "bidirectional_lstm": lambda: L.Bidirectional(
                L.LSTM(8, name="rnn"), name="bi"
            ),
        }[kind]()(
            L.TimeDistributed(L.Dense(8, activation="relu"), name="td")(inputs)
            if kind == "bidirectional_lstm"
            else inputs
        )
    outputs = L.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs, name=kind)
    return _compile(model, 1e-2)


def _compile(model, learning_rate):
    model.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


_CASES = {
    "lstm": {"quant_rnn/rnn": FUSED_LSTM},
    "gru": {"quant_rnn/rnn": UNROLLED},
    "simple_rnn": {"quant_rnn/rnn": UNROLLED},
    "bidirectional_lstm": {
        "quant_bi/bi/forward_rnn": FUSED_LSTM,
        "quant_bi/bi/backward_rnn": FUSED_LSTM,
    },
    "embedding": None,
}


@pytest.fixture(scope="module", params=list(_CASES), ids=list(_CASES))
def trained(request, digits_views, tmp_path_factory):
    """Float training, then `quantize_model` (no annotation) and QAT with
    an int8 export in the same fit(), calibrated on its validation data."""
    kind = request.param
    view = digits_views["tokens" if kind == "embedding" else "rows"]
    x_train, y_train, x_test, y_test = view
    model = _model(kind)
    model.fit(x_train, y_train, batch_size=32, epochs=5, verbose=0)
    float_accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    qat = _compile(tflq.quantize_model(model), 1e-3)
    folder = tmp_path_factory.mktemp(kind)
    export = tflq.TFLiteExport(
        mode="int8",
        filepath=str(folder / f"{kind}_qat.tflite"),
        evaluate=False,
        check_conversion=False,
    )
    qat.fit(
        x_train,
        y_train,
        batch_size=32,
        epochs=1,
        validation_data=(x_test, y_test),
        callbacks=[export],
        verbose=0,
    )
    return kind, float_accuracy, qat, export, view


def test_quantize_model_exports_full_int8_by_each_layers_path(trained):
    kind, _, qat, export, _ = trained
    report = export.report
    assert report["all_integer"], report["tensor_dtypes"]
    # The fused LSTM's cell state is int16, as TFLite's spec says; no
    # other layer has a 16-bit tensor.
    assert ("int16" in report["tensor_dtypes"]) == ("lstm" in kind)
    assert report.get("sequence_layers") == _CASES[kind]
    assert not [op for op in report["op_counts"] if "WHILE" in op]
    wrapped = [layer for layer in qat.layers if layer.name.startswith("quant_")]
    assert wrapped, "quantize_model quantized no layer"
    # Each fused LSTM writes `h` on one grid: its output's, its output
    # state's and its hidden intermediate's (align_lstm_hidden_state).
    grids = _hidden_state_grids(export.exported_path)
    assert len(grids) == (2 if kind == "bidirectional_lstm" else (
        1 if kind == "lstm" else 0
    ))
    for output, state, hidden in grids:
        assert state == output and hidden == output
    # QAT fake-quantized each Dense kernel with one range; the calibrated
    # export keeps it per tensor (the converter would requantize it per
    # channel, off that grid).
    assert set(_kernel_scale_counts(export.exported_path)) == {1}
    if kind in ("gru", "simple_rnn"):
        # The gates' fake quant has TFLite's fixed ranges: the converter
        # kept them, with no requantization in between.
        expected = {"TANH": {(1 / 128, 0)}}
        if kind == "gru":
            expected["LOGISTIC"] = {(1 / 256, -128)}
        assert _activation_scales(export.exported_path) == expected
        assert "QUANTIZE" not in report["op_counts"]


def _hidden_state_grids(path):
    """Per fused LSTM: the (scale, zero point) of its output, its output
    state and its hidden intermediate."""
    model = flatbuffer_utils.read_model(path)
    subgraph = model.subgraphs[0]
    grids = []
    for op in subgraph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if code.builtinCode != _FUSED_LSTM_OP:
            continue
        tensors = (op.outputs[0], op.inputs[18], op.intermediates[4])
        grids.append([_grid(subgraph.tensors[i]) for i in tensors])
    return grids


def _kernel_scale_counts(path):
    """How many scales each FULLY_CONNECTED kernel has."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    counts = []
    for op in interpreter._get_ops_details():
        if op["op_name"] == "FULLY_CONNECTED":
            kernel = interpreter._get_tensor_details(op["inputs"][1], 0)
            scales = kernel["quantization_parameters"]["scales"]
            counts.append(len(scales))
    return counts


def _grid(tensor):
    quantization = tensor.quantization
    return float(quantization.scale[0]), int(quantization.zeroPoint[0])


def _shift_output_states(content):
    """The artifact with each fused LSTM's output state moved off its
    output's grid, as the converter left it (measured: zero point -1
    for 0, scales up to 0.25 % apart)."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    subgraph = model.subgraphs[0]
    for op in subgraph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if code.builtinCode == _FUSED_LSTM_OP:
            quantization = subgraph.tensors[op.inputs[18]].quantization
            quantization.scale = [quantization.scale[0] * 1.0025]
            quantization.zeroPoint = [quantization.zeroPoint[0] - 1]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def test_a_shifted_lstm_state_grid_changes_results_and_is_realigned(
    trained,
):
    kind, _, _, export, view = trained
    with open(export.exported_path, "rb") as file:
        content = file.read()
    # Nothing to change in the export: the same bytes come back.
    assert align_lstm_hidden_state(content) is content
    if "lstm" not in kind:
        return
    x_test = view[2][:100]
    want = LiteRTModel(model_content=content).predict(x_test)
    shifted = _shift_output_states(content)
    # A state read a grid step off changes what the artifact computes.
    got = LiteRTModel(model_content=shifted).predict(x_test)
    assert not np.array_equal(got, want)
    fixed = align_lstm_hidden_state(shifted)
    np.testing.assert_array_equal(
        LiteRTModel(model_content=fixed).predict(x_test), want
    )


def _activation_scales(path):
    """`{op: {(scale, zero point)}}` of the LOGISTIC and TANH outputs."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    scales = {}
    for op in interpreter._get_ops_details():
        if op["op_name"] in ("LOGISTIC", "TANH"):
            tensor = interpreter._get_tensor_details(op["outputs"][0], 0)
            scales.setdefault(op["op_name"], set()).add(tensor["quantization"])
    return scales


def test_qat_int8_within_one_point_of_float_and_agrees(trained):
    kind, float_accuracy, qat, export, view = trained
    x_test, y_test = view[2:]
    tflite = LiteRTModel(model_path=export.exported_path).predict(x_test)
    tflite_accuracy = np.mean(tflite.argmax(1) == y_test)
    assert tflite_accuracy >= float_accuracy - 0.01
    agreement = np.mean(
        tflite.argmax(1) == qat.predict(x_test, verbose=0).argmax(1)
    )
    assert agreement >= 0.99


def test_embedding_int16x8_qat_exports_an_int16_table_and_agrees(
    digits_views, tmp_path
):
    x_train, y_train, x_test, _ = digits_views["tokens"]
    model = _model("embedding")
    model.fit(x_train, y_train, batch_size=32, epochs=3, verbose=0)
    qat = _compile(tflq.quantize_model(model, activation_bits=16), 1e-3)
    export = tflq.TFLiteExport(
        mode="int16x8",
        filepath=str(tmp_path / "embedding_qat16.tflite"),
        evaluate=False,
        check_conversion=False,
    )
    qat.fit(
        x_train, y_train, batch_size=32, epochs=1, callbacks=[export],
        verbose=0,
    )
    assert export.report["all_integer"], export.report["tensor_dtypes"]
    ops = op_dtypes(export.exported_path)
    # The lookup's output is the Dense's 16-bit input: an int8 table
    # would hand int8 values to the int16 FULLY_CONNECTED.
    assert ops["GATHER"] == {(("int16", "int32"), ("int16",))}
    for inputs, outputs in ops["FULLY_CONNECTED"]:
        assert inputs[:2] == ("int16", "int8") and outputs == ("int16",)
    tflite = LiteRTModel(model_path=export.exported_path).predict(x_test)
    keras_qat = qat.predict(x_test, verbose=0)
    assert np.mean(tflite.argmax(1) == keras_qat.argmax(1)) >= 0.99


@pytest.mark.parametrize(
    "layer, kind",
    [
        (L.LSTM(2), Kind.RECURRENT),
        (L.GRU(2, activation="relu"), Kind.RECURRENT),
        (L.Bidirectional(L.SimpleRNN(2)), Kind.RECURRENT),
        (L.GRU(2, activation="elu"), None),
        (L.TimeDistributed(L.Dense(2)), Kind.TIME_DISTRIBUTED),
        (L.TimeDistributed(L.Dense(2, activation="gelu")), None),
        (L.TimeDistributed(L.Flatten()), None),
        (L.Embedding(3, 2), Kind.EMBEDDING),
    ],
    ids=[
        "lstm", "gru_relu", "bi_rnn", "gru_elu", "td_dense", "td_gelu",
        "td_flatten", "embedding",
    ],
)
def test_sequence_layers_are_rows_of_the_table(layer, kind):
    assert registry.kind(layer) is kind


def test_sequence_configs_round_trip_and_check_their_layer():
    config = tflq.RecurrentQuantizeConfig(activation_bits=16)
    restored = tflq.RecurrentQuantizeConfig.from_config(config.get_config())
    assert restored.get_config() == {
        "weight_bits": 8,
        "activation_bits": 16,
        "quantize_output": True,
    }
    quantizer = FixedRangeQuantizer(-1.0, 127 / 128)
    assert FixedRangeQuantizer.from_config(quantizer.get_config()) == quantizer
    dense = L.Dense(2)
    dense.build((None, 3))
    wrapped = TimeDistributedQuantizeConfig(registry.default_config(dense))
    again = TimeDistributedQuantizeConfig(**wrapped.get_config())
    assert again.config.get_config() == wrapped.config.get_config()
    with pytest.raises(ValueError, match="Received: activation_bits=4"):
        tflq.RecurrentQuantizeConfig(activation_bits=4)
    table = tflq.EmbeddingQuantizeConfig(activation_bits=16)
    again = tflq.EmbeddingQuantizeConfig.from_config(table.get_config())
    assert again.get_config() == {"activation_bits": 16}
    # A config saved before `activation_bits` existed: the int8 table.
    assert tflq.EmbeddingQuantizeConfig.from_config({}).activation_bits == 8
    with pytest.raises(ValueError, match="Received: activation_bits=4"):
        tflq.EmbeddingQuantizeConfig(activation_bits=4)
    with pytest.raises(ValueError, match="Received: weight_bits=4"):
        tflq.RecurrentWeightsQuantizeConfig(weight_bits=4)
    with pytest.raises(ValueError, match="Received: range_min=1.0"):
        FixedRangeQuantizer(1.0, 0.0)
    with pytest.raises(
        ValueError, match="LSTM, GRU or SimpleRNN.*of type Dense"
    ):
        tflq.RecurrentWeightsQuantizeConfig().get_weights_and_quantizers(dense)


def test_fused_lstm_kernels_are_quantized_per_gate():
    lstm, gru = L.LSTM(2), L.GRU(2)
    lstm.build((None, 3, 2))
    gru.build((None, 3, 2))

    def quantizers(config, layer):
        return [type(q) for _, q in config.get_weights_and_quantizers(layer)]

    # The int8 export fuses this LSTM: the converter gives each gate's
    # weights a tensor and a scale of its own. Unrolled cells (a GRU, any
    # recurrent layer with 16-bit activations) keep one range per kernel.
    assert quantizers(tflq.RecurrentQuantizeConfig(), lstm) == [
        GateQuantizer
    ] * 2
    assert quantizers(tflq.RecurrentWeightsQuantizeConfig(), lstm) == [
        GateQuantizer
    ] * 2
    unrolled = [LastValueQuantizer] * 2
    assert quantizers(tflq.RecurrentQuantizeConfig(), gru) == unrolled
    config = tflq.RecurrentQuantizeConfig(activation_bits=16)
    assert quantizers(config, lstm) == unrolled

    kernel = np.random.RandomState(0).uniform(-1, 1, (3, 8))
    kernel *= np.repeat([1.0, 0.5, 0.25, 0.125], 2)
    kernel = kernel.astype("float32")
    quantizer = GateQuantizer()
    weights = quantizer.build(kernel.shape, "kernel", L.Layer())
    got = keras.ops.convert_to_numpy(quantizer(kernel, True, weights))
    for gate in range(4):
        block = kernel[:, 2 * gate : 2 * gate + 2]
        scale = np.abs(block).max() / 127
        want = np.round(block / scale) * scale
        np.testing.assert_allclose(
            got[:, 2 * gate : 2 * gate + 2], want, atol=1e-6
        )
    # Inference uses the ranges the last training step stored.
    again = keras.ops.convert_to_numpy(quantizer(kernel, False, weights))
    np.testing.assert_array_equal(again, got)
    assert GateQuantizer.from_config(quantizer.get_config()) == quantizer
    with pytest.raises(ValueError, match="Received: gates=0"):
        GateQuantizer(gates=0)
    with pytest.raises(ValueError, match="splits into 4 gates.*\\(3, 6\\)"):
        quantizer.build((3, 6), "kernel", L.Layer())
