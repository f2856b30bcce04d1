"""`TFLiteExport(max_drop=...)`: the smallest artifact within an accuracy
budget, on models with an outlier unit (the case full int8 breaks)."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_tflq  # noqa: E402
from keras_tflq.conversion.converter import convert_model  # noqa: E402

OUTLIER_SCALE = 500.0


def _split(digits, flat):
    """The digits shuffled once: 1,400 to train on, the rest to score."""
    x, y = digits
    x = x.reshape(len(x), -1) if flat else x
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


def _add_outlier(layer, next_layer):
    """Scales unit 0 of `layer` by 500 and its weights in `next_layer` by
    1/500: the same function (ReLU is positively homogeneous), one unit
    500 times larger than the rest."""
    kernel, bias = layer.get_weights()
    kernel[..., 0] *= OUTLIER_SCALE
    bias[0] *= OUTLIER_SCALE
    layer.set_weights([kernel, bias])
    kernel, bias = next_layer.get_weights()
    if kernel.ndim == 2:
        kernel[0, :] /= OUTLIER_SCALE
    else:
        kernel[..., 0, :] /= OUTLIER_SCALE
    next_layer.set_weights([kernel, bias])


def _freeze(model):
    """Recompiles with a zero learning rate: the export fit() keeps the
    weights (and the outlier) as they are."""
    model.compile(
        keras.optimizers.SGD(0.0),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


@pytest.fixture(scope="module")
def outlier_mlp(digits):
    """A digits MLP whose second hidden layer has one x500 unit."""
    (x, y), validation = _split(digits, flat=True)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,), name="pixels"),
            keras.layers.Dense(32, activation="relu", name="dense_in"),
            keras.layers.Dense(32, activation="relu", name="outlier"),
            keras.layers.Dense(32, activation="relu", name="dense_mid"),
            keras.layers.Dense(10, activation="softmax", name="probs"),
        ],
        name="outlier_mlp",
    )
    model.compile(
        "adam", "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(x, y, epochs=12, batch_size=32, verbose=0)
    _add_outlier(model.get_layer("outlier"), model.get_layer("dense_mid"))
    return _freeze(model), (x, y), validation


@pytest.fixture(scope="module")
def outlier_cnn(digits):
    """A digits CNN whose first convolution has one x500 channel."""
    (x, y), validation = _split(digits, flat=False)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(10, activation="softmax")(h)
    model = keras.Model(inputs, outputs, name="outlier_cnn")
    model.compile(
        "adam", "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(x, y, epochs=4, batch_size=32, verbose=0)
    conv, next_conv = model.layers[1], model.layers[2]
    _add_outlier(conv, next_conv)
    return _freeze(model), (x, y), validation


def _export(model, data, validation, folder, **kwargs):
    x, y = data
    export = keras_tflq.TFLiteExport(
        str(folder / "{name}_{mode}.tflite"), verbose=0, **kwargs
    )
    model.fit(
        x[:64],
        y[:64],
        validation_data=validation,
        epochs=1,
        verbose=0,
        callbacks=[export],
    )
    return export


@pytest.mark.parametrize("fixture", ["outlier_mlp", "outlier_cnn"])
def test_budget_met_with_mixed_precision_smaller_than_float32(
    fixture, request, tmp_path
):
    model, data, validation = request.getfixturevalue(fixture)
    export = _export(
        model, data, validation, tmp_path, max_drop={"accuracy": 0.02}
    )
    report = export.report
    keras_accuracy = model.evaluate(*validation, verbose=0, return_dict=True)[
        "accuracy"
    ]
    # Full int8 breaks on the outlier: the search had work to do.
    assert report["candidates"][0]["budget_met"] is False
    assert report["budget_met"] is True
    assert report["tflite_metrics"]["accuracy"] >= keras_accuracy - 0.02
    precisions = set(report["layer_precision"].values())
    assert "int8" in precisions
    assert precisions & {"int16x8", "float32"}
    assert list(report["layer_precision"]) == [
        layer.name
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer)
    ]
    float32_bytes = len(convert_model(model, "float32"))
    assert os.path.getsize(export.exported_path) == report["bytes"]
    assert report["bytes"] < float32_bytes
    # The smallest candidate that met the budget was written.
    met = [c for c in report["candidates"] if c["budget_met"]]
    assert report["bytes"] == min(c["bytes"] for c in met)
    assert report["search"]["conversions"] >= len(report["candidates"])
    assert report["search"]["seconds"] > 0
    # The artifact written scores what the report says.
    scored = keras_tflq.LiteRTModel(model_path=export.exported_path).predict(
        validation[0]
    )
    accuracy = np.mean(scored.argmax(-1) == validation[1])
    assert accuracy == pytest.approx(report["tflite_metrics"]["accuracy"])
    on_disk = json.loads((tmp_path / f"{model.name}_int8.json").read_text())
    assert on_disk["layer_precision"] == report["layer_precision"]


def test_every_layer_has_a_precision_when_op_names_lose_the_layers(
    digits, tmp_path
):
    # A recurrent model converts through a concrete function: the
    # artifact's op names mention no Keras layer. The report still gives
    # every layer the precision it runs in.
    x, y = digits
    x, y = x[:32, ..., 0], y[:32]
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8), name="rows"),
            keras.layers.LSTM(4, name="lstm"),
            keras.layers.Dense(10, activation="softmax", name="probs"),
        ]
    )
    _freeze(model)
    export = _export(
        model,
        (x, y),
        (x, y),
        tmp_path,
        max_drop={"accuracy": 1.0},
    )
    report = export.report
    assert report["budget_met"] is True
    assert report["layer_precision"] == {"lstm": "int8", "probs": "int8"}
    assert report["candidates"][0]["layer_precision"]["int8"] == 2
    # Met at once: no float32 artifact is converted for a search.
    assert report["search"]["conversions"] == 1


def test_without_max_drop_the_export_is_unchanged(outlier_mlp, tmp_path):
    model, data, validation = outlier_mlp
    report = _export(model, data, validation, tmp_path).report
    for key in ("layer_precision", "budget_met", "candidates", "search"):
        assert key not in report
    assert report["all_integer"] is True
    assert report["input_type"] == "int8"


def test_impossible_budget_writes_the_most_accurate_and_warns(
    outlier_mlp, tmp_path
):
    model, data, validation = outlier_mlp
    # Calibrated on images 20 times darker than the real ones, the int8
    # input of every candidate clips the real images: no candidate can
    # keep the accuracy.
    with pytest.warns(UserWarning, match=r"no artifact of \d+ tried meets"):
        export = _export(
            model,
            data,
            validation,
            tmp_path,
            max_drop={"accuracy": 0.02},
            calibration_data=validation[0] * 0.05,
        )
    report = export.report
    assert report["budget_met"] is False
    assert os.path.isfile(export.exported_path)
    scores = [c["score"]["accuracy"] for c in report["candidates"]]
    assert report["tflite_metrics"]["accuracy"] == max(scores)
    # Every layer went up to float32 before the search gave up.
    assert any(
        c["layer_precision"]["float32"] == len(report["layer_precision"])
        for c in report["candidates"]
    )


@pytest.mark.parametrize(
    "max_drop",
    [
        -0.01,
        "0.01",
        {"accuracy": -0.1},
        {"accuracy": "1%"},
        {},
        {"accuracy": True},
        {"accuracy": float("nan")},
        {1: 0.1},
    ],
    ids=[
        "negative-number",
        "string",
        "negative",
        "non-numeric",
        "empty",
        "bool",
        "nan",
        "non-string-key",
    ],
)
def test_bad_budget_fails_at_construction(max_drop):
    with pytest.raises(ValueError, match=r"Expected `max_drop` to be a dict"):
        keras_tflq.TFLiteExport(max_drop=max_drop)


class _BatchCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_begin(self, batch, logs=None):
        self.batches += 1


@pytest.mark.parametrize(
    "kwargs, with_validation, match",
    [
        (
            {"max_drop": {"acc": 0.01}},
            True,
            r"Received: 'acc'; available: \['accuracy', 'loss'\]",
        ),
        (
            {"max_drop": {"accuracy": 0.01}, "mode": "float16"},
            True,
            r"Expected mode to be one of \('int8', 'int16x8'\).*mode='float16'",
        ),
        (
            {"max_drop": {"accuracy": 0.01}, "calibration_data": "calibration"},
            False,
            r"validation data to score the artifact against max_drop",
        ),
    ],
    ids=["unknown-metric", "float-mode", "no-validation-data"],
)
def test_budget_errors_fail_before_the_first_batch(
    outlier_mlp, tmp_path, kwargs, with_validation, match
):
    model, (x, y), validation = outlier_mlp
    if kwargs.get("calibration_data") == "calibration":
        kwargs = {**kwargs, "calibration_data": validation[0]}
    export = keras_tflq.TFLiteExport(
        str(tmp_path / "m.tflite"), verbose=0, **kwargs
    )
    counter = _BatchCounter()
    with pytest.raises(ValueError, match=match):
        model.fit(
            x[:64],
            y[:64],
            validation_data=validation if with_validation else None,
            epochs=1,
            verbose=0,
            callbacks=[export, counter],
        )
    assert counter.batches == 0
    assert not os.path.exists(tmp_path / "m.tflite")
