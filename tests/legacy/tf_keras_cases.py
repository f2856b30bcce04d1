"""tf_keras models through the public API, in a TF_USE_LEGACY_KERAS process.

Not collected by the default run (a Keras 3 process): test_legacy.py runs
this file with pytest in a subprocess where TF_USE_LEGACY_KERAS=1.
"""

import json
import os
import sys

import keras
import numpy as np
import pytest
import tf_keras
from ai_edge_litert.interpreter import Interpreter
from sklearn.datasets import load_digits

import keras_tflq as tflq
from keras_tflq.quantization import is_quantized_model

TFMOT = "tensorflow_model_optimization"


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    return x[:300], data.target[:300].astype("int32")


def make_cnn(name="legacy_cnn"):
    tf_keras.utils.set_random_seed(0)
    return tf_keras.Sequential(
        [
            tf_keras.Input((8, 8, 1), name="image"),
            tf_keras.layers.Conv2D(
                8, 3, padding="same", activation="relu", name="conv"
            ),
            tf_keras.layers.MaxPooling2D(),
            tf_keras.layers.Flatten(),
            tf_keras.layers.Dense(10),
        ],
        name=name,
    )


def compiled(model):
    model.compile(
        tf_keras.optimizers.Adam(0.01),
        tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def tensor_dtypes(path):
    interpreter = Interpreter(model_path=str(path))
    return {np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}


class BatchCounter(tf_keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_begin(self, batch, logs=None):
        self.batches += 1


def test_process_runs_tf_keras_as_tf_keras():
    import tensorflow as tf

    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    assert tf.keras.Model is tf_keras.Model


def test_float_model_exports_int8_calibrated_on_validation_split(
    digits, tmp_path
):
    x, y = digits
    model = compiled(make_cnn())
    export = tflq.TFLiteExport(
        str(tmp_path / "{name}_{mode}.tflite"), mode="int8", verbose=0
    )
    history = model.fit(
        x, y, validation_split=0.2, epochs=2, callbacks=[export], verbose=0
    )
    path = tmp_path / "legacy_cnn_int8.tflite"
    assert export.exported_path == str(path)
    assert tensor_dtypes(path) <= {"int8", "int32"}
    report = json.loads((tmp_path / "legacy_cnn_int8.json").read_text())
    assert report["quantization"] == "post-training"
    assert report["calibration"]["source"] == "validation_data (arrays)"
    assert report["calibration"]["samples"] == 60
    assert report["versions"]["tf_keras"] == tf_keras.__version__
    # val_tflite_* reach History; the artifact scores like the model.
    val_tflite = history.history["val_tflite_accuracy"][-1]
    assert val_tflite == report["tflite_metrics"]["accuracy"]
    assert abs(val_tflite - history.history["val_accuracy"][-1]) <= 0.05
    assert val_tflite > 0.5
    assert TFMOT not in sys.modules  # a float export needs no tfmot


@pytest.mark.parametrize("mode", ["float32", "float16", "dynamic", "int16x8"])
def test_other_modes_export_with_validation_data(mode, digits, tmp_path):
    x, y = digits
    model = compiled(make_cnn())
    export = tflq.TFLiteExport(
        str(tmp_path / "m_{mode}.tflite"), mode=mode, verbose=0
    )
    history = model.fit(
        x[:240],
        y[:240],
        validation_data=(x[240:], y[240:]),
        epochs=1,
        callbacks=[export],
        verbose=0,
    )
    assert export.report["mode"] == mode
    assert "val_tflite_loss" in history.history
    expected = {"float16": "float16", "int16x8": "int16", "dynamic": "int8"}
    if mode in expected:
        assert expected[mode] in tensor_dtypes(export.exported_path)


def test_quantize_model_delegates_to_tfmot_and_exports_int8(digits, tmp_path):
    x, y = digits
    qat = tflq.quantize_model(make_cnn())
    assert TFMOT in sys.modules
    assert isinstance(qat, tf_keras.Model)
    assert is_quantized_model(qat)
    assert any(
        "QuantizeWrapper" in type(layer).__name__ for layer in qat.layers
    )
    compiled(qat)
    export = tflq.TFLiteExport(
        str(tmp_path / "qat_{mode}.tflite"), mode="int8", verbose=0
    )
    history = qat.fit(
        x[:240],
        y[:240],
        validation_data=(x[240:], y[240:]),
        epochs=2,
        callbacks=[export],
        verbose=0,
    )
    report = export.report
    assert report["quantization"] == "quantization-aware"
    # As for a Keras 3 QAT model, validation data only calibrates ops left
    # unannotated; without it tfmot's learned ranges are all there is.
    assert report["calibration"]["source"] == "validation_data (arrays)"
    assert tensor_dtypes(export.exported_path) <= {"int8", "int32"}
    assert report["versions"][TFMOT]
    val_tflite = history.history["val_tflite_accuracy"][-1]
    assert abs(val_tflite - history.history["val_accuracy"][-1]) <= 0.05
    no_validation = tflq.TFLiteExport(
        str(tmp_path / "qat_{mode}_uncalibrated.tflite"), verbose=0
    )
    qat.fit(x[:64], y[:64], epochs=1, callbacks=[no_validation], verbose=0)
    assert no_validation.report["calibration"] is None
    assert tensor_dtypes(no_validation.exported_path) <= {"int8", "int32"}


def test_annotate_then_apply_quantizes_only_the_annotated_layer():
    inputs = tf_keras.Input((8,))
    hidden = tflq.quantize_annotate_layer(tf_keras.layers.Dense(4))(inputs)
    model = tf_keras.Model(
        inputs, tf_keras.layers.Dense(2, name="plain")(hidden)
    )
    qat = tflq.quantize_apply(model)
    assert is_quantized_model(qat)
    assert type(qat.get_layer("plain")).__name__ == "Dense"


@pytest.mark.parametrize("per_channel", [True, False], ids=["axis", "tensor"])
def test_per_channel_reaches_tfmot_conv_weights(per_channel):
    annotated = tflq.quantize_annotate_model(make_cnn())
    qat = tflq.quantize_apply(annotated, per_channel=per_channel)
    conv = qat.get_layer("quant_conv")
    [(_, quantizer)] = conv.quantize_config.get_weights_and_quantizers(
        conv.layer
    )
    assert quantizer.per_axis is per_channel


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"activation_bits": 16}, r"activation_bits` to be 8 for a tf_keras"),
        (
            {"unsupported": "float"},
            r'unsupported` to be "error" for `quantize_',
        ),
        ({"activation_bits": 4}, r"Received: activation_bits=4"),
    ],
    ids=["16x8", "unsupported_float", "bad_bits"],
)
def test_options_tfmot_cannot_honour_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tflq.quantize_model(make_cnn(), **kwargs)


def test_keras3_quantize_config_on_tf_keras_layer_is_refused():
    from keras_tflq.quantization.default_scheme.default_quantize_config import (
        DefaultQuantizeConfig,
    )

    with pytest.raises(ValueError, match=r"tfmot.quantization.keras.Quant"):
        tflq.quantize_annotate_layer(
            tf_keras.layers.Dense(2), DefaultQuantizeConfig()
        )


def test_missing_legacy_extra_names_it(monkeypatch):
    # What a process without tensorflow-model-optimization sees.
    monkeypatch.setitem(sys.modules, TFMOT, None)
    with pytest.raises(
        ImportError, match=r'pip install "keras-tflq\[legacy\]"'
    ):
        tflq.quantize_model(make_cnn())


def test_int8_without_calibration_source_fails_before_first_batch(digits):
    x, y = digits
    counter = BatchCounter()
    with pytest.raises(ValueError, match=r"Expected calibration data"):
        compiled(make_cnn()).fit(
            x,
            y,
            epochs=1,
            callbacks=[tflq.TFLiteExport(mode="int8", verbose=0), counter],
            verbose=0,
        )
    assert counter.batches == 0


class _Keras3HoldsTfKeras(keras.Model):
    def __init__(self):
        super().__init__()
        self.legacy = tf_keras.layers.Dense(2, name="legacy_dense")

    def call(self, x):
        return self.legacy(x)


class _TfKerasHoldsKeras3(tf_keras.Model):
    def __init__(self):
        super().__init__()
        self.blocks = [keras.layers.Dense(2, name="keras3_dense")]

    def call(self, x):
        return self.blocks[0](x)


@pytest.mark.parametrize(
    "make, message",
    [
        (
            _Keras3HoldsTfKeras,
            r"Keras 3 _Keras3HoldsTfKeras holding the "
            r"tf_keras layer 'legacy_dense'",
        ),
        (
            _TfKerasHoldsKeras3,
            r"tf_keras _TfKerasHoldsKeras3 holding the "
            r"Keras 3 layer 'keras3_dense'",
        ),
    ],
    ids=["keras3_holds_tf_keras", "tf_keras_holds_keras3"],
)
def test_model_mixing_the_two_kerases_is_refused(make, message):
    with pytest.raises(ValueError, match=r"built from one Keras.*" + message):
        tflq.quantize_model(make())
    with pytest.raises(ValueError, match=message):
        tflq.quantize_apply(make())


def test_tflite_export_refuses_a_mixed_model_before_training(digits):
    x, y = digits
    inputs = tf_keras.Input((8, 8, 1))
    outputs = tf_keras.layers.Dense(10)(tf_keras.layers.Flatten()(inputs))
    model = compiled(tf_keras.Model(inputs, outputs, name="mixed"))
    model.keras3_head = keras.layers.Dense(3, name="stray")
    counter = BatchCounter()
    with pytest.raises(ValueError, match=r"holding the Keras 3 layer 'stray'"):
        model.fit(
            x,
            y,
            validation_split=0.2,
            epochs=1,
            callbacks=[tflq.TFLiteExport(verbose=0), counter],
            verbose=0,
        )
    assert counter.batches == 0
