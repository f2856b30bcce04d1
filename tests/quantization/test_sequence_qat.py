"""QAT of recurrent models on real data (digits rows as sequences), to int8."""

import keras
import numpy as np
import pytest

import keras_tflq as tflq
from keras_tflq.conversion.sequence_export import FUSED_LSTM
from keras_tflq.conversion.sequence_export import UNROLLED
from keras_tflq.quantization.default_scheme.sequence_configs import (
    RecurrentQuantizeConfig,
)
from keras_tflq.quantization.default_scheme.sequence_configs import (
    RecurrentWeightsQuantizeConfig,
)
from keras_tflq.runtime.litert_model import LiteRTModel

L = keras.layers


@pytest.fixture(scope="module")
def digits_rows():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32").reshape(-1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=360, stratify=digits.target, random_state=0
    )
    return x_train, y_train, x_test, y_test


def _compile(model, learning_rate):
    model.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _annotated(kind, config):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8), name="rows")
    layer = {"lstm": L.LSTM, "gru": L.GRU}[kind](32, name="rnn")
    x = tflq.quantize_annotate_layer(layer, config)(inputs)
    outputs = L.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"digits_{kind}")


_CASES = [
    ("lstm", RecurrentWeightsQuantizeConfig, FUSED_LSTM),
    ("gru", RecurrentQuantizeConfig, UNROLLED),
]


@pytest.fixture(scope="module", params=_CASES, ids=[c[0] for c in _CASES])
def trained(request, digits_rows, tmp_path_factory):
    """Float training, then QAT with an int8 export in the same fit()."""
    kind, config, path = request.param
    x_train, y_train, x_test, y_test = digits_rows
    annotated = _annotated(kind, config())
    float_model = _compile(keras.models.clone_model(annotated), 1e-2)
    float_model.fit(x_train, y_train, batch_size=32, epochs=8, verbose=0)
    float_accuracy = float_model.evaluate(x_test, y_test, verbose=0)[1]
    annotated.set_weights(float_model.get_weights())
    qat = _compile(tflq.quantize_model(annotated), 1e-3)
    folder = tmp_path_factory.mktemp(kind)
    export = tflq.TFLiteExport(
        mode="int8", filepath=str(folder / f"{kind}_qat.tflite")
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
    return kind, path, float_accuracy, qat, export


def test_qat_recurrent_model_exports_full_int8_by_its_path(trained):
    kind, path, _, _, export = trained
    assert export.report["all_integer"], export.report["tensor_dtypes"]
    assert export.report["sequence_layers"] == {"quant_rnn/rnn": path}
    assert "WHILE" not in export.report["op_counts"]


def test_qat_int8_accuracy_within_one_point_of_float(trained, digits_rows):
    _, _, float_accuracy, qat, export = trained
    x_test, y_test = digits_rows[2:]
    tflite = LiteRTModel(model_path=export.exported_path).predict(x_test)
    tflite_accuracy = np.mean(tflite.argmax(1) == y_test)
    assert tflite_accuracy >= float_accuracy - 0.01
    agreement = np.mean(
        tflite.argmax(1) == qat.predict(x_test, verbose=0).argmax(1)
    )
    assert agreement >= 0.99


def test_recurrent_configs_round_trip_and_check_their_layer():
    config = RecurrentQuantizeConfig(activation_bits=16)
    restored = RecurrentQuantizeConfig.from_config(config.get_config())
    assert restored.get_config() == {"weight_bits": 8, "activation_bits": 16}
    with pytest.raises(ValueError, match="Received: activation_bits=4"):
        RecurrentQuantizeConfig(activation_bits=4)
    with pytest.raises(ValueError, match="Received: weight_bits=4"):
        RecurrentWeightsQuantizeConfig(weight_bits=4)
    dense = L.Dense(2)
    dense.build((None, 3))
    with pytest.raises(
        ValueError, match="LSTM, GRU or SimpleRNN.*of type Dense"
    ):
        RecurrentWeightsQuantizeConfig().get_weights_and_quantizers(dense)
