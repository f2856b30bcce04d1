"""QAT of an Embedding model over digits' pixel intensities as tokens."""

import keras
import numpy as np
import pytest

import keras_tflq as tflq
from keras_tflq.quantization.default_scheme.attention_configs import (
    EmbeddingQuantizeConfig,
)
from keras_tflq.runtime.litert_model import LiteRTModel

L = keras.layers


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Digits as 64 tokens (intensities 0-16): float, then QAT + int8."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    tokens = digits.data.astype("int32")
    x_train, x_test, y_train, y_test = train_test_split(
        tokens, digits.target, test_size=360, stratify=digits.target,
        random_state=0,
    )
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,), dtype="int32", name="pixels")
    embedding = tflq.quantize_annotate_layer(
        L.Embedding(17, 8, name="embedding"), EmbeddingQuantizeConfig()
    )
    x = L.Flatten()(embedding(inputs))
    x = L.Dense(32, activation="relu")(x)
    annotated = keras.Model(inputs, L.Dense(10)(x), name="digits_tokens")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    float_model = keras.models.clone_model(annotated)
    float_model.compile(keras.optimizers.Adam(1e-2), loss, metrics=["accuracy"])
    float_model.fit(x_train, y_train, batch_size=32, epochs=5, verbose=0)
    float_accuracy = float_model.evaluate(x_test, y_test, verbose=0)[1]
    annotated.set_weights(float_model.get_weights())
    qat = tflq.quantize_model(annotated)
    qat.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    path = tmp_path_factory.mktemp("tokens") / "tokens_int8.tflite"
    export = tflq.TFLiteExport(str(path), mode="int8")
    qat.fit(
        x_train, y_train, batch_size=32, epochs=1, verbose=0,
        validation_data=(x_test, y_test), callbacks=[export],
    )
    return float_accuracy, qat, export, x_test, y_test


def test_qat_embedding_model_exports_full_int8_with_an_int8_table(
    trained, tmp_path
):
    _, qat, export, _, _ = trained
    report = export.report
    assert report["all_integer"], report["tensor_dtypes"]
    assert report["op_counts"]["GATHER"] == 1
    # Every op is annotated: the learned ranges suffice, no calibration.
    path = str(tmp_path / "uncalibrated_int8.tflite")
    uncalibrated = tflq.export_tflite(qat, path, mode="int8")
    assert uncalibrated["calibration"] is None
    assert uncalibrated["all_integer"]


def test_qat_embedding_int8_accuracy_and_agreement(trained):
    float_accuracy, qat, export, x_test, y_test = trained
    tflite = LiteRTModel(model_path=export.exported_path).predict(x_test)
    assert np.mean(tflite.argmax(1) == y_test) >= float_accuracy - 0.01
    keras_qat = qat.predict(x_test, verbose=0)
    assert np.mean(tflite.argmax(1) == keras_qat.argmax(1)) >= 0.99


def test_embedding_config_refuses_another_layer():
    dense = L.Dense(2)
    dense.build((None, 3))
    with pytest.raises(ValueError, match="Embedding layer.*of type Dense"):
        EmbeddingQuantizeConfig().get_weights_and_quantizers(dense)
