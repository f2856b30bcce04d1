"""TFLiteExport(target="micro"): a checked TFLite Micro artifact from fit()."""

import json
import os
import sys

import keras
import numpy as np
import pytest

import keras_tflq
from keras_tflq import TFLiteExport
from keras_tflq.runtime.micro import allocates
from tests.helpers.models import BatchCounter


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"mode": "dynamic"},
            r"Expected a mode TensorFlow Lite Micro can run with "
            r'target="micro": "int8" .*"float32"\. '
            r"Received: mode='dynamic' \(.*no dynamic-range \(hybrid\) kernels",
        ),
        (
            {"mode": "float16"},
            r"Received: mode='float16' \(.*cannot dequantize float16 weights",
        ),
        (
            {"target": "mcu"},
            r"Expected `target` to be one of \('litert', 'micro'\)\. "
            r"Received: target='mcu'",
        ),
    ],
    ids=["dynamic", "float16", "unknown-target"],
)
def test_what_tflm_cannot_run_fails_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TFLiteExport(**{"target": "micro", **kwargs})


def test_missing_tflite_micro_names_the_extra(monkeypatch):
    # A None entry makes the import fail as if the package were absent.
    monkeypatch.setitem(sys.modules, "tflite_micro.python.tflite_micro", None)
    with pytest.raises(ImportError, match=r'pip install "keras-tflq\[micro\]"'):
        TFLiteExport(target="micro")
    TFLiteExport()  # The LiteRT target does not need it.


@pytest.mark.parametrize(
    "budget", [{}, {"max_drop": {"accuracy": 1.0}}], ids=["plain", "max_drop"]
)
def test_digits_cnn_exports_a_checked_micro_artifact(
    workdir, digits, cnn, monkeypatch, budget
):
    # Every report written, as the reader of the path sees it.
    reports = []
    replace = os.replace

    def recording(source, destination):
        if str(destination).endswith("digits_int8.json"):
            with open(source) as handle:
                reports.append(json.load(handle))
        return replace(source, destination)

    monkeypatch.setattr(os, "replace", recording)
    x, y = digits
    export = TFLiteExport(
        "digits_{mode}.tflite", target="micro", verbose=0, **budget
    )
    cnn.fit(
        x[:240],
        y[:240],
        validation_data=(x[240:400], y[240:400]),
        epochs=1,
        callbacks=[export],
        verbose=0,
    )
    micro = export.report["micro"]
    # The budget search's report (when it ran) gains the micro results.
    assert ("budget_met" in export.report) == bool(budget)
    assert {"AddConv2D", "AddMaxPool2D", "AddFullyConnected"} <= set(
        micro["ops"]
    )
    assert micro["flash_bytes"] == os.path.getsize("digits_int8.tflite")
    agreement = micro["litert_agreement"]
    assert agreement["source"] == "validation_data"
    assert agreement["samples"] == 32
    assert agreement["agreement"] in ("exact", "within one quantization step")
    assert all(o["max_steps"] <= 1 for o in agreement["outputs"])
    # The arena figure allocates; 10% less does not.
    content = open("digits_int8.tflite", "rb").read()
    assert allocates(content, micro["arena_bytes"])
    assert not allocates(content, int(micro["arena_bytes"] * 0.9))
    # The report on disk, written once with its micro key, and the C++
    # sources beside the artifact.
    assert json.load(open("digits_int8.json"))["micro"] == micro
    assert len(reports) == 1
    assert reports[0]["micro"] == micro
    assert sorted(os.listdir(workdir)) == [
        "digits_int8.cc",
        "digits_int8.h",
        "digits_int8.json",
        "digits_int8.tflite",
    ]
    header = open("digits_int8.h").read()
    assert f"g_digits_int8_model_data_size = {len(content)};" in header


def test_op_tflm_lacks_fails_before_the_first_batch(workdir, small_digits):
    x, y = small_digits
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Flatten(name="flatten")(inputs)
    h = keras.layers.Dense(16, activation="gelu", name="gelu_dense")(h)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    counter = BatchCounter()
    export = TFLiteExport("gelu.tflite", target="micro", verbose=0)
    with pytest.raises(
        keras_tflq.ConversionError,
        match=r"cannot run on TensorFlow Lite Micro: .*op GELU of layer "
        r"'gelu_dense'",
    ):
        model.fit(
            x,
            y,
            validation_split=0.25,
            epochs=1,
            callbacks=[counter, export],
            verbose=0,
        )
    assert counter.batches == 0
    assert os.listdir(workdir) == []


def test_litert_target_adds_no_micro_key(workdir, small_digits, cnn):
    x, y = small_digits
    export = TFLiteExport("d.tflite", mode="float32", verbose=0)
    cnn.fit(x, y, epochs=1, callbacks=[export], verbose=0)
    assert "micro" not in export.report
    assert sorted(os.listdir(workdir)) == ["d.json", "d.tflite"]
    assert np.isfinite(export.report["bytes"])


def test_tflm_disagreement_after_training_keeps_the_model(
    workdir, small_digits, cnn, monkeypatch
):
    from keras_tflq.runtime.micro import MicroError
    from keras_tflq.runtime.micro import analysis

    def disagreeing(*args, **kwargs):
        raise MicroError("simulated: output differs by 7 steps")

    # analyze_micro compares TFLM with LiteRT through this name.
    monkeypatch.setattr(analysis, "compare_with_litert", disagreeing)
    x, y = small_digits
    export = TFLiteExport("d.tflite", target="micro", verbose=0)
    with pytest.raises(
        keras_tflq.ConversionError,
        match=r"cannot run on TensorFlow Lite Micro: simulated: output "
        r"differs by 7 steps\. The trained model was saved to 'd\.keras'",
    ):
        cnn.fit(x, y, validation_split=0.25, epochs=1, callbacks=[export],
                verbose=0)
    assert keras.saving.load_model("d.keras").count_params() > 0
    # The LiteRT artifact was written; no C sources for an unchecked model.
    assert sorted(os.listdir(workdir)) == ["d.json", "d.keras", "d.tflite"]
