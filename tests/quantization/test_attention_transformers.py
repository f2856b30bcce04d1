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
from ai_edge_litert.interpreter import Interpreter

import keras_tflq as tflq
from keras_tflq.quantization.default_scheme.attention_configs import (
    EmbeddingQuantizeConfig,
)
from keras_tflq.runtime.litert_model import LiteRTModel
from tests.helpers.models import compile_classifier

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


# builder, features, float epochs, float learning rate
_MODELS = {
    "vit": (vision_transformer, _patches, 10, 3e-3),
    "tokens": (token_transformer, _tokens, 10, 1e-2),
}


def _float(kind, digits_split, **build_kwargs):
    """The float model trained, its test accuracy, and the features."""
    build, features, epochs, learning_rate = _MODELS[kind]
    x_train, y_train, x_test, y_test = digits_split
    x_train, x_test = features(x_train), features(x_test)
    keras.utils.set_random_seed(0)
    model = compile_classifier(build(**build_kwargs), learning_rate)
    model.fit(x_train, y_train, batch_size=32, epochs=epochs, verbose=0)
    accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    return model, accuracy, (x_train, y_train, x_test, y_test)


def _qat(
    float_model, data, folder, activation_bits=8, epochs=1, learning_rate=5e-4
):
    """`quantize_model`, QAT for `epochs`, exported by `TFLiteExport`.

    `fit()` gets no validation data: the export has no calibration data
    to fall back on, so the artifact holds only the learned ranges."""
    x_train, y_train = data[:2]
    qat = compile_classifier(
        tflq.quantize_model(float_model, activation_bits=activation_bits),
        learning_rate,
    )
    mode = "int8" if activation_bits == 8 else "int16x8"
    export = tflq.TFLiteExport(
        str(folder / f"{float_model.name}_{mode}.tflite"), mode=mode
    )
    qat.fit(
        x_train, y_train, batch_size=32, epochs=epochs, callbacks=[export],
        verbose=0,
    )
    return qat, export


def _scores(qat, export, data):
    """(TFLite accuracy, TFLite-vs-Keras-QAT argmax agreement)."""
    x_test, y_test = data[2:]
    tflite = LiteRTModel(model_path=export.exported_path).predict(x_test)
    keras_qat = qat.predict(x_test, verbose=0)
    return (
        np.mean(tflite.argmax(1) == y_test),
        np.mean(tflite.argmax(1) == keras_qat.argmax(1)),
    )


@pytest.fixture(scope="module", params=sorted(_MODELS))
def trained(request, digits_split, tmp_path_factory):
    kind = request.param
    float_model, float_accuracy, data = _float(kind, digits_split)
    folder = tmp_path_factory.mktemp(kind)
    qat, export = _qat(float_model, data, folder)
    return kind, float_accuracy, qat, export, data


def test_transformer_qat_exports_full_int8_without_calibration(trained):
    kind, _, _, export, _ = trained
    report = export.report
    assert report["calibration"] is None
    assert report["all_integer"], report["float_ops"]
    # int8 activations and weights, int32 biases and shapes; the token
    # model's int32 token ids pass Keras' negative-index check of
    # `Embedding` (a LESS and a SELECT: bool).
    allowed = {"int8", "int32"} | ({"bool"} if kind == "tokens" else set())
    assert set(report["tensor_dtypes"]) <= allowed, report["tensor_dtypes"]
    ops = report["op_counts"]
    assert ops["BATCH_MATMUL"] == 2 and ops["SOFTMAX"] == 1
    assert ops["RSQRT"] == 2  # one per LayerNormalization
    # Each LayerNormalization runs as PTQ's ops: `+ epsilon` and `+ beta`
    # as ADD, `* gamma` as MUL, no 1x1 depthwise convolution.
    assert "DEPTHWISE_CONV_2D" not in ops
    for absent in ("SHAPE", "PACK", "REDUCE_PROD", "QUANTIZE", "DEQUANTIZE"):
        assert absent not in ops


def test_transformer_qat_int8_matches_float_and_keras(trained):
    _, float_accuracy, qat, export, data = trained
    tflite_accuracy, agreement = _scores(qat, export, data)
    assert tflite_accuracy >= float_accuracy - 0.01, (
        tflite_accuracy,
        float_accuracy,
    )
    assert agreement >= 0.99


def test_softmax_output_is_on_tflite_fixed_int8_grid(trained):
    export = trained[3]
    runner = Interpreter(model_path=export.exported_path)
    details = {t["index"]: t for t in runner.get_tensor_details()}
    softmax = [
        details[op["outputs"][0]]["quantization"]
        for op in runner._get_ops_details()
        if op["op_name"] == "SOFTMAX"
    ]
    assert softmax == [(1 / 256, -128)]


def test_vision_transformer_int16x8_qat(digits_split, tmp_path):
    # GELU has no int16 kernel in TFLite: the 16x8 model's MLP uses ReLU.
    # QAT from scratch (the 16x8 grid is fine enough that no float
    # pre-training is needed); the artifact is compared with the Keras
    # QAT model.
    x_train, y_train, x_test, y_test = digits_split
    data = (_patches(x_train), y_train, _patches(x_test), y_test)
    keras.utils.set_random_seed(0)
    qat, export = _qat(
        vision_transformer(activation="relu"),
        data,
        tmp_path,
        activation_bits=16,
        epochs=4,
        learning_rate=3e-3,
    )
    report = export.report
    assert report["calibration"] is None
    assert report["all_integer"], report["float_ops"]
    # int16 activations, int8 weights, int32 biases of FULLY_CONNECTED and
    # int64 ones of the depthwise convolutions (TFLite's 16x8 spec); the
    # float32 I/O of the 16x8 mode.
    dtypes = report["tensor_dtypes"]
    assert set(dtypes) <= {"int16", "int8", "int32", "int64", "float32"}
    assert dtypes["int16"] > dtypes["int8"]
    tflite_accuracy, agreement = _scores(qat, export, data)
    keras_accuracy = qat.evaluate(data[2], y_test, verbose=0)[1]
    assert tflite_accuracy >= keras_accuracy - 0.01 and tflite_accuracy > 0.9
    assert agreement >= 0.99


def test_gelu_with_16_bit_activations_is_refused_before_training():
    model = vision_transformer()
    with pytest.raises(
        ValueError,
        match=r"GELU op has an int8 kernel only.*Received: layer='mlp_1' "
        r"with activation='gelu'",
    ):
        tflq.quantize_model(model, activation_bits=16)
