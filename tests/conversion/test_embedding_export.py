"""Post-training int16x8 export of an Embedding model over real tokens (the
digits' 17 pixel intensities), through `TFLiteExport` and `export_tflite`."""

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

import keras_tflq
from keras_tflq.conversion.embedding_export import direct_embedding_lookups
from keras_tflq.conversion.embedding_export import needs_direct_lookups
from keras_tflq.runtime.litert_model import LiteRTModel
from tests.helpers.models import op_dtypes

L = keras.layers


@pytest.fixture(scope="module")
def tokens(digits_split):
    """The digits as 64 tokens (0-16): (x_train, y_train, x_test, y_test)."""
    x_train, y_train, x_test, y_test = digits_split
    x_train, x_test = (
        np.round(x * 16).astype("int32").reshape(-1, 64)
        for x in (x_train, x_test)
    )
    return x_train, y_train, x_test, y_test


@pytest.fixture(scope="module")
def exported(tokens, tmp_path_factory):
    """The Embedding model trained with `TFLiteExport(mode="int16x8")`,
    calibrated on its validation data."""
    x_train, y_train, x_test, y_test = tokens
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,), dtype="int32", name="pixels")
    x = L.Flatten()(L.Embedding(17, 4, name="embedding")(inputs))
    model = keras.Model(inputs, L.Dense(10, name="logits")(x))
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    path = tmp_path_factory.mktemp("embedding") / "embedding_int16x8.tflite"
    export = keras_tflq.TFLiteExport(
        str(path), mode="int16x8", evaluate=False, check_conversion=False
    )
    model.fit(
        x_train,
        y_train,
        epochs=3,
        validation_data=(x_test, y_test),
        callbacks=[export],
        verbose=0,
    )
    return model, export


def test_int16x8_embedding_export_keeps_int32_tokens_and_16x8_tensors(
    exported,
):
    model, export = exported
    report = export.report
    assert report["all_integer"], report["tensor_dtypes"]
    assert report["inputs"][0]["dtype"] == "int32"  # token ids stay integers
    ops = op_dtypes(export.exported_path)
    # One lookup, no negative-index wrapping (LESS, ADD, SELECT_V2).
    assert ops["GATHER"] == {(("int16", "int32"), ("int16",))}
    assert not {"LESS", "ADD", "SELECT_V2"} & set(ops)
    # 16-bit activations, 8-bit weights, 64-bit bias.
    assert ops["FULLY_CONNECTED"] == {
        (("int16", "int8", "int64"), ("int16",))
    }
    layer = model.get_layer("embedding")
    assert "call" not in layer.__dict__  # the export-time lookup is undone


def test_int16x8_embedding_agrees_with_keras_on_digits(exported, tokens):
    model, export = exported
    x_test = tokens[2]
    got = LiteRTModel(model_path=export.exported_path).predict(x_test)
    want = model.predict(x_test, verbose=0)
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.99


def test_export_tflite_int16x8_embedding_and_negative_ids(
    exported, tokens, tmp_path
):
    model, _ = exported
    path = tmp_path / "embedding.tflite"
    report = keras_tflq.export_tflite(
        model, path, mode="int16x8", calibration_data=tokens[2][:50]
    )
    assert report["all_integer"]
    # Keras wraps a negative id around the table; the artifact's GATHER
    # refuses it at invoke() instead of answering for another token.
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    ids = tokens[2][:1].copy()
    ids[0, 0] = -1
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], ids)
    with pytest.raises(RuntimeError, match="gather index out of bounds"):
        interpreter.invoke()


def test_direct_lookups_only_for_int16x8_and_restored_after_errors():
    inputs = keras.Input((4,), dtype="int32")
    layer = L.Embedding(5, 2)
    model = keras.Model(inputs, layer(inputs))
    assert needs_direct_lookups(model, "int16x8")
    assert not needs_direct_lookups(model, "int8")
    dense = keras.Sequential([keras.Input((3,)), L.Dense(2)])
    assert not needs_direct_lookups(dense, "int16x8")
    with pytest.raises(ValueError, match="inside"):
        with direct_embedding_lookups(model):
            assert "call" in layer.__dict__
            raise ValueError("inside")
    assert "call" not in layer.__dict__
