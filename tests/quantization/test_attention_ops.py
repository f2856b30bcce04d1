"""Attention written with `keras.ops`, and saving the attention QAT layers."""

import math

import keras
import numpy as np
import pytest
from keras import ops

import keras_tflq as tflq
from keras_tflq.quantization.default_scheme.layer_normalization import (
    QuantizeLayerNormalization,
)
from keras_tflq.quantization.default_scheme.multi_head_attention import (
    QuantizeMultiHeadAttention,
)
from keras_tflq.quantization.default_scheme.softmax_output import (
    SoftmaxOutputQuantizer,
)
from keras_tflq.runtime.litert_model import LiteRTModel

L = keras.layers


def _rows(digits_split):
    """Digits as 8 rows of 8 pixels, with the one-hot row index appended."""
    x_train, y_train, x_test, y_test = digits_split

    def rows(images):
        n = images.shape[0]
        eye = np.broadcast_to(np.eye(8, dtype="float32"), (n, 8, 8))
        return np.concatenate([images.reshape(n, 8, 8), eye], axis=-1)

    return rows(x_train), y_train, rows(x_test), y_test


def ops_attention_model():
    """Two-head self-attention written with keras.ops on symbolic tensors."""
    inputs = keras.Input((8, 16), name="rows")
    x = L.Dense(16, name="embedding")(inputs)

    def heads(t):
        return ops.transpose(ops.reshape(t, (-1, 8, 2, 8)), (0, 2, 1, 3))

    q = heads(L.Dense(16, name="query")(x) * (1.0 / math.sqrt(8)))
    k = heads(L.Dense(16, name="key")(x))
    v = heads(L.Dense(16, name="value")(x))
    scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))
    context = ops.matmul(ops.softmax(scores, axis=-1), v)
    context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (-1, 8, 16))
    x = L.Add()([x, L.Dense(16, name="output")(context)])
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, L.Dense(10, name="logits")(x))


def test_keras_ops_attention_trains_and_exports_full_int8(
    digits_split, tmp_path
):
    x_train, y_train, x_test, _ = _rows(digits_split)
    keras.utils.set_random_seed(0)
    qat = tflq.quantize_model(ops_attention_model())
    # The softmax op has TFLite's fixed range; the matmuls their own.
    assert any(isinstance(la, SoftmaxOutputQuantizer) for la in qat.layers)
    qat.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    qat.fit(x_train, y_train, batch_size=32, epochs=2, verbose=0)
    path = str(tmp_path / "ops_int8.tflite")
    report = tflq.export_tflite(qat, path, mode="int8")
    assert report["calibration"] is None
    assert report["all_integer"], report["float_ops"]
    assert set(report["tensor_dtypes"]) <= {"int8", "int32"}
    assert report["op_counts"]["BATCH_MATMUL"] == 2
    tflite = LiteRTModel(model_path=path).predict(x_test)
    keras_qat = qat.predict(x_test, verbose=0)
    assert np.mean(tflite.argmax(1) == keras_qat.argmax(1)) >= 0.99


def _attention_block():
    inputs = keras.Input((5, 8))
    attended = L.MultiHeadAttention(2, 4, name="attention")(inputs, inputs)
    x = L.LayerNormalization(name="norm")(L.Add()([inputs, attended]))
    return keras.Model(inputs, L.Dense(8, activation="gelu")(x))


def test_attention_qat_layers_save_reload_and_resume(tmp_path):
    keras.utils.set_random_seed(0)
    qat = tflq.quantize_model(_attention_block())
    attention = qat.get_layer("quant_attention")
    assert isinstance(attention, QuantizeMultiHeadAttention)
    assert isinstance(qat.get_layer("quant_norm"), QuantizeLayerNormalization)
    x = np.random.default_rng(0).normal(size=(16, 5, 8)).astype("float32")
    qat.compile("adam", "mse")
    qat.fit(x, x, batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "attention_qat.keras")
    qat.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), qat.predict(x, verbose=0), atol=1e-6
    )
    reloaded.fit(x, x, batch_size=8, epochs=1, verbose=0)


@pytest.mark.parametrize(
    "call_kwargs, message",
    [
        ({"use_causal_mask": True}, "use_causal_mask=True"),
        ({"return_attention_scores": True}, "return_attention_scores=True"),
    ],
    ids=["causal_mask", "scores"],
)
def test_attention_forms_tflite_cannot_run_are_refused(call_kwargs, message):
    inputs = keras.Input((5, 8))
    attended = L.MultiHeadAttention(2, 4, name="attention")(
        inputs, inputs, **call_kwargs
    )
    if isinstance(attended, tuple):
        attended = attended[0]
    model = keras.Model(inputs, attended)
    with pytest.raises(
        ValueError, match=f"Received: layer='attention' with {message}"
    ):
        tflq.quantize_model(model)


def test_attention_layer_checks_its_arguments():
    with pytest.raises(ValueError, match="MultiHeadAttention layer"):
        QuantizeMultiHeadAttention(L.Dense(2))
    with pytest.raises(ValueError, match="LayerNormalization layer"):
        QuantizeLayerNormalization(L.Dense(2))
    with pytest.raises(ValueError, match="Received: activation_bits=4"):
        SoftmaxOutputQuantizer(activation_bits=4)
    with pytest.raises(ValueError, match=r"attention_axes=\(2,\)"):
        QuantizeMultiHeadAttention(
            L.MultiHeadAttention(2, 4, attention_axes=(2,))
        )


def test_attention_over_other_axes_is_unsupported_or_kept_float():
    inputs = keras.Input((3, 5, 8))
    layer = L.MultiHeadAttention(2, 4, attention_axes=(2,), name="axes")
    model = keras.Model(inputs, layer(inputs, inputs))
    with pytest.raises(ValueError, match="Received: layer='axes'"):
        tflq.quantize_model(model)
    kept = tflq.quantize_model(model, unsupported="float")
    assert type(kept.get_layer("axes")) is L.MultiHeadAttention
