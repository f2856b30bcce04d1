"""Regression tests for the callback defects found in review (issue 8)."""

import os
import stat

import keras
import pytest

import keras_tflq
from keras_tflq import TFLiteExport
from keras_tflq.callbacks.monitor import metric_direction
from tests.helpers.models import BatchCounter
from tests.helpers.models import make_cnn


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_artifact_and_report_get_the_umask_permissions(
    workdir, small_digits, umask_022
):
    x, y = small_digits
    export = TFLiteExport("m.tflite", mode="float32", verbose=0)
    make_cnn().fit(x, y, epochs=1, callbacks=[export], verbose=0)
    for name in ("m.tflite", "m.json"):
        # What open(path, "w") gives under umask 022, not mkstemp's 0600.
        assert stat.S_IMODE(os.stat(name).st_mode) == 0o644, name


class _Grows(keras.metrics.Metric):
    """A validation metric that rises every epoch (its state is never
    reset), named with none of the words the old name test looked for."""

    def __init__(self, direction=None, name="growth", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable((), initializer="zeros", name="t")
        if direction:
            self._direction = direction

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.total.assign_add(1.0)

    def result(self):
        return self.total

    def reset_state(self):
        pass


def test_auto_monitor_mode_follows_the_metric_direction(workdir, small_digits):
    x, y = small_digits
    model = make_cnn()
    model.compile("adam", model.loss, metrics=[_Grows(direction="up")])
    export = TFLiteExport(
        "best_{epoch}.tflite",
        mode="float32",
        export_freq="epoch",
        save_best_only=True,
        monitor="val_growth",
        evaluate=False,
        verbose=0,
    )
    model.fit(
        x, y, validation_split=0.25, epochs=3, callbacks=[export], verbose=0
    )
    # Higher is better and it rose every epoch: every epoch is a new best.
    assert sorted(p for p in os.listdir(".") if p.endswith(".tflite")) == [
        "best_1.tflite",
        "best_2.tflite",
        "best_3.tflite",
    ]


def test_auto_monitor_mode_reads_mean_iou_as_higher_is_better():
    model = make_cnn()
    model.compile(
        "adam",
        model.loss,
        metrics=[keras.metrics.MeanIoU(10, name="iou", sparse_y_pred=False)],
    )
    assert metric_direction(model, "val_iou") == "max"
    assert metric_direction(model, "val_loss") == "min"


def test_unknown_metric_direction_fails_before_the_first_batch(
    workdir, small_digits
):
    x, y = small_digits
    model = make_cnn()
    model.compile("adam", model.loss, metrics=[_Grows()])
    counter = BatchCounter()
    export = TFLiteExport(
        mode="float32",
        export_freq="epoch",
        save_best_only=True,
        monitor="val_growth",
        verbose=0,
    )
    with pytest.raises(
        ValueError,
        match=r"Expected monitor_mode='min' or 'max'.*Received: "
        r"monitor='val_growth' with monitor_mode='auto'",
    ):
        model.fit(
            x,
            y,
            validation_split=0.25,
            epochs=1,
            callbacks=[export, counter],
            verbose=0,
        )
    assert counter.batches == 0


def test_no_fit_frame_needed_with_calibration_data_and_no_evaluation(
    workdir, small_digits
):
    x, _ = small_digits
    model = make_cnn()
    export = TFLiteExport(
        mode="int8", calibration_data=x[:16], evaluate=False, verbose=0
    )
    export.set_model(model)
    export.set_params({"epochs": 1})
    export.on_train_begin()  # outside fit(): nothing to look up
    export.on_epoch_end(0, {})
    assert export.report["all_integer"]


def test_step_schedule_counts_steps_with_steps_per_execution(small_digits):
    x, y = small_digits
    model = keras_tflq.quantize_model(make_cnn())
    model.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=2,
    )
    schedule = keras_tflq.QuantizationSchedule(start=4, unit="step")
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            layer = next(
                layer for layer in model.layers if layer.name == "quant_logits"
            )
            seen.append((batch, float(layer.quantize_enabled.numpy())))

    # 8 steps run as 4 executions of 2: hooks at steps 0, 2, 4, 6.
    model.fit(
        x[:64],
        y[:64],
        batch_size=8,
        epochs=1,
        callbacks=[schedule, Probe()],
        verbose=0,
    )
    assert seen == [(0, 0.0), (2, 0.0), (4, 1.0), (6, 1.0)]
