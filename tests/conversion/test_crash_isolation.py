"""A converter that dies in native code cannot take training down."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_tflq  # noqa: E402
from keras_tflq.conversion.converter import convert_and_inspect  # noqa: E402
from keras_tflq.conversion.isolated import SIMULATE_CRASH_ENV  # noqa: E402
from keras_tflq.conversion.isolated import needs_isolation  # noqa: E402


class BatchCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def _lstm_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((8, 8), batch_size=1),
            keras.layers.LSTM(16),
            keras.layers.Dense(4),
        ],
        name="lstm_tagger",
    )


def _dense_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,), name="features")
    outputs = keras.layers.Dense(3)(keras.layers.Dense(8, "relu")(inputs))
    model = keras.Model(inputs, outputs, name="dense_net")
    model.compile("adam", "mse")
    return model


def _lstm_samples(model):
    x = np.random.default_rng(0).random((4, 8, 8), dtype=np.float32)

    def samples():
        for i in range(4):
            yield {model.inputs[0].name: x[i : i + 1]}

    return samples


def test_lstm_int8_converts_in_process_through_the_fused_route():
    # TF 2.21's converter used to kill the process converting this model
    # to int8 (tensorflow#101050); the sequence-export route converts it
    # to the fused LSTM op, in this process (nothing isolated by default).
    model = _lstm_model()
    content, inspection = convert_and_inspect(
        model, "int8", representative_dataset=_lstm_samples(model)
    )
    assert inspection["op_counts"]["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 1
    assert inspection["sequence_layers"] == {
        "lstm": "fused UNIDIRECTIONAL_SEQUENCE_LSTM"
    }
    assert inspection["all_integer"]
    assert "fully_quantize" in inspection["converter_log"]
    assert len(content) == inspection["bytes"]


def test_simulated_crash_of_an_isolated_lstm_conversion_is_an_error(
    monkeypatch,
):
    # A converter dying in native code, in the child: an error naming the
    # mode, the model and what to try, and this process survives.
    monkeypatch.setenv(SIMULATE_CRASH_ENV, "1")
    model = _lstm_model()
    with pytest.raises(
        keras_tflq.ConversionError,
        match=r"crashed \(SIGABRT in its native code\) converting model "
        r"'lstm_tagger' in mode='int8'.*Try: .*unroll=True",
    ) as caught:
        convert_and_inspect(
            model,
            "int8",
            representative_dataset=_lstm_samples(model),
            isolate=True,
        )
    assert caught.value.converter_log  # the child's output, kept
    assert os.getpid()  # still here


def test_isolation_is_opt_in_only():
    # Recurrent models convert in process: the child does not take their
    # sequence-export route.
    assert not needs_isolation(_lstm_model(), None)
    assert not needs_isolation(_dense_model(), None)
    assert needs_isolation(_dense_model(), True)
    assert needs_isolation(_lstm_model(), True)
    assert not needs_isolation(_lstm_model(), False)
    with pytest.raises(
        ValueError, match="Received: isolate_conversion='yes'"
    ):
        keras_tflq.TFLiteExport(isolate_conversion="yes")


def test_isolated_conversion_gives_the_in_process_artifact(tmp_path):
    model = _dense_model()
    x = np.random.default_rng(1).random((32, 6), dtype=np.float32)
    reports = [
        keras_tflq.export_tflite(
            model,
            tmp_path / f"{isolate}.tflite",
            calibration_data=x,
            isolate_conversion=isolate,
        )
        for isolate in (False, True)
    ]
    outputs = [
        keras_tflq.LiteRTModel(model_path=report["path"]).predict(x)
        for report in reports
    ]
    assert all(report["all_integer"] for report in reports)
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_simulated_crash_at_the_final_export_keeps_the_trained_model(
    tmp_path, monkeypatch
):
    monkeypatch.setenv(SIMULATE_CRASH_ENV, "1")
    model = _dense_model()
    x = np.random.default_rng(2).random((64, 6), dtype=np.float32)
    y = x[:, :3] * 2.0
    export = keras_tflq.TFLiteExport(
        str(tmp_path / "dense.tflite"),
        mode="dynamic",
        check_conversion=False,
        isolate_conversion=True,
        verbose=0,
    )
    counter = BatchCounter()
    with pytest.raises(
        keras_tflq.ConversionError,
        match=r"crashed \(SIGABRT.*model 'dense_net' in mode='dynamic'.*"
        r"The trained model was saved to '.*dense.keras'",
    ):
        model.fit(x, y, epochs=2, callbacks=[counter, export], verbose=0)
    assert counter.batches == 4  # trained to the end
    restored = keras.saving.load_model(tmp_path / "dense.keras")
    np.testing.assert_allclose(
        restored.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    assert not (tmp_path / "dense.tflite").exists()


def test_simulated_crash_at_the_trial_conversion_stops_before_training(
    tmp_path, monkeypatch
):
    monkeypatch.setenv(SIMULATE_CRASH_ENV, "1")
    model = _dense_model()
    x = np.random.default_rng(3).random((32, 6), dtype=np.float32)
    counter = BatchCounter()
    export = keras_tflq.TFLiteExport(
        str(tmp_path / "dense.tflite"),
        mode="float32",
        isolate_conversion=True,
        verbose=0,
    )
    with pytest.raises(keras_tflq.ConversionError, match="crashed"):
        model.fit(x, x[:, :3], epochs=1, callbacks=[counter, export])
    assert counter.batches == 0
