"""The `TFLiteExport` callback: a checked TensorFlow Lite artifact out of
`fit()`."""

import os
import string

import keras
import numpy as np

from keras_tflq.argument_checks import check_bool
from keras_tflq.argument_checks import check_one_of
from keras_tflq.argument_checks import check_positive_int
from keras_tflq.callbacks import distributed
from keras_tflq.callbacks.fit_validation_data import find_fit_validation_data
from keras_tflq.callbacks.monitor import metric_direction
from keras_tflq.conversion import isolated
from keras_tflq.conversion import micro_target
from keras_tflq.conversion import modes
from keras_tflq.conversion import precision_search
from keras_tflq.conversion.artifact import check_writable_folder
from keras_tflq.conversion.calibration import CalibrationSet
from keras_tflq.conversion.converter import convert_model
from keras_tflq.conversion.data_source import DataSource
from keras_tflq.conversion.errors import ConversionError
from keras_tflq.conversion.export import export_artifact
from keras_tflq.conversion.isolated import check_isolate
from keras_tflq.conversion.layer_report import layer_samples
from keras_tflq.conversion.layer_report import write_layer_report_for
from keras_tflq.conversion.model_inputs import ModelInputs
from keras_tflq.conversion.sequence_checks import calibration_need
from keras_tflq.conversion.sequence_checks import calibration_subject
from keras_tflq.conversion.sequence_checks import check_sequence_export
from keras_tflq.legacy.artifact_evaluator import evaluator_for
from keras_tflq.legacy.callback_protocol import TfKerasCallbackProtocol
from keras_tflq.legacy.tf_keras_models import is_tf_keras_model

_TEMPLATE_KEYS = ("name", "mode", "epoch")
_MONITOR_MODES = ("auto", "min", "max")
_TRIAL_SAMPLES = 8


class TFLiteExport(TfKerasCallbackProtocol, keras.callbacks.Callback):
    """Exports the model being trained to a TensorFlow Lite (LiteRT) artifact.

    By default the export happens once, when `fit()` ends, and an integer
    export is calibrated on the validation data given to `fit()`
    (`validation_data=` or `validation_split=`, arrays, `tf.data.Dataset`
    or `keras.utils.PyDataset`), at most `calibration_samples` samples,
    read lazily. A quantization-aware model (see `keras_tflq.quantize_model`)
    needs no calibration: its learned ranges are used. A `tf_keras` model
    (and its tfmot QAT model) works the same, in a `tf_keras` `fit()`.

    Everything that can be checked before training is checked in
    `on_train_begin`, before the first batch: the backend, the destination
    folder, the calibration data (present, finite, the right shapes) and a
    trial conversion of the untrained model. Artifacts are written
    atomically next to a JSON report (`model_int8.tflite` ->
    `model_int8.json`). If a conversion fails after training, the trained
    model is saved as `.keras` beside the intended artifact and the raised
    `ConversionError` says where.

    With `evaluate`, the artifact is run with the LiteRT interpreter on the
    validation data and scored with the model's compiled loss and metrics;
    the results enter the epoch logs as `val_tflite_<metric>`, so `History`,
    `CSVLogger` and `TensorBoard` listed after this callback record them.

    Args:
        filepath: Path of the `.tflite` file; a template that may use
            `{name}` (the model's name), `{mode}`, `{epoch}` (1-based) and
            any epoch logs key with a format spec, e.g.
            `"ckpt/{name}_{epoch:02d}_{val_loss:.4f}.tflite"`.
            Defaults to `"{name}_{mode}.tflite"` in the working directory.
        mode: `"float32"`, `"float16"`, `"dynamic"` (int8 weights, float
            activations), `"int8"` (full integer) or `"int16x8"` (16-bit
            activations, 8-bit weights). Defaults to `"int8"`.
        calibration_data: Data to calibrate integer exports on instead of
            the validation data: an array, a list/dict of arrays, a tuple
            `(x, y)`, a `tf.data.Dataset`, a `keras.utils.PyDataset`, a
            generator or a callable returning one. Defaults to `None`.
        calibration_samples: The most samples used for calibration.
            Defaults to `200`.
        input_type: Type of the artifact's input tensors: `"int8"`,
            `"uint8"` or `"float32"` for `"int8"`; `"int16"` or `"float32"`
            for `"int16x8"`; `"float32"` otherwise. Defaults to `"int8"`
            for `mode="int8"` and `"float32"` otherwise.
        output_type: Type of the output tensors, as `input_type`.
            Defaults to `"int8"` for `mode="int8"` and `"float32"` otherwise.
        export_freq: `"end"` (once, when training ends), `"epoch"` (every
            epoch) or an integer N (every N epochs). Defaults to `"end"`.
        monitor: The logs key compared with `save_best_only`.
            Defaults to `"val_loss"`.
        save_best_only: Export only when `monitor` improves on the best
            value seen; needs `export_freq="epoch"` or an integer.
            Defaults to `False`.
        monitor_mode: `"min"`, `"max"`, or `"auto"` (losses are
            minimized, other metrics go the way the metric's own direction
            says, as in Keras' `EarlyStopping`; a metric whose direction
            cannot be told fails in `on_train_begin`).
            Defaults to `"auto"`.
        evaluate: Evaluate each artifact on the validation data: `True`,
            `False`, or `None` to evaluate whenever `fit()` was given
            validation data. Defaults to `None`.
        allow_float_ops: In the integer modes, let ops that have no integer
            kernel run in float (listed in the report under `float_ops`)
            instead of failing. Defaults to `False`.
        check_conversion: Convert the model once in `on_train_begin` so a
            model the converter rejects fails before training.
            Defaults to `True`.
        isolate_conversion: Convert in a child process, so that a crash in
            the converter's native code (a segmentation fault, not an
            exception) raises a `ConversionError` and training survives:
            `True`, `False`, or `"auto"`: only models holding a layer the
            converter is known to crash on (recurrent layers, at any depth;
            see `keras_tflq.conversion.isolated.CRASH_PRONE_LAYERS`), since
            a child adds seconds to each export. The child runs the same
            conversion and gives the same artifact; its model must load
            from `.keras` (custom layers registered in an importable
            module). `None` reads as `"auto"`. Defaults to `"auto"`.
        verbose: `0` silent, `1` one line per export and a progress bar for
            evaluation. Defaults to `1`.
        max_drop: An accuracy budget for `"int8"`/`"int16x8"` on a float
            model: `{metric: most it may get worse}` over the compiled
            metric names and `"loss"`, e.g. `{"accuracy": 0.01}` (the
            direction comes from the metric). When the artifact misses it on
            the validation data, the layers that cost most are raised to
            16-bit activations, then float, and the smallest artifact that
            meets the budget is written; the report gains `layer_precision`,
            `budget_met`, `candidates` and `search`. Needs ai-edge-quantizer
            (`pip install keras-tflq[budget]`). Defaults to `None`.
        layer_report: Write the per-layer error of each artifact against
            the Keras model beside it (`model_int8_layers.json`, and a
            `.png` chart when matplotlib is installed). Defaults to `False`.
        target: `"litert"`, or `"micro"` for TensorFlow Lite Micro (needs
            the `micro` extra; modes `"int8"`, `"int16x8"`, `"float32"`):
            the trial conversion must run in TFLM, and after each export
            the artifact is run in TFLM and compared with LiteRT, its
            arena measured, the report gains `micro` (resolver ops, arena
            and flash bytes, LiteRT agreement) and C++ sources are
            written beside it. Defaults to `"litert"`.

    Attributes:
        exported_path: The last artifact written, or `None`.
        report: The report of the last export (a dict), or `None`.

    Example:

    ```python
    import numpy as np, keras, keras_tflq

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    model.compile("adam", "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    export = keras_tflq.TFLiteExport("demo_{mode}.tflite", mode="int8",
                                     verbose=0)
    model.fit(np.random.rand(64, 8), np.random.randint(0, 3, 64),
              validation_split=0.25, epochs=1, callbacks=[export], verbose=0)
    print(export.exported_path, export.report["tflite_metrics"])
    ```
    """

    def __init__(
        self,
        filepath=None,
        mode="int8",
        calibration_data=None,
        calibration_samples=200,
        input_type=None,
        output_type=None,
        export_freq="end",
        monitor="val_loss",
        save_best_only=False,
        monitor_mode="auto",
        evaluate=None,
        allow_float_ops=False,
        check_conversion=True,
        verbose=1,
        isolate_conversion="auto",
        max_drop=None,
        layer_report=False,
        target="litert",
    ):
        super().__init__()
        self.mode = modes.check_mode(mode)
        self.target = micro_target.check_target(target)
        if self.target == "micro":
            micro_target.check_micro_mode(self.mode)
            micro_target.require_tflite_micro()
        self.filepath = _check_filepath(
            "{name}_{mode}.tflite" if filepath is None else filepath
        )
        self.calibration_data = calibration_data
        if calibration_data is not None:
            DataSource(
                calibration_data, name="calibration_data"
            )  # checks the form
        self.calibration_samples = check_positive_int(
            "calibration_samples", calibration_samples
        )
        self.input_type = modes.check_io_type(
            self.mode, input_type, "input_type"
        )
        self.output_type = modes.check_io_type(
            self.mode, output_type, "output_type"
        )
        self.export_freq = _check_export_freq(export_freq)
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(
                "Expected monitor to be a logs key. Received: "
                f"monitor={monitor!r}"
            )
        self.monitor = monitor
        self.save_best_only = check_bool("save_best_only", save_best_only)
        if self.save_best_only and self.export_freq == "end":
            raise ValueError(
                "Expected export_freq='epoch' or an integer with "
                "save_best_only=True. "
                "Received: export_freq='end'"
            )
        if monitor_mode not in _MONITOR_MODES:
            raise ValueError(
                f"Expected monitor_mode to be one of {_MONITOR_MODES}. "
                f"Received: monitor_mode={monitor_mode!r}"
            )
        self.monitor_mode = monitor_mode
        self.evaluate = check_one_of("evaluate", evaluate, (None, True, False))
        self.allow_float_ops = check_bool("allow_float_ops", allow_float_ops)
        self.check_conversion = check_bool("check_conversion", check_conversion)
        self.isolate_conversion = check_isolate(isolate_conversion)
        if verbose not in (0, 1, 2):
            raise ValueError(
                "Expected verbose to be 0, 1 or 2. Received: "
                f"verbose={verbose!r}"
            )
        self.verbose = verbose
        self.max_drop = precision_search.check_max_drop(max_drop)
        if self.max_drop is not None:
            precision_search.require_budget_tools()
        self.layer_report = check_bool("layer_report", layer_report)
        self.exported_path = None
        self.report = None

    # ----------------------------------------------------------- training hooks

    def on_train_begin(self, logs=None):
        """Checks everything that can be checked before the first batch."""
        if keras.backend.backend() != "tensorflow":
            raise ValueError(
                "Expected the TensorFlow backend to export with the TFLite "
                "converter. "
                f"Received: backend={keras.backend.backend()!r}"
            )
        self._best = None
        self._exported_final_epoch = False
        self._last_epoch = None
        self._maximize_monitor = None
        if self.save_best_only:
            direction = self.monitor_mode
            if direction == "auto":
                direction = metric_direction(self.model, self.monitor)
            self._maximize_monitor = direction == "max"
        strategy = distributed.strategy_of(self.model)
        self._strategy = strategy
        self._is_chief = distributed.is_chief(strategy)
        # Under tf.distribute only the chief converts and writes.
        error = None
        if self._is_chief:
            try:
                self._prepare()
            except Exception as caught:  # noqa: BLE001 - re-raised below
                error = caught
            finally:
                isolated.shutdown()  # no idle conversion child in training
        if distributed.agree(strategy, error is not None) and error is None:
            raise distributed.chief_failed_error("checks before training")
        if error is not None:
            raise error

    def _prepare(self):
        """The chief's checks before the first batch."""
        is_tf_keras_model(self.model)  # refuses a model mixing two Kerases
        self._model_inputs = ModelInputs(self.model)
        check_sequence_export(self.model, self.mode)
        modes.check_activation_bits(self.mode, self.model)
        self._validation = None
        if self._needs_validation_data():
            validation = find_fit_validation_data(self.model)
            if validation is not None:
                self._validation = DataSource(
                    validation["x"],
                    validation["y"],
                    validation["sample_weight"],
                    batch_size=validation["batch_size"],
                    name="validation_data",
                )
        self._calibration = self._build_calibration()
        self._evaluator = self._build_evaluator()
        self._budget = precision_search.build_budget(
            self.max_drop, self.mode, self.model, self._evaluator,
            self._validation, self._model_inputs,
        )
        if self.layer_report:
            layer_samples(
                self._calibration, self._validation, self._model_inputs, 0
            )
        check_writable_folder(self._path_for(epoch=0, logs={}, strict=False))
        self._micro_samples = None
        if self.target == "micro":
            source = self._validation
            if source is None and self._calibration is not None:
                source = self._calibration.source
            self._micro_samples = micro_target.micro_samples(
                source, self._model_inputs
            )
        if self.check_conversion:
            content = self._convert(
                self._calibration.first(_TRIAL_SAMPLES)
                if self._calibration
                else None
            )
            if self.target == "micro":
                micro_target.check_micro_artifact(content, self.model)

    def _needs_validation_data(self):
        """Whether `fit()`'s validation data serves anything: evaluation,
        calibration when no `calibration_data` is given, the accuracy
        budget, the layer report or the micro check."""
        if self.evaluate is not False:
            return True
        if (
            self.max_drop is not None
            or self.layer_report
            or self.target == "micro"
        ):
            return True
        return (
            self.calibration_data is None
            and calibration_need(self.mode, self.model) != "none"
        )

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        self._last_epoch = epoch
        final_epoch = epoch + 1 >= self.params.get("epochs", epoch + 1)
        if self.export_freq == "end":
            due = final_epoch
        elif self.export_freq == "epoch":
            due = True
        else:
            due = (epoch + 1) % self.export_freq == 0
        if due and self._improved(logs):
            self._export(epoch, logs)
            self._exported_final_epoch = final_epoch

    def on_train_end(self, logs=None):
        if (
            self.export_freq == "end"
            and not self._exported_final_epoch
            and self._last_epoch is not None
        ):
            # Training stopped early (e.g. EarlyStopping): export what it ended
            # with.
            self._export(self._last_epoch, dict(logs or {}))

    # ------------------------------------------------------------------ export

    def _export(self, epoch, logs):
        """Converts, evaluates and writes one artifact; adds `val_tflite_*` to
        `logs`."""
        error = None
        if self._is_chief:
            try:
                self._export_on_chief(epoch, logs)
            except Exception as caught:  # noqa: BLE001 - re-raised below
                error = caught
            finally:
                isolated.shutdown()
        failed = distributed.agree(self._strategy, error is not None)
        if failed and error is None:
            raise distributed.chief_failed_error(f"export at epoch {epoch + 1}")
        if error is not None:
            raise error

    def _export_on_chief(self, epoch, logs):
        path = self._path_for(epoch, logs, strict=True)
        amend = self._add_micro if self.target == "micro" else None
        options = dict(
            calibration=self._calibration,
            input_type=self.input_type,
            output_type=self.output_type,
            allow_float_ops=self.allow_float_ops,
            evaluator=self._evaluator,
            validation=self._validation,
            epoch=epoch + 1,
            keras_metrics=dict(logs),
            verbose=self.verbose,
            isolate=self.isolate_conversion,
        )
        export = (
            export_artifact
            if self._budget is None
            else precision_search.budgeted(self._budget)
        )
        try:
            report = export(
                self.model,
                path,
                self.mode,
                self._model_inputs,
                amend_report=amend,
                **options,
            )
        except ConversionError as error:
            saved = self._save_trained_model(path)
            raise ConversionError(
                f"{error.message.rstrip('.')}. The trained model was saved to "
                f"{saved!r}.",
                saved_model_path=saved,
                converter_log=error.converter_log,
            ) from error
        if self.layer_report:
            x = layer_samples(
                self._calibration, self._validation, self._model_inputs, 64
            )
            report = write_layer_report_for(self.model, path, report, x)
        tflite_metrics = report["tflite_metrics"]
        logs.update(
            {
                f"val_tflite_{name}": value
                for name, value in tflite_metrics.items()
            }
        )
        self.exported_path, self.report = path, report
        if self.verbose:
            scores = ", ".join(
                f"val_tflite_{k}={v:.4f}" for k, v in tflite_metrics.items()
            )
            print(
                f"\nTFLiteExport: epoch {epoch + 1}: wrote {path} "
                f"({report['bytes'] / 1024:.1f} KiB, "
                f"mode={self.mode}{', ' + scores if scores else ''})"
            )

    def _add_micro(self, path, content, report):
        """Adds the micro target's results to the report before it is
        written."""
        micro_target.add_micro_target(
            path, content, report, self.model, self._micro_samples
        )

    def _convert(self, representative_dataset):
        return convert_model(
            self.model,
            self.mode,
            representative_dataset=representative_dataset,
            input_type=self.input_type,
            output_type=self.output_type,
            allow_float_ops=self.allow_float_ops,
            isolate=self.isolate_conversion,
        )

    def _build_calibration(self):
        need = calibration_need(self.mode, self.model)
        if need == "none":
            return None
        if self.calibration_data is not None:
            source = DataSource(self.calibration_data, name="calibration_data")
        elif self._validation is not None:
            source = self._validation
        elif need == "optional":
            return None
        else:
            raise ValueError(
                f"Expected calibration data for mode={self.mode!r} on "
                f"{calibration_subject(self.model)}: pass "
                "validation_data= or validation_split= to fit(), or "
                "calibration_data= to "
                "TFLiteExport. Received: no validation data and "
                "calibration_data=None"
            )
        return CalibrationSet(
            source, self._model_inputs, self.calibration_samples
        )

    def _build_evaluator(self):
        if self.evaluate is False or (
            self.evaluate is None and self._validation is None
        ):
            return None
        if self._validation is None:
            raise ValueError(
                "Expected validation data to evaluate the artifact: pass "
                "validation_data= "
                "or validation_split= to fit(). Received: evaluate=True and no "
                "validation data"
            )
        return evaluator_for(self.model)

    def _improved(self, logs):
        if not self.save_best_only:
            return True
        if self.monitor not in logs:
            raise ValueError(
                "Expected the monitored key in the epoch logs. Received: "
                f"monitor={self.monitor!r}, "
                f"logs keys={sorted(logs)}"
            )
        value = float(logs[self.monitor])
        better = np.greater if self._maximize() else np.less
        if self._best is None or better(value, self._best):
            self._best = value
            return True
        return False

    def _maximize(self):
        return self._maximize_monitor

    def _path_for(self, epoch, logs, strict):
        try:
            return self.filepath.format(
                name=self.model.name, mode=self.mode, epoch=epoch + 1, **logs
            )
        except KeyError as missing:
            if not strict:
                return os.path.join(
                    os.path.dirname(self.filepath) or ".", "probe.tflite"
                )
            raise ValueError(
                "Expected every filepath template key in the epoch logs or in "
                f"{_TEMPLATE_KEYS}. "
                f"Received: filepath={self.filepath!r} with missing key "
                f"{missing}; logs keys={sorted(logs)}"
            ) from None

    def _save_trained_model(self, path):
        saved = os.path.splitext(path)[0] + ".keras"
        temp = os.path.join(
            os.path.dirname(os.path.abspath(saved)),
            f".{os.path.basename(saved)}.tmp.keras",
        )
        self.model.save(temp)
        os.replace(temp, saved)
        return saved


def _check_filepath(filepath):
    if not isinstance(filepath, (str, os.PathLike)):
        raise ValueError(
            "Expected filepath to be a string path. Received: "
            f"filepath={filepath!r}"
        )
    filepath = os.fspath(filepath)
    if not filepath.endswith(".tflite"):
        raise ValueError(
            "Expected filepath to end with '.tflite'. Received: "
            f"filepath={filepath!r}"
        )
    try:
        list(string.Formatter().parse(filepath))
    except ValueError as error:
        raise ValueError(
            f"Expected a valid filepath template ({error}). Received: "
            f"filepath={filepath!r}"
        ) from None
    return filepath


def _check_export_freq(export_freq):
    if export_freq in ("end", "epoch"):
        return export_freq
    if (
        isinstance(export_freq, int)
        and not isinstance(export_freq, bool)
        and export_freq >= 1
    ):
        return export_freq
    raise ValueError(
        "Expected export_freq to be 'end', 'epoch' or a positive integer. "
        f"Received: export_freq={export_freq!r}"
    )


