"""`QuantizationSchedule`: when fake quantization starts and what freezes."""

import keras

from keras_tflq.argument_checks import check_non_negative_int
from keras_tflq.argument_checks import check_one_of
from keras_tflq.quantization import graph
from keras_tflq.quantization import schedule_state

_UNITS = ("epoch", "step")


@keras.saving.register_keras_serializable(package="keras_tflq")
class QuantizationSchedule(keras.callbacks.Callback):
    """Schedules fake quantization and freezing during QAT `fit()`.

    Before `start`, a model from `keras_tflq.quantize_model` trains in float
    (its ranges are still tracked, so they are ready when quantization
    starts). From `freeze_ranges` on, the quantization ranges stop moving;
    from `freeze_batch_norm` on, folded BatchNormalization layers normalize
    with their moving statistics and stop updating them, as they will at
    inference. Counts are absolute (resuming with `initial_epoch` or a
    restored optimizer continues the schedule). Inference always uses the
    learned ranges, like the converted model.

    Args:
        start: epoch (or step) at which fake quantization starts.
            Defaults to `0`.
        freeze_ranges: epoch (or step) at which quantization ranges freeze,
            or `None` to never freeze them. Defaults to `None`.
        freeze_batch_norm: epoch (or step) at which BatchNormalization
            statistics freeze, or `None`. Defaults to `None`.
        unit: `"epoch"` or `"step"` (optimizer steps). Defaults to
            `"epoch"`.

    Example:

    ```python
    import keras
    import numpy as np
    import keras_tflq as tflq

    model = tflq.quantize_model(keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ]))
    model.compile("adam", "mse")
    schedule = tflq.QuantizationSchedule(
        start=1, freeze_batch_norm=2, freeze_ranges=3)
    model.fit(np.ones((8, 8, 8, 1)), np.ones((8, 10)), epochs=4,
              callbacks=[schedule], verbose=0)
    ```
    """

    def __init__(
        self,
        start=0,
        freeze_ranges=None,
        freeze_batch_norm=None,
        unit="epoch",
    ):
        super().__init__()
        check_non_negative_int("start", start)
        check_non_negative_int("freeze_ranges", freeze_ranges, allow_none=True)
        check_non_negative_int(
            "freeze_batch_norm", freeze_batch_norm, allow_none=True
        )
        check_one_of("unit", unit, _UNITS)
        self.start = start
        self.freeze_ranges = freeze_ranges
        self.freeze_batch_norm = freeze_batch_norm
        self.unit = unit
        self._variables = []
        self._state = None

    def on_train_begin(self, logs=None):
        self._variables = [
            schedule_state.schedule_variables(layer)
            for layer in graph.flatten_layers(self.model)
        ]
        self._variables = [found for found in self._variables if found]
        if not self._variables:
            raise ValueError(
                "Expected a model quantized by keras_tflq (quantize_model or "
                "quantize_apply) for QuantizationSchedule. Received: "
                f"model={self.model.name!r} with no quantizing layer"
            )
        self._state = None
        self._epoch_start_step = self._optimizer_steps()
        # Only what this schedule changes during fit() is gated in the
        # traced step; the rest is fixed when the step is traced.
        changing = [
            name
            for name, point in (
                (schedule_state.QUANTIZE_ENABLED, self.start),
                (schedule_state.RANGES_FROZEN, self.freeze_ranges),
                (schedule_state.BN_FROZEN, self.freeze_batch_norm),
            )
            if point
        ]
        retrace = False
        for layer in graph.flatten_layers(self.model):
            found = schedule_state.schedule_variables(layer)
            if found:
                names = [name for name in changing if name in found]
                retrace |= schedule_state.mark_scheduled(layer, names)
        if retrace and self.model.train_function is not None:
            self.model.make_train_function(force=True)

    def _set(self, count):
        state = (
            count >= self.start,
            self.freeze_ranges is not None and count >= self.freeze_ranges,
            self.freeze_batch_norm is not None
            and count >= self.freeze_batch_norm,
        )
        if state == self._state:
            return
        self._state = state
        values = dict(
            zip(
                (
                    schedule_state.QUANTIZE_ENABLED,
                    schedule_state.RANGES_FROZEN,
                    schedule_state.BN_FROZEN,
                ),
                state, strict=False,
            )
        )
        for found in self._variables:
            for name, variable in found.items():
                variable.assign(float(values[name]))

    def _optimizer_steps(self):
        # `.numpy()` also reads a variable mirrored by tf.distribute.
        return int(self.model.optimizer.iterations.numpy())

    def on_epoch_begin(self, epoch, logs=None):
        if self.unit == "epoch":
            self._set(epoch)
        else:
            self._epoch_start_step = self._optimizer_steps()

    def on_train_batch_begin(self, batch, logs=None):
        # `batch` is the epoch's step index; with
        # `compile(steps_per_execution=N)` the callback runs once per N
        # steps, so the steps are counted from it, as `ModelCheckpoint`
        # counts batches for `save_freq`, not from the calls.
        if self.unit == "step":
            self._set(self._epoch_start_step + batch)

    def get_config(self):
        return {
            "start": self.start,
            "freeze_ranges": self.freeze_ranges,
            "freeze_batch_norm": self.freeze_batch_norm,
            "unit": self.unit,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
