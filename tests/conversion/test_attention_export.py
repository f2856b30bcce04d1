"""A transformer block exported to full int8 with post-training quantization."""

import keras
import numpy as np

import keras_tflq
from keras_tflq.runtime.litert_model import LiteRTModel

L = keras.layers


def _transformer(tokens=16, vocabulary=17, width=32):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((tokens,), dtype="int32", name="tokens")
    x = L.Embedding(vocabulary, width)(inputs)
    attended = L.MultiHeadAttention(num_heads=2, key_dim=16)(x, x)
    x = L.LayerNormalization()(x + attended)
    hidden = L.Dense(2 * width, activation="gelu")(x)
    x = L.LayerNormalization()(x + L.Dense(width)(hidden))
    outputs = L.Dense(10)(L.GlobalAveragePooling1D()(x))
    return keras.Model(inputs, outputs, name="transformer")


def test_transformer_block_exports_full_int8_without_dynamic_shape_ops(
    tmp_path,
):
    model = _transformer()
    tokens = np.random.RandomState(0).randint(0, 17, (64, 16)).astype("int32")
    path = str(tmp_path / "transformer_int8.tflite")
    # No allow_float_ops: the export refuses any op left in float.
    report = keras_tflq.export_tflite(
        model, path, mode="int8", calibration_data=tokens, output_type="float32"
    )
    assert report["all_integer"], report["tensor_dtypes"]
    ops = report["op_counts"]
    for dynamic_shape_op in ("SHAPE", "REDUCE_PROD", "PACK", "NEG"):
        assert dynamic_shape_op not in ops, ops
    assert {"BATCH_MATMUL", "SOFTMAX", "GELU", "RSQRT"} <= set(ops)
    assert report["inputs"][0]["dtype"] == "int32"  # token ids stay integers
    got = LiteRTModel(model_path=path).predict(tokens)
    want = model.predict(tokens, verbose=0)
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.9
