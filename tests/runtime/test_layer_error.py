"""Per-layer error of an artifact against its Keras model: metrics, the
layer <-> tensor mapping, the JSON and PNG report, `keras-tflq compare`."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_tflq  # noqa: E402
from keras_tflq.cli import main  # noqa: E402
from keras_tflq.conversion.converter import convert_model  # noqa: E402
from keras_tflq.runtime.layer_error import SNR_CAP_DB  # noqa: E402
from keras_tflq.runtime.layer_error import error_metrics  # noqa: E402
from keras_tflq.runtime.layer_error import layer_errors  # noqa: E402


def _plot():
    """matplotlib's image reader and the chart size, or a skip without the
    `plot` extra (the JSON is written either way)."""
    image = pytest.importorskip("matplotlib.image", reason="the `plot` extra")
    from keras_tflq.runtime.layer_error_plot import chart_size

    return image, chart_size


@pytest.fixture(scope="module")
def digits_cnn(digits):
    """A digits CNN with Keras' default layer names (conv2d, conv2d_1...),
    whose uniquified name scopes the mapping must tell apart."""
    x, y = digits
    # Default names count from zero again, whatever ran before.
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(8, 3, padding="same")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(10, activation="softmax")(h)
    model = keras.Model(inputs, outputs, name="digits_cnn")
    model.compile(
        "adam", "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(x[:1200], y[:1200], epochs=2, verbose=0)
    return model, (x[1200:], y[1200:])


def test_error_metrics_of_an_exact_match_and_of_known_noise():
    expected = np.linspace(-1.0, 1.0, 1000)
    exact = error_metrics(expected, expected)
    assert exact == {
        "relative_rmse": 0.0,
        "rmse": 0.0,
        "snr_db": SNR_CAP_DB,
        "cosine": pytest.approx(1.0),
    }
    noise = np.where(np.arange(1000) % 2 == 0, 0.01, -0.01)
    noisy = error_metrics(expected, expected + noise)
    assert noisy["rmse"] == pytest.approx(0.01)
    assert noisy["relative_rmse"] == pytest.approx(0.01 / 2.0)
    signal = np.mean(expected**2)
    assert noisy["snr_db"] == pytest.approx(10 * np.log10(signal / 1e-4))
    assert 0.999 < noisy["cosine"] < 1.0


def _calibration(x):
    def representative_dataset():
        for i in range(100):
            yield {"image": x[i : i + 1]}

    return representative_dataset


def test_every_layer_maps_to_its_own_tensor(digits_cnn):
    model, (x, _) = digits_cnn
    content = convert_model(model, "float32")
    errors = layer_errors(model, content, {"image": x[:32]})
    by_layer = {e["layer"]: e for e in errors}
    # Conv2D + separate ReLU fuse into one op: conv2d_1 has no tensor of its
    # own, re_lu has the fused output.
    assert set(by_layer) == {"conv2d", "re_lu", "flatten", "dense"}
    assert "conv2d_1" in by_layer["re_lu"]["tensor"]
    for entry in errors:
        assert entry["precision"] == "float32"
        assert entry["relative_rmse"] < 1e-5
        assert entry["cosine"] == pytest.approx(1.0, abs=1e-6)


def test_int8_errors_are_sorted_worst_first_and_small(digits_cnn):
    model, (x, _) = digits_cnn
    content = convert_model(
        model,
        "int8",
        representative_dataset=_calibration(x),
        input_type="int8",
        output_type="int8",
    )
    errors = layer_errors(model, content, {"image": x[:32]})
    values = [e["relative_rmse"] for e in errors]
    assert values == sorted(values, reverse=True)
    assert {e["precision"] for e in errors} == {"int8"}
    assert 0 < max(values) < 0.05
    assert min(e["snr_db"] for e in errors) > 15


def test_layer_report_writes_json_and_a_png_of_the_right_size(
    digits_cnn, tmp_path
):
    model, (x, y) = digits_cnn
    image_reader, chart_size = _plot()
    export = keras_tflq.TFLiteExport(
        str(tmp_path / "cnn_{mode}.tflite"), layer_report=True, verbose=0
    )
    model.fit(
        x[:32],
        y[:32],
        validation_data=(x, y),
        epochs=1,
        verbose=0,
        callbacks=[export],
    )
    written = export.report["layer_report"]
    assert written["json"] == str(tmp_path / "cnn_int8_layers.json")
    layers = json.loads((tmp_path / "cnn_int8_layers.json").read_text())[
        "layers"
    ]
    assert [e["layer"] for e in layers][0] == max(
        layers, key=lambda e: e["relative_rmse"]
    )["layer"]
    report = json.loads((tmp_path / "cnn_int8.json").read_text())
    assert report["layer_report"] == written
    image = image_reader.imread(written["png"])
    width, height = chart_size(len(layers))
    assert image.shape[:2] == (height, width)
    assert image[..., :3].std() > 0.05  # bars and text, not a blank image


def test_layer_report_without_data_fails_before_training(digits_cnn, tmp_path):
    model, (x, y) = digits_cnn
    export = keras_tflq.TFLiteExport(
        str(tmp_path / "m.tflite"), mode="float32", layer_report=True
    )
    with pytest.raises(ValueError, match=r"to compare layers on"):
        model.fit(x[:32], y[:32], epochs=1, verbose=0, callbacks=[export])


def test_compare_writes_the_layer_report_beside_the_artifact(
    digits_cnn, tmp_path, capsys
):
    model, (x, y) = digits_cnn
    image_reader, chart_size = _plot()
    model.save(tmp_path / "model.keras")
    (tmp_path / "m_int8.tflite").write_bytes(
        convert_model(
            model,
            "int8",
            representative_dataset=_calibration(x),
            input_type="int8",
            output_type="int8",
        )
    )
    np.savez(tmp_path / "val.npz", x=x[:64], y=y[:64])
    argv = [
        "compare",
        str(tmp_path / "model.keras"),
        str(tmp_path / "m_int8.tflite"),
        "--data",
        str(tmp_path / "val.npz"),
    ]
    assert main(argv) == 0
    assert "per-layer error: " in capsys.readouterr().out
    layers = json.loads((tmp_path / "m_int8_layers.json").read_text())["layers"]
    assert {e["layer"] for e in layers} == {
        "conv2d",
        "re_lu",
        "flatten",
        "dense",
    }
    image = image_reader.imread(tmp_path / "m_int8_layers.png")
    assert image.shape[:2] == chart_size(len(layers))[::-1]
