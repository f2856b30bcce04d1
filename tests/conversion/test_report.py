"""The report beside every artifact, built from real conversions."""

import json
import os

import keras
import numpy as np
import tensorflow as tf

import keras_tflq as tflq
from keras_tflq.conversion.converter import convert_and_inspect
from keras_tflq.conversion.report import build_report
from keras_tflq.conversion.report import report_path


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 1), name="image")
    x = keras.layers.Conv2D(2, 3, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))


def test_report_path_sits_beside_the_artifact():
    assert report_path("out/model_int8.tflite") == "out/model_int8.json"


def test_report_of_a_dynamic_export(tmp_path):
    model = _model()
    content, inspection = convert_and_inspect(model, "dynamic")
    path = tmp_path / "m.tflite"
    report = build_report(
        model,
        str(path),
        content,
        inspection,
        "dynamic",
        epoch=3,
        keras_metrics={"loss": np.float32(0.25), "note": "x"},
        tflite_metrics={"accuracy": 0.5},
        conversion_seconds=1.23456,
    )
    assert report["path"] == os.path.abspath(path)
    assert report["bytes"] == len(content)
    assert report["mode"] == "dynamic"
    assert report["epoch"] == 3
    assert report["quantization"] == "post-training"
    assert report["calibration"] is None
    assert report["op_counts"] == inspection["op_counts"]
    assert report["keras_metrics"] == {"loss": 0.25, "note": "x"}
    assert type(report["keras_metrics"]["loss"]) is float
    assert report["tflite_metrics"] == {"accuracy": 0.5}
    assert report["conversion_seconds"] == 1.235
    assert report["versions"] == {
        "keras_tflq": tflq.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    json.dumps(report)  # JSON-serialisable as written


def test_quantization_kind_follows_the_model_and_mode():
    model = _model()
    content, inspection = convert_and_inspect(model, "float32")
    float_report = build_report(
        model, "m.tflite", content, inspection, "float32"
    )
    assert float_report["quantization"] == "none"
    qat_model = tflq.quantize_model(model)
    content, inspection = convert_and_inspect(qat_model, "int8")
    qat_report = build_report(
        qat_model, "q.tflite", content, inspection, "int8"
    )
    assert qat_report["quantization"] == "quantization-aware"
    assert qat_report["all_integer"] is True
