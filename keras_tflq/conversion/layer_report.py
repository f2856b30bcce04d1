"""Writing the per-layer error report beside an artifact: JSON, and a PNG."""

import json

from keras_tflq.conversion.artifact import write_atomic


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

    >>> write_layer_report("m_int8_layers.json", layer_errors(model, content, x))
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
