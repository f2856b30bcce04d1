"""A converter that dies in native code cannot take training down.

Models with recurrent layers convert in a child process by default
(`isolate_conversion="auto"`); every other model converts in process.
Each test that starts a child costs a process start and a TensorFlow
import, so there are four of them.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_tflq  # noqa: E402
from keras_tflq.conversion import isolated  # noqa: E402
from keras_tflq.conversion.isolated import needs_isolation  # noqa: E402
from keras_tflq.conversion.isolated_child import SIMULATE_CRASH_ENV  # noqa: E402
from tests.helpers.models import BatchCounter  # noqa: E402


@keras.saving.register_keras_serializable(package="keras_tflq_tests")
class Doubled(keras.layers.Layer):
    """A custom layer the child must import to load the model."""

    def call(self, inputs):
        return inputs * 2.0


def _lstm_model():
    # The issue's model: TF 2.21's int8 conversion of it in the process
    # that trains it has died with a segmentation fault (tensorflow#101050).
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8), batch_size=1),
            keras.layers.LSTM(16, name="lstm"),
            keras.layers.Dense(4),
        ],
        name="lstm_tagger",
    )
    model.compile("adam", "mse")
    return model


def _lstm_data(count=8):
    rng = np.random.default_rng(0)
    return rng.random((count, 8, 8), dtype=np.float32), rng.random(
        (count, 4), dtype=np.float32
    )


def _int8_export(path, **kwargs):
    return keras_tflq.TFLiteExport(str(path), mode="int8", verbose=0, **kwargs)


@pytest.fixture
def jobs(monkeypatch):
    """The conversions run in a child process, counted (they still run)."""
    started = []
    run_job = isolated._run_job

    def counted(folder):
        started.append(folder)
        return run_job(folder)

    monkeypatch.setattr(isolated, "_run_job", counted)
    return started


@pytest.fixture
def crashing_child(monkeypatch):
    """The next conversion child crashes as a converter in native code."""
    isolated.shutdown()  # a warm child keeps the environment it started in
    monkeypatch.setenv(SIMULATE_CRASH_ENV, "1")
    yield
    isolated.shutdown()


@pytest.fixture
def no_child(monkeypatch):
    """Fails the test if a conversion child is started or used."""

    def refused(*args):
        raise AssertionError("a conversion child process was used")

    monkeypatch.setattr(isolated, "_run_job", refused)
    monkeypatch.setattr(isolated, "_spawn", refused)


def test_the_rule_isolates_recurrent_layers_at_any_depth():
    dense = keras.Sequential([keras.Input((8, 8)), keras.layers.Dense(2)])
    nested = keras.Sequential(
        [keras.Input((8, 8)), keras.Sequential([keras.layers.SimpleRNN(2)])]
    )
    wrapped = keras.Sequential(
        [
            keras.Input((8, 8)),
            keras.layers.Bidirectional(
                keras.layers.GRU(2, return_sequences=True, name="gru")
            ),
            keras.layers.TimeDistributed(keras.layers.Dense(2)),
        ]
    )
    cell = keras.Sequential(
        [keras.Input((8, 8)), keras.layers.RNN(keras.layers.LSTMCell(2))]
    )
    conv_lstm = keras.Sequential(
        [keras.Input((3, 8, 1)), keras.layers.ConvLSTM1D(2, 3)]
    )
    distributed = keras.Sequential(
        [
            keras.Input((3, 8, 4)),
            keras.layers.TimeDistributed(
                keras.Sequential([keras.Input((8, 4)), keras.layers.LSTM(2)])
            ),
        ]
    )
    for model in (nested, wrapped, cell, conv_lstm, distributed):
        assert needs_isolation(model, "auto"), model.layers
        assert needs_isolation(model, None)
        assert not needs_isolation(model, False)
    assert not needs_isolation(dense, "auto")
    assert needs_isolation(dense, True)
    assert sorted(isolated.crash_prone_layers(wrapped)) == [
        "backward_gru",
        "forward_gru",
    ]


def test_isolate_conversion_is_checked_at_construction(tmp_path):
    message = (
        r"Expected `isolate_conversion` to be one of \(True, False, "
        r"'auto'\)\. Received: isolate_conversion='yes'"
    )
    with pytest.raises(ValueError, match=message):
        keras_tflq.TFLiteExport(isolate_conversion="yes")
    with pytest.raises(ValueError, match=message):
        keras_tflq.export_tflite(
            _lstm_model(),
            tmp_path / "m.tflite",
            mode="float32",
            isolate_conversion="yes",
        )
    assert keras_tflq.TFLiteExport().isolate_conversion == "auto"
    unset = keras_tflq.TFLiteExport(isolate_conversion=None)
    assert unset.isolate_conversion == "auto"


def test_isolate_false_converts_an_lstm_in_process(tmp_path, no_child):
    x, _ = _lstm_data(4)
    report = keras_tflq.export_tflite(
        _lstm_model(),
        tmp_path / "lstm.tflite",
        calibration_data=x,
        isolate_conversion=False,
    )
    assert report["op_counts"]["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 1
    assert report["sequence_layers"] == {
        "lstm": "fused UNIDIRECTIONAL_SEQUENCE_LSTM"
    }
    assert report["all_integer"]


def test_a_cnn_is_not_isolated_under_auto(tmp_path, digits, no_child):
    x, y = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    export = keras_tflq.TFLiteExport(str(tmp_path / "cnn.tflite"), verbose=0)
    model.fit(x[:64], y[:64], validation_split=0.25, epochs=1,
              callbacks=[export], verbose=0)
    assert export.report["all_integer"]


def test_lstm_in_fit_is_isolated_and_equals_the_in_process_export(
    tmp_path, jobs
):
    model = _lstm_model()
    x, y = _lstm_data()
    # One child, for the final export.
    export = _int8_export(tmp_path / "auto.tflite", check_conversion=False)
    model.fit(x, y, batch_size=1, validation_data=(x, y), epochs=1,
              callbacks=[export], verbose=0)
    assert len(jobs) == 1  # isolated without being asked
    report = export.report
    assert report["op_counts"]["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 1
    assert report["all_integer"]
    assert "fully_quantize" in report["converter_log"]
    in_process = keras_tflq.export_tflite(
        model,
        tmp_path / "in_process.tflite",
        calibration_data=x,
        validation_data=(x, y),
        isolate_conversion=False,
    )
    assert len(jobs) == 1
    # The same artifact but for the fused op's generated function name.
    for key in ("op_counts", "inputs", "outputs", "bytes", "sequence_layers"):
        assert report[key] == in_process[key], key
    outputs = [
        keras_tflq.LiteRTModel(model_path=str(path)).predict(x)
        for path in (tmp_path / "auto.tflite", tmp_path / "in_process.tflite")
    ]
    np.testing.assert_array_equal(outputs[0], outputs[1])
    # Scored in batches of 1 (fit's) and of 32: the sums differ in the
    # last float32 bits.
    assert report["tflite_metrics"] == pytest.approx(
        in_process["tflite_metrics"], rel=1e-6
    )


def test_simulated_crash_at_the_trial_conversion_stops_before_training(
    tmp_path, crashing_child
):
    model = _lstm_model()
    x, y = _lstm_data()
    counter = BatchCounter()
    export = _int8_export(tmp_path / "lstm.tflite")
    with pytest.raises(
        keras_tflq.ConversionError,
        match=r"crashed \(SIGSEGV in its native code\) converting model "
        r"'lstm_tagger' in mode='int8'.*Try: its recurrent layers \(lstm\) "
        r".*unroll=True.*mode='dynamic'",
    ) as caught:
        model.fit(x, y, batch_size=1, validation_data=(x, y), epochs=1,
                  callbacks=[counter, export], verbose=0)
    assert counter.batches == 0
    assert "Fatal Python error" in caught.value.converter_log  # the child's
    assert os.listdir(tmp_path) == []


def test_simulated_crash_at_the_final_export_keeps_the_trained_model(
    tmp_path, crashing_child
):
    model = _lstm_model()
    x, y = _lstm_data()
    export = _int8_export(tmp_path / "lstm.tflite", check_conversion=False)
    counter = BatchCounter()
    with pytest.raises(
        keras_tflq.ConversionError,
        match=r"crashed \(SIGSEGV.*model 'lstm_tagger' in mode='int8'.*"
        r"The trained model was saved to '.*lstm\.keras'",
    ) as caught:
        model.fit(x, y, batch_size=1, validation_data=(x, y), epochs=2,
                  callbacks=[counter, export], verbose=0)
    assert counter.batches == 16  # trained to the end
    assert caught.value.saved_model_path == str(tmp_path / "lstm.keras")
    restored = keras.saving.load_model(tmp_path / "lstm.keras")
    np.testing.assert_allclose(
        restored.predict(x, batch_size=1, verbose=0),
        model.predict(x, batch_size=1, verbose=0),
    )
    assert sorted(os.listdir(tmp_path)) == ["lstm.keras"]


def test_the_child_loads_custom_layers_and_keeps_input_names(tmp_path, jobs):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))  # unnamed: loading would rename it
    model = keras.Model(inputs, keras.layers.Dense(3)(Doubled()(inputs)))
    x = np.random.default_rng(1).random((16, 6), dtype=np.float32)
    reports = [
        keras_tflq.export_tflite(
            model,
            tmp_path / f"{isolate}.tflite",
            calibration_data=x,
            isolate_conversion=isolate,
        )
        for isolate in (False, True)
    ]
    assert len(jobs) == 1
    assert reports[1]["inputs"][0]["name"] == inputs.name
    assert (tmp_path / "True.tflite").read_bytes() == (
        tmp_path / "False.tflite"
    ).read_bytes()
