"""TFLiteExport driven as a user drives it: real fit(), real conversions, real
LiteRT runs."""

import csv
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_tflq
from keras_tflq import TFLiteExport
from keras_tflq.runtime.litert_model import LiteRTModel
from tests.helpers.models import BatchCounter
from tests.helpers.models import Sine
from tests.helpers.models import io_dtypes
from tests.helpers.models import make_cnn
from tests.helpers.models import tensor_dtypes

# --------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"mode": "int4"},
            r"Expected mode to be one of \('float32', .*Received: mode='int4'",
        ),
        (
            {"filepath": "model.h5"},
            r"end with '.tflite'. Received: filepath='model.h5'",
        ),
        ({"filepath": "m_{epoch.tflite"}, r"valid filepath template"),
        (
            {"calibration_samples": 0},
            r"positive integer. Received: calibration_samples=0",
        ),
        (
            {"mode": "float16", "input_type": "int8"},
            r"input_type to be one of \('float32',\) .*Received: "
            r"input_type='int8'",
        ),
        (
            {"mode": "int8", "output_type": "int16"},
            r"output_type to be one of \('int8', 'uint8', 'float32'\)",
        ),
        (
            {"export_freq": "weekly"},
            r"export_freq to be 'end', 'epoch' or a positive integer. "
            r"Received: export_freq='weekly'",
        ),
        ({"export_freq": 0}, r"Received: export_freq=0"),
        (
            {"save_best_only": True},
            r"export_freq='epoch' or an integer with save_best_only=True",
        ),
        (
            {"monitor_mode": "up"},
            r"monitor_mode to be one of .*Received: monitor_mode='up'",
        ),
        ({"evaluate": "yes"}, r"Received: evaluate='yes'"),
        ({"verbose": 3}, r"Received: verbose=3"),
        ({"allow_float_ops": 1}, r"True or False. Received: allow_float_ops=1"),
        (
            {"calibration_data": 5},
            r"Expected an array, .*Received: data of type int",
        ),
    ],
    ids=lambda value: str(value)[:40] if isinstance(value, dict) else "",
)
def test_bad_argument_fails_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TFLiteExport(**kwargs)


def test_io_types_accept_tensorflow_and_numpy_dtypes():
    export = TFLiteExport(
        mode="int8", input_type=tf.uint8, output_type=np.float32
    )
    assert (export.input_type, export.output_type) == ("uint8", "float32")


# ---------------------------------------------------------------- modes


@pytest.mark.parametrize(
    "mode, io, must_contain, must_not_contain",
    [
        ("float32", "float32", {"float32"}, {"int8", "float16"}),
        ("float16", "float32", {"float16"}, {"int8"}),
        ("dynamic", "float32", {"int8", "float32"}, {"float16"}),
        ("int8", "int8", {"int8", "int32"}, {"float32", "float16"}),
        ("int16x8", "float32", {"int16", "int8"}, {"float16"}),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_each_mode_writes_artifact_with_its_tensor_types(
    workdir, cnn, small_digits, mode, io, must_contain, must_not_contain
):
    x, y = small_digits
    export = TFLiteExport(mode=mode, verbose=0)
    cnn.fit(
        x, y, validation_split=0.25, epochs=1, callbacks=[export], verbose=0
    )

    path = workdir / f"digits_cnn_{mode}.tflite"
    assert export.exported_path == f"digits_cnn_{mode}.tflite"
    assert path.is_file()
    dtypes = tensor_dtypes(path)
    assert must_contain <= dtypes
    assert not (must_not_contain & dtypes)
    assert io_dtypes(path) == ([io], [io])
    assert export.report["mode"] == mode
    assert export.report["bytes"] == path.stat().st_size


def test_int8_export_keeps_digits_accuracy_within_one_point(workdir, digits):
    """The issue's acceptance check: float CNN -> int8 artifact on held-out
    digits."""
    x, y = digits
    x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]
    model = make_cnn(width=16)
    export = TFLiteExport(mode="int8", verbose=0)
    model.fit(
        x_train,
        y_train,
        validation_split=0.2,
        epochs=10,
        batch_size=32,
        callbacks=[export],
        verbose=0,
    )

    float_accuracy = np.mean(
        np.argmax(model.predict(x_test, verbose=0), -1) == y_test
    )
    artifact = LiteRTModel(model_path=export.exported_path)
    int8_accuracy = np.mean(np.argmax(artifact.predict(x_test), -1) == y_test)

    assert float_accuracy > 0.93
    assert abs(float_accuracy - int8_accuracy) <= 0.01
    assert tensor_dtypes(export.exported_path) <= {"int8", "int32"}
    assert export.report["all_integer"] is True
    assert export.report["float_ops"] == []


@pytest.mark.parametrize("io_type", ["uint8", "float32"])
def test_int8_io_type_is_selectable(workdir, cnn, small_digits, io_type):
    x, y = small_digits
    export = TFLiteExport(
        mode="int8", input_type=io_type, output_type=io_type, verbose=0
    )
    cnn.fit(
        x, y, validation_split=0.25, epochs=1, callbacks=[export], verbose=0
    )
    assert io_dtypes(export.exported_path) == ([io_type], [io_type])
    assert export.report["inputs"][0]["dtype"] == io_type
    # The artifact still scores what the model scores.
    assert (
        abs(
            export.report["tflite_metrics"]["accuracy"]
            - export.report["keras_metrics"]["val_accuracy"]
        )
        < 0.05
    )


# ------------------------------------------------ calibration from fit()


def _validation_forms(x, y):
    x_val, y_val = x[180:], y[180:]
    weights = np.ones(len(y_val), "float32")

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            sl = slice(index * 15, (index + 1) * 15)
            return x_val[sl], y_val[sl]

    return {
        "tuple": {"validation_data": (x_val, y_val)},
        "tuple_with_weights": {"validation_data": (x_val, y_val, weights)},
        "split": {"validation_split": 0.25},
        "dataset": {
            "validation_data": tf.data.Dataset.from_tensor_slices(
                (x_val, y_val)
            ).batch(16)
        },
        "py_dataset": {"validation_data": Batches()},
    }


@pytest.mark.parametrize(
    "form", ["tuple", "tuple_with_weights", "split", "dataset", "py_dataset"]
)
def test_int8_calibrates_on_every_validation_form(
    workdir, cnn, small_digits, form
):
    x, y = small_digits
    fit_kwargs = _validation_forms(x, y)[form]
    train = (x[:180], y[:180]) if form != "split" else (x, y)
    export = TFLiteExport(mode="int8", calibration_samples=50, verbose=0)
    cnn.fit(*train, epochs=1, callbacks=[export], verbose=0, **fit_kwargs)

    assert export.report["calibration"]["samples"] == 50
    assert export.report["calibration"]["source"].startswith("validation_data")
    assert tensor_dtypes(export.exported_path) <= {"int8", "int32"}
    # Evaluated on the same validation data: close to the Keras validation
    # accuracy.
    logs = cnn.history.history
    assert (
        abs(logs["val_tflite_accuracy"][-1] - logs["val_accuracy"][-1]) < 0.05
    )


def _two_input_model(dict_inputs):
    keras.utils.set_random_seed(0)
    image = keras.Input((8, 8, 1), name="image")
    extra = keras.Input((3,), name="extra")
    x = keras.layers.Flatten()(
        keras.layers.Conv2D(4, 3, activation="relu")(image)
    )
    x = keras.layers.Concatenate()(
        [x, keras.layers.Dense(4, activation="relu")(extra)]
    )
    outputs = keras.layers.Dense(10)(x)
    inputs = {"image": image, "extra": extra} if dict_inputs else [image, extra]
    model = keras.Model(inputs, outputs, name="two_inputs")
    model.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


@pytest.mark.parametrize("dict_inputs", [False, True], ids=["list", "dict"])
def test_multi_input_model_calibrates_and_evaluates(
    workdir, small_digits, dict_inputs
):
    x, y = small_digits
    extra = np.random.default_rng(0).random((len(x), 3)).astype("float32")
    inputs = {"image": x, "extra": extra} if dict_inputs else [x, extra]
    model = _two_input_model(dict_inputs)
    export = TFLiteExport(mode="int8", verbose=0)
    model.fit(
        inputs,
        y,
        validation_split=0.25,
        epochs=1,
        callbacks=[export],
        verbose=0,
    )

    assert sorted(i["name"] for i in export.report["inputs"]) == [
        "extra",
        "image",
    ]
    assert tensor_dtypes(export.exported_path) <= {"int8", "int32"}
    assert (
        abs(
            export.report["tflite_metrics"]["accuracy"]
            - export.report["keras_metrics"]["val_accuracy"]
        )
        < 0.05
    )


def _calibration_forms(x):
    def generator():
        for start in range(0, 64, 16):
            yield x[start : start + 16]

    return {
        "array": x[:64],
        "tuple": (x[:64], np.zeros(64)),
        "dataset": tf.data.Dataset.from_tensor_slices(x[:64]).batch(16),
        "generator": generator(),
        "callable": generator,
    }


@pytest.mark.parametrize(
    "form", ["array", "tuple", "dataset", "generator", "callable"]
)
def test_calibration_data_overrides_validation_data(
    workdir, cnn, small_digits, form
):
    x, y = small_digits
    export = TFLiteExport(
        mode="int8", calibration_data=_calibration_forms(x)[form], verbose=0
    )
    cnn.fit(
        x, y, epochs=1, callbacks=[export], verbose=0
    )  # no validation data at all
    assert export.report["calibration"] == {
        "source": f"calibration_data ({export._calibration.source.kind})",
        "samples": 64,
    }
    assert tensor_dtypes(export.exported_path) <= {"int8", "int32"}
    assert export.report["tflite_metrics"] == {}


def test_calibration_reads_only_the_batches_it_needs(
    workdir, cnn, small_digits
):
    x, y = small_digits
    reads = []

    class Counting(keras.utils.PyDataset):
        def __len__(self):
            return 30

        def __getitem__(self, index):
            reads.append(index)
            return x[index * 8 : index * 8 + 8]

    export = TFLiteExport(
        mode="int8",
        calibration_data=Counting(),
        calibration_samples=20,
        verbose=0,
    )
    cnn.fit(x, y, epochs=1, callbacks=[export], verbose=0)
    assert export.report["calibration"]["samples"] == 20
    assert reads == [0, 1, 2]  # 3 batches of 8 cover 20 samples, read once


# ------------------------------------------------------------ when to export


def test_epoch_template_writes_one_artifact_per_epoch(
    workdir, cnn, small_digits
):
    x, y = small_digits
    export = TFLiteExport(
        "out/{name}_{epoch:02d}_{val_loss:.3f}.tflite",
        mode="dynamic",
        export_freq="epoch",
        verbose=0,
    )
    cnn.fit(
        x, y, validation_split=0.25, epochs=2, callbacks=[export], verbose=0
    )
    losses = cnn.history.history["val_loss"]
    expected = {
        f"digits_cnn_{e + 1:02d}_{loss:.3f}.tflite"
        for e, loss in enumerate(losses)
    }
    assert {p.name for p in (workdir / "out").glob("*.tflite")} == expected
    assert len(list((workdir / "out").glob("*.json"))) == 2


def test_integer_export_freq_exports_every_n_epochs(workdir, cnn, small_digits):
    x, y = small_digits
    export = TFLiteExport(
        "m_{epoch}.tflite", mode="float32", export_freq=2, verbose=0
    )
    cnn.fit(x, y, epochs=5, callbacks=[export], verbose=0)
    assert sorted(p.name for p in workdir.glob("*.tflite")) == [
        "m_2.tflite",
        "m_4.tflite",
    ]


@pytest.mark.parametrize(
    "monitor, monitor_mode",
    [("val_loss", "auto"), ("val_accuracy", "auto"), ("val_accuracy", "min")],
)
def test_save_best_only_exports_when_monitor_improves(
    workdir, cnn, small_digits, monitor, monitor_mode
):
    x, y = small_digits
    export = TFLiteExport(
        "best_{epoch}.tflite",
        mode="float32",
        export_freq="epoch",
        save_best_only=True,
        monitor=monitor,
        monitor_mode=monitor_mode,
        evaluate=False,
        verbose=0,
    )
    cnn.fit(
        x, y, validation_split=0.25, epochs=4, callbacks=[export], verbose=0
    )
    values = cnn.history.history[monitor]
    maximize = monitor_mode == "auto" and "acc" in monitor
    best, expected = None, set()
    for epoch, value in enumerate(values):
        if best is None or (value > best if maximize else value < best):
            best = value
            expected.add(f"best_{epoch + 1}.tflite")
    assert {p.name for p in workdir.glob("*.tflite")} == expected


def test_missing_monitor_key_is_named(workdir, cnn, small_digits):
    x, y = small_digits
    # An explicit mode: with "auto", on_train_begin already refuses a key
    # whose direction no compiled metric tells (test_review_defects.py).
    export = TFLiteExport(
        mode="float32",
        export_freq="epoch",
        save_best_only=True,
        monitor="val_auc",
        monitor_mode="max",
        verbose=0,
    )
    with pytest.raises(
        ValueError, match=r"monitor='val_auc', logs keys=\['accuracy', 'loss'"
    ):
        cnn.fit(x, y, epochs=1, callbacks=[export], verbose=0)


def test_early_stopping_still_exports_final_model(workdir, cnn, small_digits):
    x, y = small_digits
    stop = keras.callbacks.EarlyStopping(
        monitor="loss", patience=0, min_delta=10.0
    )
    export = TFLiteExport(mode="float32", verbose=0)
    cnn.fit(x, y, epochs=10, callbacks=[stop, export], verbose=0)
    assert len(cnn.history.history["loss"]) < 10
    assert os.path.isfile("digits_cnn_float32.tflite")
    assert export.report["epoch"] == len(cnn.history.history["loss"])


# ------------------------------------------------------------- evaluation


def test_evaluation_reaches_history_and_csv_logger(workdir, cnn, small_digits):
    x, y = small_digits
    export = TFLiteExport(mode="int8", export_freq="epoch", verbose=0)
    logger = keras.callbacks.CSVLogger("log.csv")
    cnn.fit(
        x,
        y,
        validation_split=0.25,
        epochs=2,
        callbacks=[export, logger],
        verbose=0,
    )

    history = cnn.history.history
    assert len(history["val_tflite_accuracy"]) == 2
    assert len(history["val_tflite_loss"]) == 2
    assert np.allclose(
        history["val_tflite_accuracy"], history["val_accuracy"], atol=0.05
    )
    rows = list(csv.DictReader(open("log.csv")))
    assert [float(r["val_tflite_accuracy"]) for r in rows] == pytest.approx(
        history["val_tflite_accuracy"]
    )


def test_float32_artifact_scores_exactly_what_keras_scores(
    workdir, cnn, small_digits
):
    x, y = small_digits
    weights = np.linspace(0.5, 2.0, 60).astype("float32")
    export = TFLiteExport(mode="float32", verbose=0)
    cnn.fit(
        x[:180],
        y[:180],
        validation_data=(x[180:], y[180:], weights),
        epochs=1,
        callbacks=[export],
        verbose=0,
    )
    history = cnn.history.history
    assert history["val_tflite_loss"][-1] == pytest.approx(
        history["val_loss"][-1], rel=1e-4
    )
    assert history["val_tflite_accuracy"][-1] == pytest.approx(
        history["val_accuracy"][-1]
    )


def test_multi_output_model_is_scored_per_output(workdir, small_digits):
    x, y = small_digits
    inputs = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Flatten()(inputs)
    model = keras.Model(
        inputs,
        [
            keras.layers.Dense(10, name="digit")(h),
            keras.layers.Dense(1, name="is_even")(h),
        ],
    )
    model.compile(
        "adam",
        loss=[
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "mse",
        ],
        metrics=[["accuracy"], ["mae"]],
    )
    targets = [y, (y % 2 == 0).astype("float32")]
    export = TFLiteExport(mode="float32", verbose=0)
    model.fit(
        x,
        targets,
        validation_split=0.25,
        epochs=1,
        callbacks=[export],
        verbose=0,
    )
    history = model.history.history
    for key in ("digit_accuracy", "is_even_mae", "loss"):
        assert history[f"val_tflite_{key}"][-1] == pytest.approx(
            history[f"val_{key}"][-1], rel=1e-3
        )


def test_evaluate_without_validation_data_fails_before_training(
    workdir, cnn, small_digits
):
    x, y = small_digits
    counter = BatchCounter()
    with pytest.raises(
        ValueError,
        match=(
            r"validation data to evaluate the artifact.*Received: "
            r"evaluate=True"
        ),
    ):
        cnn.fit(
            x,
            y,
            epochs=1,
            callbacks=[TFLiteExport(mode="float32", evaluate=True), counter],
            verbose=0,
        )
    assert counter.batches == 0


# ------------------------------------------------------------------ report


def test_report_is_written_beside_the_artifact(workdir, cnn, small_digits):
    x, y = small_digits
    export = TFLiteExport(mode="int8", verbose=0)
    cnn.fit(
        x, y, validation_split=0.25, epochs=1, callbacks=[export], verbose=0
    )
    report = json.loads((workdir / "digits_cnn_int8.json").read_text())
    assert report == json.loads(json.dumps(export.report))
    assert report["path"] == str(workdir / "digits_cnn_int8.tflite")
    assert report["quantization"] == "post-training"
    assert report["calibration"] == {
        "source": "validation_data (arrays)",
        "samples": 60,
    }
    assert report["input_type"] == report["inputs"][0]["dtype"] == "int8"
    assert len(report["inputs"][0]["quantization"]["scale"]) == 1
    assert (
        report["op_counts"]["CONV_2D"] == 1
        and report["op_counts"]["FULLY_CONNECTED"] == 1
    )
    assert report["versions"] == {
        "keras_tflq": keras_tflq.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    assert set(report["tflite_metrics"]) == {"accuracy", "loss"}


# ------------------------------------------------------- fault contract


def test_no_calibration_source_fails_before_the_first_batch(
    workdir, cnn, small_digits
):
    x, y = small_digits
    counter = BatchCounter()
    with pytest.raises(
        ValueError,
        match=r"calibration data for mode='int8'.*Received: no validation data",
    ):
        cnn.fit(
            x,
            y,
            epochs=1,
            callbacks=[TFLiteExport(mode="int8"), counter],
            verbose=0,
        )
    assert counter.batches == 0
    assert not list(workdir.iterdir())


def test_unwritable_destination_fails_before_the_first_batch(
    workdir, cnn, small_digits
):
    x, y = small_digits
    (workdir / "not_a_folder").write_text("a file")
    counter = BatchCounter()
    with pytest.raises(
        ValueError,
        match=r"writable folder .*Received: filepath='not_a_folder/m.tflite'",
    ):
        cnn.fit(
            x,
            y,
            epochs=1,
            callbacks=[
                TFLiteExport("not_a_folder/m.tflite", mode="float32"),
                counter,
            ],
            verbose=0,
        )
    assert counter.batches == 0


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            "nan",
            r"finite calibration values. Received: NaN or Inf in input 'image' "
            r"of sample 3",
        ),
        (
            "empty",
            r"at least one calibration sample. Received: an empty "
            r"calibration_data",
        ),
        (
            "shape",
            r"input 'image' with shape \(None, 8, 8, 1\) in calibration_data. "
            r"Received: shape=\(1, 8, 8\)",
        ),
    ],
)
def test_bad_calibration_data_fails_before_training_and_writes_nothing(
    workdir, cnn, small_digits, bad, message
):
    x, y = small_digits
    calibration = {
        "nan": x[:10].copy(),
        "empty": x[:0],
        "shape": x[:10, ..., 0],
    }[bad]
    if bad == "nan":
        calibration[3, 2, 2, 0] = np.nan
    counter = BatchCounter()
    with pytest.raises(ValueError, match=message):
        cnn.fit(
            x,
            y,
            epochs=1,
            callbacks=[
                TFLiteExport(mode="int8", calibration_data=calibration),
                counter,
            ],
            verbose=0,
        )
    assert counter.batches == 0
    assert not list(workdir.iterdir())


def test_non_tensorflow_backend_fails_before_training(
    workdir, cnn, small_digits, monkeypatch
):
    x, y = small_digits
    export = TFLiteExport(mode="float32")
    export.set_model(cnn)
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(
        ValueError, match=r"TensorFlow backend .*Received: backend='jax'"
    ):
        export.on_train_begin()


def _model_with_float_only_op():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    x = Sine(name="sine_features")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10)(x), name="sine_model")
    model.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def test_model_the_converter_rejects_fails_before_training(
    workdir, small_digits
):
    x, y = small_digits
    counter = BatchCounter()
    with pytest.raises(
        keras_tflq.ConversionError,
        match=r"integer in mode='int8'.*SIN at .*sine_features",
    ):
        _model_with_float_only_op().fit(
            x,
            y,
            validation_split=0.25,
            epochs=1,
            callbacks=[TFLiteExport(mode="int8"), counter],
            verbose=0,
        )
    assert counter.batches == 0


def test_float_fallback_is_listed_in_the_report(workdir, small_digits):
    x, y = small_digits
    export = TFLiteExport(mode="int8", allow_float_ops=True, verbose=0)
    _model_with_float_only_op().fit(
        x, y, validation_split=0.25, epochs=1, callbacks=[export], verbose=0
    )
    assert [
        op["op"]
        for op in export.report["float_ops"]
        if op["op"] != "DEQUANTIZE"
    ] == ["SIN"]
    assert export.report["all_integer"] is False


def test_failed_final_export_saves_the_trained_model(workdir, small_digits):
    x, y = small_digits
    model = _model_with_float_only_op()
    export = TFLiteExport(
        "artifacts/sine.tflite", mode="int8", check_conversion=False, verbose=0
    )
    with pytest.raises(
        keras_tflq.ConversionError,
        match=r"SIN at .*The trained model was saved to 'artifacts/sine.keras'",
    ) as raised:
        model.fit(
            x, y, validation_split=0.25, epochs=1, callbacks=[export], verbose=0
        )
    assert raised.value.saved_model_path == "artifacts/sine.keras"
    assert sorted(os.listdir("artifacts")) == [
        "sine.keras"
    ]  # no artifact, no temp file
    restored = keras.saving.load_model("artifacts/sine.keras")
    np.testing.assert_allclose(
        restored.predict(x[:5], verbose=0),
        model.predict(x[:5], verbose=0),
        rtol=1e-6,
    )


def test_earlier_artifact_survives_a_failed_later_export(
    workdir, cnn, small_digits, monkeypatch
):
    x, y = small_digits
    export = TFLiteExport(
        "latest.tflite",
        mode="float32",
        export_freq="epoch",
        check_conversion=False,
        verbose=0,
    )
    real_convert = keras_tflq.conversion.export.convert_and_inspect
    calls = []

    def convert_then_fail(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise keras_tflq.ConversionError("simulated converter crash")
        return real_convert(*args, **kwargs)

    monkeypatch.setattr(
        keras_tflq.conversion.export, "convert_and_inspect", convert_then_fail
    )
    with pytest.raises(
        keras_tflq.ConversionError,
        match=(
            "simulated converter crash. The trained model was saved to "
            "'latest.keras'"
        ),
    ):
        cnn.fit(x, y, epochs=3, callbacks=[export], verbose=0)
    good = LiteRTModel(model_path="latest.tflite")
    assert good.predict(x[:4]).shape == (4, 10)
    assert json.loads(open("latest.json").read())["epoch"] == 1
    assert sorted(os.listdir(".")) == [
        "latest.json",
        "latest.keras",
        "latest.tflite",
    ]


# ------------------------------------------------------------ tf.distribute


def test_mirrored_strategy_chief_exports(workdir, small_digits):
    x, y = small_digits
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = make_cnn()
    export = TFLiteExport(mode="int8", verbose=0)
    model.fit(
        x, y, validation_split=0.25, epochs=1, callbacks=[export], verbose=0
    )
    assert tensor_dtypes(export.exported_path) <= {"int8", "int32"}


def test_non_chief_worker_writes_nothing_and_finishes(
    workdir, cnn, small_digits, monkeypatch
):
    x, y = small_digits
    monkeypatch.setattr(
        keras_tflq.callbacks.distributed, "is_chief", lambda strategy: False
    )
    export = TFLiteExport(
        "out/m.tflite", mode="int8", export_freq="epoch", verbose=0
    )
    cnn.fit(
        x, y, validation_split=0.25, epochs=2, callbacks=[export], verbose=0
    )
    assert len(cnn.history.history["loss"]) == 2
    assert export.exported_path is None
    assert list(workdir.iterdir()) == []


def test_callback_adds_no_work_per_batch():
    # Keras skips batch hooks a callback does not override.
    for hook in (
        "on_train_batch_begin",
        "on_train_batch_end",
        "on_test_batch_end",
        "on_predict_batch_end",
    ):
        assert getattr(TFLiteExport, hook) is getattr(
            keras.callbacks.Callback, hook
        )


def test_subclassed_model_is_refused_before_training_with_guidance(
    workdir, small_digits
):
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.flatten = keras.layers.Flatten()
            self.head = keras.layers.Dense(10)

        def call(self, x):
            return self.head(self.flatten(x))

    x, y = small_digits
    model = Net()
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    counter = BatchCounter()
    with pytest.raises(
        ValueError,
        match=(
            r"Received: model='net', whose inputs are not defined \(.*wrap a "
            r"subclassed model in a functional one\)"
        ),
    ):
        model.fit(
            x,
            y,
            validation_split=0.25,
            epochs=1,
            callbacks=[TFLiteExport(mode="float32"), counter],
            verbose=0,
        )
    assert counter.batches == 0
