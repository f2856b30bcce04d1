"""`quantize_model` on small transformers over the digits, to full int8.

Two models, built from Keras layers only and quantized with no
annotation of the attention parts: a vision transformer over 4x4 patches
and a transformer over the 64 pixel intensities (0-16) as tokens. Each is
trained in float, fine-tuned with QAT, exported by `TFLiteExport` without
calibration data and run with LiteRT on held-out digits.
"""

import keras
import numpy as np
import pytest

import keras_tflq as tflq
from keras_tflq.quantization.default_scheme.attention_configs import (
    EmbeddingQuantizeConfig,
)
from keras_tflq.runtime.litert_model import LiteRTModel

L = keras.layers


def _patches(images):
    """(n, 8, 8, 1) digits -> (n, 4, 20): four 4x4 patches, each followed
    by the one-hot of its position, so the patch embedding `Dense` adds a
    learned position embedding (its weights on the one-hot columns)."""
    n = images.shape[0]
    patches = images.reshape(n, 2, 4, 2, 4).transpose(0, 1, 3, 2, 4)
    patches = patches.reshape(n, 4, 16)
    positions = np.broadcast_to(np.eye(4, dtype="float32"), (n, 4, 4))
    return np.concatenate([patches, positions], axis=-1)


def _tokens(images):
    """(n, 8, 8, 1) digits -> the 64 intensities 0-16 and their positions."""
    n = images.shape[0]
    tokens = np.rint(images.reshape(n, 64) * 16).astype("int32")
    positions = np.broadcast_to(np.arange(64, dtype="int32"), (n, 64))
    return {"tokens": tokens, "positions": np.ascontiguousarray(positions)}


def _block(x, heads, key_dim, hidden, activation="gelu"):
    """One transformer block: attention, residual, norm, MLP, residual."""
    width = x.shape[-1]
    attended = L.MultiHeadAttention(heads, key_dim, name="attention")(x, x)
    x = L.LayerNormalization(name="norm_1")(L.Add()([x, attended]))
    h = L.Dense(hidden, activation=activation, name="mlp_1")(x)
    h = L.Dense(width, name="mlp_2")(h)
    return L.LayerNormalization(name="norm_2")(L.Add()([x, h]))


def vision_transformer(activation="gelu"):
    inputs = keras.Input((4, 20), name="patches")
    x = L.Dense(32, name="patch_embedding")(inputs)
    x = _block(x, heads=2, key_dim=16, hidden=64, activation=activation)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, L.Dense(10, name="logits")(x), name="vit")


def token_transformer():
    tokens = keras.Input((64,), dtype="int32", name="tokens")
    positions = keras.Input((64,), dtype="int32", name="positions")
    # Embedding is not in the default scheme's table on this branch: its
    # QuantizeConfig is given inline (int8 table, per tensor).
    embed = tflq.quantize_annotate_layer(
        L.Embedding(17, 16, name="token_embedding"), EmbeddingQuantizeConfig()
    )
    place = tflq.quantize_annotate_layer(
        L.Embedding(64, 16, name="position_embedding"),
        EmbeddingQuantizeConfig(),
    )
    x = L.Add()([embed(tokens), place(positions)])
    x = _block(x, heads=2, key_dim=8, hidden=32)
    x = L.GlobalAveragePooling1D()(x)
    outputs = L.Dense(10, name="logits")(x)
    return keras.Model([tokens, positions], outputs, name="pixel_tokens")


_MODELS = {
    "vit": (vision_transformer, _patches, 12),
    "tokens": (token_transformer, _tokens, 12),
}


def _compile(model, learning_rate):
    model.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=False,
    )
    return model


def _train(kind, digits_split, folder, activation_bits=8, qat_epochs=2):
    build, features, float_epochs = _MODELS[kind]
    x_train, y_train, x_test, y_test = digits_split
    x_train, x_test = features(x_train), features(x_test)
    keras.utils.set_random_seed(0)
    float_model = _compile(build(), 3e-3)
    float_model.fit(
        x_train, y_train, batch_size=32, epochs=float_epochs, verbose=0
    )
    float_accuracy = float_model.evaluate(x_test, y_test, verbose=0)[1]
    qat = _compile(
        tflq.quantize_model(float_model, activation_bits=activation_bits), 5e-4
    )
    mode = "int8" if activation_bits == 8 else "int16x8"
    export = tflq.TFLiteExport(str(folder / f"{kind}_{mode}.tflite"), mode=mode)
    qat.fit(
        x_train,
        y_train,
        batch_size=32,
        epochs=qat_epochs,
        validation_data=(x_test, y_test),
        callbacks=[export],
        verbose=0,
    )
    return float_accuracy, qat, export, x_test, y_test


@pytest.fixture(scope="module", params=sorted(_MODELS))
def trained(request, digits_split, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    return request.param, *_train(request.param, digits_split, folder)


def test_transformer_qat_exports_full_int8_without_calibration(trained):
    kind, _, _, export, _, _ = trained
    report = export.report
    assert report["calibration"] is None
    assert report["all_integer"], report["float_ops"]
    # int8 activations and weights, int32 biases and shapes; the token
    # model's inputs are int32 token ids.
    assert set(report["tensor_dtypes"]) <= {"int8", "int32"}
    ops = report["op_counts"]
    assert ops["BATCH_MATMUL"] == 2 and ops["SOFTMAX"] == 1
    assert ops["RSQRT"] == 2  # one per LayerNormalization
    for dynamic in ("SHAPE", "PACK", "REDUCE_PROD", "QUANTIZE"):
        assert dynamic not in ops


def test_transformer_qat_int8_matches_float_and_keras(trained):
    _, float_accuracy, qat, export, x_test, y_test = trained
    tflite = LiteRTModel(model_path=export.exported_path).predict(x_test)
    tflite_accuracy = np.mean(tflite.argmax(1) == y_test)
    assert tflite_accuracy >= float_accuracy - 0.01, (
        tflite_accuracy,
        float_accuracy,
    )
    keras_qat = qat.predict(x_test, verbose=0)
    assert np.mean(tflite.argmax(1) == keras_qat.argmax(1)) >= 0.99


def test_softmax_output_is_tflite_fixed_int8_grid(trained):
    _, _, _, export, _, _ = trained
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=export.exported_path)
    details = {t["index"]: t for t in runner.get_tensor_details()}
    softmax = [
        details[op["outputs"][0]]
        for op in runner._get_ops_details()
        if op["op_name"] == "SOFTMAX"
    ]
    assert [t["quantization"] for t in softmax] == [(1 / 256, -128)]
