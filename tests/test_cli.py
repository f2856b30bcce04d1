import json
import os
import re
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_tflq as tflq  # noqa: E402
from keras_tflq.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small trained classifier, its float32 and int8 artifacts, and data."""
    folder = tmp_path_factory.mktemp("cli")
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((64, 4, 4, 1), dtype=np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0.5).astype(np.int64)
    inputs = keras.Input((4, 4, 1), name="image")
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    h = keras.layers.Flatten(name="flatten")(h)
    outputs = keras.layers.Dense(2, activation="softmax", name="probs")(h)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0)
    model.save(folder / "model.keras")

    def representative_dataset():
        for i in range(64):
            yield [x[i : i + 1]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    (folder / "float32.tflite").write_bytes(converter.convert())
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    (folder / "int8.tflite").write_bytes(converter.convert())
    np.savez(folder / "data.npz", x=x, y=y)
    np.savez(folder / "x_only.npz", x=x)
    expected = model.predict(x, verbose=0)
    return {
        "folder": folder,
        "accuracy": float(np.mean(expected.argmax(-1) == y)),
        **{k: str(folder / f) for k, f in [
            ("model", "model.keras"),
            ("float32", "float32.tflite"),
            ("int8", "int8.tflite"),
            ("data", "data.npz"),
            ("x_only", "x_only.npz"),
        ]},
    }


def test_inspect_prints_ops_types_size_and_float_ops(files, capsys):
    assert main(["inspect", files["float32"]]) == 0
    out = capsys.readouterr().out
    assert "bytes" in out
    assert "CONV_2D: 1" in out
    assert "FULLY_CONNECTED: 1" in out
    assert "all integer: no" in out
    assert "float ops left: " in out and "float ops left: 0" not in out
    assert "input image: float32 [-1, 4, 4, 1]" in out


def test_inspect_int8_has_no_float_ops_left(files, capsys):
    assert main(["inspect", files["int8"]]) == 0
    out = capsys.readouterr().out
    assert "all integer: yes" in out
    assert "float ops left: 0" in out
    assert "input image: int8 [-1, 4, 4, 1] (scale" in out


def test_inspect_json(files, capsys):
    assert main(["inspect", files["int8"], "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["all_integer"] is True
    assert report["bytes"] == os.path.getsize(files["int8"])


@pytest.mark.parametrize("artifact", ["float32", "int8"])
def test_evaluate_prints_accuracy_and_mse(files, capsys, artifact):
    assert main(["evaluate", files[artifact], "--data", files["data"]]) == 0
    out = capsys.readouterr().out
    assert "accuracy: " in out and "mse: " in out and "samples: 64" in out
    assert main(
        ["evaluate", files[artifact], "--data", files["data"], "--json"]
    ) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] == pytest.approx(files["accuracy"], abs=0.05)
    assert 0 <= metrics["mse"] < 1


@pytest.mark.parametrize("artifact", ["float32", "int8"])
def test_compare_reports_outputs_and_layers(files, capsys, artifact):
    argv = ["compare", files["model"], files[artifact], "--data", files["data"]]
    assert main(argv + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (output,) = report["outputs"]
    assert output["argmax_agreement"] >= 0.9
    layers = {entry["layer"]: entry for entry in report["layers"]}
    assert set(layers) == {"conv", "flatten", "probs"}
    for name in ("conv", "flatten"):
        assert layers[name]["tensor"] is not None
        tolerance = 1e-5 if artifact == "float32" else 0.05
        assert layers[name]["relative_diff"] <= tolerance
    # The softmax output is the artifact's output, not the logits tensor.
    assert layers["probs"]["tensor"] == "StatefulPartitionedCall_1:0"
    assert layers["probs"]["max_abs_diff"] <= output["max_abs_diff"]
    if artifact == "float32":
        assert output["max_abs_diff"] < 1e-5
        assert layers["conv"]["dtype"] == "float32"
    else:
        assert layers["conv"]["dtype"] == "int8"
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "argmax agreement" in out and "layer by layer" in out
    assert "conv: " in out


@pytest.mark.parametrize(
    "argv, match",
    [
        (
            ["inspect", "/no/such.tflite"],
            "model_content_or_path=/no/such.tflite",
        ),
        (
            ["evaluate", "{float32}", "--data", "/no/data.npz"],
            "Received: data=/no/data.npz",
        ),
        (
            ["evaluate", "{float32}", "--data", "{x_only}"],
            r"Expected `y` in .*Received: keys \['x'\]",
        ),
        (
            [
                "compare",
                "{model}",
                "{float32}",
                "--data",
                "{data}",
                "--layer-samples",
                "0",
            ],
            "Received: layer_samples=0",
        ),
    ],
    ids=["missing_tflite", "missing_data", "no_y", "zero_layer_samples"],
)
def test_bad_input_is_reported_on_stderr(files, capsys, argv, match):
    argv = [a.format(**files) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"keras-tflq {argv[0]}: error: ")
    assert re.search(match, err)


def test_no_command_prints_help(capsys):
    assert main([]) == 1
    assert "inspect" in capsys.readouterr().out


def test_unknown_command_exits_with_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_export_writes_int8_artifact_and_report(files, capsys):
    output = str(files["folder"] / "exported_int8.tflite")
    status = main(
        [
            "export",
            files["model"],
            "--mode",
            "int8",
            "--calibration",
            files["x_only"],
            "--validation",
            files["data"],
            "-o",
            output,
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert (
        printed.startswith(f"wrote {output} (")
        and "all integer: yes" in printed
    )
    report = json.loads(open(output[: -len(".tflite")] + ".json").read())
    assert report["calibration"] == {
        "source": "calibration_data (arrays)",
        "samples": 64,
    }
    assert report["inputs"][0]["dtype"] == "int8"
    assert report["tflite_metrics"]["loss"] > 0


def test_export_default_path_is_beside_the_model(files, capsys):
    assert main(["export", files["model"], "--mode", "float16"]) == 0
    assert os.path.isfile(str(files["folder"] / "model_float16.tflite"))


@pytest.mark.parametrize(
    "extra, match",
    [
        (
            ["--mode", "int4"],
            r"Expected mode to be one of .*Received: mode='int4'",
        ),
        (
            ["--mode", "int8"],
            r"Expected calibration_data for mode='int8' on a float model",
        ),
        (
            ["--mode", "dynamic", "--input-type", "int8"],
            r"Received: input_type='int8'",
        ),
    ],
    ids=["bad_mode", "no_calibration", "bad_io_type"],
)
def test_export_rejects_bad_arguments(files, capsys, extra, match):
    assert main(["export", files["model"], *extra]) == 1
    assert re.search(match, capsys.readouterr().err)


def _environment_without_log_level():
    """This process's environment as a user who never set the log level."""
    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


# A script that runs the CLI in a fresh interpreter and reports whether it
# imported TensorFlow (or Keras, or LiteRT) on the way.
_HELP_PROBE = """
import sys
from keras_tflq.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = {"tensorflow", "keras", "ai_edge_litert"} & set(sys.modules)
print("heavy modules:", sorted(heavy))
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["export", "--help"],
        ["inspect", "--help"],
        ["evaluate", "--help"],
        ["compare", "--help"],
    ],
    ids=["main", "export", "inspect", "evaluate", "compare"],
)
def test_help_prints_usage_without_importing_tensorflow(argv):
    result = subprocess.run(
        [sys.executable, "-c", _HELP_PROBE, *argv],
        capture_output=True,
        text=True,
        env=_environment_without_log_level(),
        check=True,
    )
    assert result.stdout.startswith("usage: keras-tflq")
    assert result.stdout.rstrip().endswith("heavy modules: []")
    assert result.stderr == ""


def test_module_entry_point_prints_usage():
    result = subprocess.run(
        [sys.executable, "-m", "keras_tflq.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith("usage: keras-tflq")
    assert result.stderr == ""


def test_tensorflow_log_level_silenced_unless_set(files, monkeypatch, capsys):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    assert main(["inspect", files["int8"]]) == 0
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert main(["inspect", files["int8"]]) == 0
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_export_loads_a_saved_qat_model_in_a_fresh_process(tmp_path):
    """Also: with TF_CPP_MIN_LOG_LEVEL unset, no TensorFlow start-up line."""
    keras.utils.set_random_seed(0)
    float_model = keras.Sequential(
        [
            keras.Input((4, 4, 1), name="image"),
            keras.layers.Conv2D(2, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    qat_model = tflq.quantize_model(float_model)
    qat_model.compile("adam", "mse")
    x = np.random.default_rng(0).random((16, 4, 4, 1), dtype=np.float32)
    qat_model.fit(x, np.zeros((16, 2)), epochs=1, verbose=0)
    qat_model.save(tmp_path / "qat.keras")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_tflq.cli",
            "export",
            str(tmp_path / "qat.keras"),
            "--mode",
            "int8",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=_environment_without_log_level(),
    )
    assert result.returncode == 0, result.stderr
    for start_up_line in ("InitializeLog", "oneDNN", "cuda drivers"):
        assert start_up_line not in result.stderr
    report = json.loads(result.stdout)
    assert report["quantization"] == "quantization-aware"
    assert report["all_integer"] is True
