"""The command line's data files: `.npy` inputs, and one-line errors."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import json  # noqa: E402
import re  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_tflq.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_data")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile("adam", "mse")
    model.save(folder / "model.keras")
    x = np.random.default_rng(0).random((24, 4), dtype=np.float32)
    np.save(folder / "calib.npy", x)
    np.save(folder / "objects.npy", np.array([{"a": 1}], dtype=object))
    np.savez(folder / "data.npz", x=x, y=x[:, :2])
    (folder / "text.npy").write_text("not numpy\n")
    (folder / "truncated.npz").write_bytes(
        (folder / "data.npz").read_bytes()[:100]
    )
    return folder


def test_export_calibrates_on_an_npy_of_inputs(folder, capsys):
    output = str(folder / "m_int8.tflite")
    status = main(
        [
            "export",
            str(folder / "model.keras"),
            "--mode",
            "int8",
            "--calibration",
            str(folder / "calib.npy"),
            "-o",
            output,
        ]
    )
    assert status == 0, capsys.readouterr().err
    report = json.loads(open(output[: -len(".tflite")] + ".json").read())
    assert report["calibration"]["samples"] == 24
    assert report["all_integer"]


def test_evaluate_says_it_needs_an_npz_with_labels(folder, capsys):
    main(["export", str(folder / "model.keras"), "--mode", "float32"])
    capsys.readouterr()
    status = main(
        [
            "evaluate",
            str(folder / "model_float32.tflite"),
            "--data",
            str(folder / "calib.npy"),
        ]
    )
    assert status == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Expected an .npz with `x` and `y` to evaluate on" in err


@pytest.mark.parametrize(
    "name, match",
    [
        ("missing.npy", r"Expected an existing file for `data`"),
        ("text.npy", r"Expected a NumPy .npz or .npy data file .*text.npy"),
        ("truncated.npz", r"Expected a NumPy .npz or .npy .*truncated.npz"),
        ("objects.npy", r"Expected a NumPy .npz or .npy .*objects.npy"),
    ],
    ids=["missing", "not_numpy", "truncated", "pickled_objects"],
)
def test_every_unreadable_data_file_is_a_one_line_error(
    folder, capsys, name, match
):
    status = main(
        [
            "export",
            str(folder / "model.keras"),
            "--mode",
            "int8",
            "--calibration",
            str(folder / name),
        ]
    )
    assert status == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("keras-tflq export: error:")
    assert re.search(match, err), err


def test_loading_a_compiled_model_does_not_warn_about_its_optimizer(folder):
    # The commands never train: the saved optimizer's state is not needed,
    # and Keras' warning that it skipped loading it is noise.
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = main(
            [
                "export",
                str(folder / "model.keras"),
                "--mode",
                "float32",
                "-o",
                str(folder / "quiet.tflite"),
            ]
        )
    assert status == 0
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "optimizer" in m], messages
