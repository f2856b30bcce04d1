"""Writing the per-layer error report beside an artifact: JSON, and a PNG."""

import json
import os

import numpy as np

from keras_tflq.conversion.artifact import write_atomic


def layer_samples(calibration, validation, model_inputs, count):
    """Up to `count` samples to compare layers on, as one batch keyed by
    input name: the calibration samples, else the validation data's.

    Raises:
        ValueError: Neither is there (checked with `count=0` in
            `on_train_begin`).
    """
    if calibration is None and validation is None:
        raise ValueError(
            "Expected validation data (or calibration_data=) to compare "
            "layers on with layer_report=True. Received: no validation data "
            "and calibration_data=None"
        )
    if count == 0:
        return None
    if calibration is not None:
        samples = list(calibration.representative_dataset())[:count]
    else:
        samples = [
            model_inputs.to_named_arrays(x, validation.name)
            for x in validation.take_samples(count)
        ]
    return {k: np.concatenate([s[k] for s in samples]) for k in samples[0]}


def layer_report_path(artifact_path):
    """`model_int8.tflite` -> `model_int8_layers.json`."""
    path = str(artifact_path)
    stem = path[: -len(".tflite")] if path.endswith(".tflite") else path
    return stem + "_layers.json"


def write_layer_report(path, errors, title=None):
    """Writes `errors` as JSON at `path` and, with matplotlib, a PNG beside.

    Both files are written atomically.

    Args:
        path: The JSON path (`model_int8_layers.json`); the chart goes to
            the same path with `.png`.
        errors: What `keras_tflq.runtime.layer_error.layer_errors` returns.
        title: The chart's title. Defaults to `None` (the file name).

    Returns:
        `(json_path, png_path)`; `png_path` is `None` when matplotlib is
        not installed (`pip install keras-tflq[plot]`).

    Example:

    >>> errors = layer_errors(model, content, x)
    >>> write_layer_report("m_int8_layers.json", errors)
    ('m_int8_layers.json', 'm_int8_layers.png')
    """
    write_atomic(path, json.dumps({"layers": errors}, indent=2))
    try:
        from keras_tflq.runtime.layer_error_plot import plot_layer_errors
    except ImportError:  # matplotlib is the optional `plot` extra.
        return path, None
    png = (path[: -len(".json")] if path.endswith(".json") else path) + ".png"
    write_atomic(png, plot_layer_errors(errors, title=title or png))
    return path, png


def write_layer_report_for(model, artifact_path, report, x):
    """Compares the artifact at `artifact_path` with `model` layer by layer,
    writes the JSON (and PNG) beside it and records them in its report.

    Args:
        model: The Keras model the artifact was converted from.
        artifact_path: The `.tflite` file just written.
        report: Its report (a dict), rewritten beside it with a
            `layer_report` entry (`{"json": path, "png": path or None}`).
        x: The samples to compare on, a dict of arrays keyed by input name.

    Returns:
        The updated report.
    """
    from keras_tflq.conversion.report import report_path
    from keras_tflq.runtime.layer_error import layer_errors

    with open(artifact_path, "rb") as handle:
        content = handle.read()
    errors = layer_errors(model, content, x)
    json_path, png_path = write_layer_report(
        layer_report_path(artifact_path),
        errors,
        title=f"{model.name}: per-layer error of "
        f"{os.path.basename(artifact_path)}",
    )
    report = {**report, "layer_report": {"json": json_path, "png": png_path}}
    write_atomic(report_path(artifact_path), json.dumps(report, indent=2))
    return report
