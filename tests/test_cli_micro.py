"""`keras-tflq micro`: the TFLite Micro checks on any artifact."""

import json
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_tflq.cli import main  # noqa: E402


def _int8(model, x):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in x)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An int8 conv artifact, one with GELU (no TFLM kernel), and data."""
    folder = tmp_path_factory.mktemp("cli_micro")
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((40, 6, 6, 1), dtype=np.float32)
    inputs = keras.Input((6, 6, 1), name="image")
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    h = keras.layers.Flatten(name="flatten")(h)
    conv = keras.Model(inputs, keras.layers.Dense(3, name="logits")(h))
    (folder / "conv_int8.tflite").write_bytes(_int8(conv, x))
    h = keras.layers.Flatten(name="flatten")(inputs)
    h = keras.layers.Dense(5, activation="gelu", name="gelu_dense")(h)
    gelu = keras.Model(inputs, keras.layers.Dense(3, name="logits")(h))
    (folder / "gelu_int8.tflite").write_bytes(_int8(gelu, x))
    np.savez(folder / "data.npz", x=x)
    np.savez(folder / "wrong.npz", features=x)
    names = ("conv_int8.tflite", "gelu_int8.tflite", "data.npz", "wrong.npz")
    return {name: str(folder / name) for name in names}


def test_text_report(files, capsys):
    assert main(["micro", files["conv_int8.tflite"]]) == 0
    out = capsys.readouterr().out
    assert "runs on TensorFlow Lite Micro" in out
    assert "arena: " in out and "flash: " in out
    assert "ops: AddConv2D, AddFullyConnected" in out
    assert "on 32 random samples" in out


def test_json_with_data_and_sources(files, capsys, tmp_path):
    argv = [
        "micro",
        files["conv_int8.tflite"],
        "--json",
        "--data",
        files["data.npz"],
        "--emit-c",
        str(tmp_path / "firmware"),
    ]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["flash_bytes"] == os.path.getsize(files["conv_int8.tflite"])
    assert report["arena_bytes"] > 0
    assert report["litert_agreement"]["source"] == "data"
    assert report["litert_agreement"]["samples"] == 32
    assert report["litert_agreement"]["agreement"] in (
        "exact",
        "within one quantization step",
    )
    assert sorted(os.listdir(tmp_path / "firmware")) == [
        "conv_int8.cc",
        "conv_int8.h",
    ]
    source = (tmp_path / "firmware/conv_int8.cc").read_text()
    assert "resolver.AddConv2D()" in source


@pytest.mark.parametrize(
    "args, message",
    [
        (["gelu_int8.tflite"], r"op GELU \(output tensor '.*gelu_dense"),
        (["missing.tflite"], r"Expected an existing file for `tflite`"),
        (
            ["conv_int8.tflite", "--data", "wrong.npz"],
            r"Expected `x`.* Received: keys \['features'\]",
        ),
    ],
    ids=["op-tflm-lacks", "missing-file", "data-without-x"],
)
def test_errors_are_one_line_and_exit_non_zero(files, capsys, args, message):
    argv = ["micro"] + [files.get(a, a) for a in args]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("keras-tflq micro: error: ")
    assert "\n" not in err
    assert re.search(message, err), err
