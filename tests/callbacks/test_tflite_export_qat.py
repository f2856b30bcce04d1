"""TFLiteExport on quantization-aware models: learned ranges, no calibration
needed."""

import keras
import numpy as np
import pytest

import keras_tflq
from keras_tflq import TFLiteExport
from tests.helpers.models import io_dtypes
from tests.helpers.models import tensor_dtypes


def _qat_digits_model(activation_bits=8):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    shortcut = x
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.Add()([x, shortcut])
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D()(x))
    model = keras_tflq.quantize_model(
        keras.Model(inputs, keras.layers.Dense(10)(x)),
        activation_bits=activation_bits,
    )
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def test_qat_int8_export_needs_no_calibration_data(workdir, digits):
    x, y = digits
    model = _qat_digits_model()
    export = TFLiteExport(mode="int8", verbose=0)
    model.fit(
        x[:600], y[:600], epochs=2, callbacks=[export], verbose=0
    )  # no validation data

    assert export.report["quantization"] == "quantization-aware"
    assert export.report["calibration"] is None
    assert tensor_dtypes(export.exported_path) <= {"int8", "int32"}
    ops = export.report["op_counts"]
    assert "QUANTIZE" not in ops and "DEQUANTIZE" not in ops
    # The artifact computes what the Keras QAT model computes.
    tflite = keras_tflq.LiteRTModel(model_path=export.exported_path).predict(
        x[1400:]
    )
    keras_logits = model.predict(x[1400:], verbose=0)
    assert np.mean(tflite.argmax(-1) == keras_logits.argmax(-1)) >= 0.99


def test_qat_int8_with_validation_keeps_learned_ranges_and_scores_like_keras(
    workdir, digits
):
    x, y = digits
    model = _qat_digits_model()
    export = TFLiteExport(mode="int8", verbose=0)
    model.fit(
        x[:900],
        y[:900],
        validation_data=(x[900:1200], y[900:1200]),
        epochs=2,
        callbacks=[export],
        verbose=0,
    )

    history = model.history.history
    assert history["val_tflite_accuracy"][-1] == pytest.approx(
        history["val_accuracy"][-1], abs=0.01
    )
    tflite = keras_tflq.LiteRTModel(model_path=export.exported_path).predict(
        x[1400:]
    )
    assert (
        np.mean(
            tflite.argmax(-1) == model.predict(x[1400:], verbose=0).argmax(-1)
        )
        >= 0.99
    )


def test_qat_int16x8_export_runs_with_int16_activations(workdir, digits):
    x, y = digits
    model = _qat_digits_model(activation_bits=16)
    export = TFLiteExport(mode="int16x8", verbose=0)
    model.fit(
        x[:600],
        y[:600],
        validation_split=0.25,
        epochs=1,
        callbacks=[export],
        verbose=0,
    )

    assert export.report["calibration"] is None
    assert "int16" in tensor_dtypes(export.exported_path)
    assert io_dtypes(export.exported_path) == (["float32"], ["float32"])
    history = model.history.history
    assert history["val_tflite_accuracy"][-1] == pytest.approx(
        history["val_accuracy"][-1], abs=0.01
    )
