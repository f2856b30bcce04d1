"""Exporting a Keras model to a TFLite artifact and its report, in or out of
`fit()`."""

import json
import time

from keras_tflq.conversion import modes
from keras_tflq.conversion.artifact import check_writable_folder
from keras_tflq.conversion.artifact import write_artifact
from keras_tflq.conversion.artifact import write_atomic
from keras_tflq.conversion.calibration import CalibrationSet
from keras_tflq.conversion.converter import convert_and_inspect
from keras_tflq.conversion.data_source import DataSource
from keras_tflq.conversion.isolated import check_isolate
from keras_tflq.conversion.model_inputs import ModelInputs
from keras_tflq.conversion.report import build_report
from keras_tflq.conversion.report import report_path
from keras_tflq.conversion.sequence_checks import calibration_need
from keras_tflq.conversion.sequence_checks import calibration_subject
from keras_tflq.conversion.sequence_checks import check_sequence_export
from keras_tflq.legacy.artifact_evaluator import evaluator_for


def export_artifact(
    model,
    path,
    mode,
    model_inputs,
    calibration=None,
    input_type="float32",
    output_type="float32",
    allow_float_ops=False,
    evaluator=None,
    validation=None,
    epoch=None,
    keras_metrics=None,
    verbose=0,
    isolate="auto",
    amend_report=None,
):
    """Converts `model`, scores the artifact, and writes it with its report.

    The building block shared by `TFLiteExport` and `export_tflite`: the
    arguments are already checked objects.

    Args:
        model: The Keras model.
        path: The artifact's path.
        mode: The export mode.
        model_inputs: The model's `ModelInputs`.
        calibration: A `CalibrationSet`, or `None`. Defaults to `None`.
        input_type: Input tensor type name. Defaults to `"float32"`.
        output_type: Output tensor type name. Defaults to `"float32"`.
        allow_float_ops: Allow float fallback. Defaults to `False`.
        evaluator: An `ArtifactEvaluator`, or `None` not to evaluate.
            Defaults to `None`.
        validation: The `DataSource` to evaluate on. Defaults to `None`.
        epoch: The 1-based epoch, for the report. Defaults to `None`.
        keras_metrics: The Keras logs at export, for the report.
            Defaults to `None`.
        verbose: Progress bar during evaluation. Defaults to `0`.
        isolate: Convert in a child process (see `convert_and_inspect`).
            Defaults to `"auto"`.
        amend_report: A function of `(path, content, report)` that adds
            to the report in place once the artifact is written at `path`
            and before the report is, so that the report is written once,
            complete (the micro target's results); if it raises, the
            report is written as it stands. Defaults to `None`.

    Returns:
        The report (a dict); the artifact is at `path`, the report beside it.
    """
    started = time.perf_counter()
    content, inspection = convert_and_inspect(
        model,
        mode,
        representative_dataset=calibration.representative_dataset
        if calibration
        else None,
        input_type=input_type,
        output_type=output_type,
        allow_float_ops=allow_float_ops,
        isolate=isolate,
    )
    seconds = time.perf_counter() - started
    tflite_metrics = {}
    if evaluator is not None:
        tflite_metrics = evaluator.evaluate(
            content, validation, model_inputs, verbose=verbose
        )
    report = build_report(
        model,
        path,
        content,
        inspection,
        mode,
        calibration=calibration,
        input_type=input_type,
        output_type=output_type,
        allow_float_ops=allow_float_ops,
        epoch=epoch,
        keras_metrics=keras_metrics,
        tflite_metrics=tflite_metrics,
        conversion_seconds=seconds,
    )
    write_with_report(path, content, report, amend_report)
    return report


def write_with_report(path, content, report, amend_report=None):
    """Writes the artifact `content` at `path` and `report` beside it, each
    atomically and once; `amend_report(path, content, report)`, if given,
    runs between the two (see `export_artifact`)."""
    if amend_report is None:
        write_artifact(path, content, report)
        return
    write_atomic(path, content)
    try:
        amend_report(path, content, report)
    finally:
        write_report(path, report)  # once, with what was added


def write_report(path, report):
    """Writes `report` atomically beside the artifact at `path`."""
    write_atomic(report_path(path), json.dumps(report, indent=2))


def export_tflite(
    model,
    filepath,
    mode="int8",
    calibration_data=None,
    calibration_samples=200,
    input_type=None,
    output_type=None,
    allow_float_ops=False,
    validation_data=None,
    verbose=0,
    isolate_conversion="auto",
):
    """Exports a trained Keras model to a TFLite artifact, outside `fit()`.

    The same conversion, checks, atomic writing and JSON report as
    `TFLiteExport`, for a model already trained (or loaded from `.keras`).

    Args:
        model: A built Keras model (Sequential or functional).
        filepath: The `.tflite` path; the report goes beside it as `.json`.
        mode: `"float32"`, `"float16"`, `"dynamic"`, `"int8"` or
            `"int16x8"`. Defaults to `"int8"`.
        calibration_data: Calibration data for integer modes on a float
            model (any form `fit()` accepts). Defaults to `None`.
        calibration_samples: The most calibration samples.
            Defaults to `200`.
        input_type: Input tensor type (see `TFLiteExport`).
            Defaults to `None` (int8 for `"int8"`, float32 otherwise).
        output_type: Output tensor type. Defaults to `None` (as input_type).
        allow_float_ops: Allow float fallback in integer modes.
            Defaults to `False`.
        validation_data: `(x, y)` (or a dataset) to score the artifact on
            with the model's compiled loss and metrics. Defaults to `None`.
        verbose: Progress bar during evaluation. Defaults to `0`.
        isolate_conversion: Convert in a child process, so that a crash in
            the converter's native code raises a `ConversionError` instead
            of ending this process: `True`, `False`, or `"auto"` (`None`
            reads as `"auto"`): only a model holding a layer the
            converter is known to crash on (recurrent layers, see
            `keras_tflq.conversion.isolated.CRASH_PRONE_LAYERS`). The
            child runs the same conversion and writes the same artifact.
            Defaults to `"auto"`.

    Returns:
        The report, a dict (also written beside the artifact).

    Example:

    ```python
    import numpy as np, keras, keras_tflq

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    report = keras_tflq.export_tflite(
        model, "demo_int8.tflite", calibration_data=np.random.rand(32, 8))
    assert report["all_integer"]
    ```
    """
    modes.check_mode(mode)
    input_type = modes.check_io_type(mode, input_type, "input_type")
    output_type = modes.check_io_type(mode, output_type, "output_type")
    filepath = str(filepath)
    check_writable_folder(filepath)
    model_inputs = ModelInputs(model)
    check_sequence_export(model, mode)
    modes.check_activation_bits(mode, model)
    need = calibration_need(mode, model)
    if need == "required" and calibration_data is None:
        raise ValueError(
            f"Expected calibration_data for mode={mode!r} on "
            f"{calibration_subject(model)}. Received: calibration_data=None"
        )
    calibration = None
    if need != "none" and calibration_data is not None:
        calibration = CalibrationSet(
            DataSource(calibration_data, name="calibration_data"),
            model_inputs,
            calibration_samples,
        )
    validation = (
        None
        if validation_data is None
        else DataSource(validation_data, name="validation_data")
    )
    return export_artifact(
        model,
        filepath,
        mode,
        model_inputs,
        calibration=calibration,
        input_type=input_type,
        output_type=output_type,
        allow_float_ops=allow_float_ops,
        evaluator=None if validation is None else evaluator_for(model),
        validation=validation,
        verbose=verbose,
        isolate=check_isolate(isolate_conversion),
    )

