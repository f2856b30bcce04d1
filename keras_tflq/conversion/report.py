"""The report written beside every artifact: what was exported, how, and how
well it scores."""

import os

import keras
import numpy as np
import tensorflow as tf

from keras_tflq.legacy.tf_keras_models import legacy_versions
from keras_tflq.quantization import is_quantized_model
from keras_tflq.version import __version__


def build_report(
    model,
    path,
    content,
    inspection,
    mode,
    calibration=None,
    input_type="float32",
    output_type="float32",
    allow_float_ops=False,
    epoch=None,
    keras_metrics=None,
    tflite_metrics=None,
    conversion_seconds=None,
):
    """Describes one export as a JSON-serialisable dict.

    Args:
        model: The Keras model that was converted.
        path: Where the artifact is written.
        content: The artifact's bytes.
        inspection: What `inspect_tflite` says of `content`.
        mode: The export mode.
        calibration: The `CalibrationSet` used, or `None`. Defaults to `None`.
        input_type: Input tensor type name. Defaults to `"float32"`.
        output_type: Output tensor type name. Defaults to `"float32"`.
        allow_float_ops: Whether float fallback was allowed.
            Defaults to `False`.
        epoch: The 1-based epoch of the export, or `None` outside `fit()`.
            Defaults to `None`.
        keras_metrics: The Keras model's logs at export. Defaults to `None`.
        tflite_metrics: The artifact's scores. Defaults to `None`.
        conversion_seconds: Time the conversion took. Defaults to `None`.

    Returns:
        A dict with `path`, `mode`, `bytes`, `epoch`, `quantization`,
        `calibration`, I/O types, what `inspect_tflite` reports (I/O
        quantization parameters, op counts, tensor types, float ops left),
        the Keras and TFLite metrics and the versions used.

    Example:

    ```python
    import keras
    from keras_tflq.conversion.converter import convert_and_inspect
    from keras_tflq.conversion.report import build_report

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    content, inspection = convert_and_inspect(model, "dynamic")
    report = build_report(model, "m.tflite", content, inspection, "dynamic")
    print(report["bytes"], report["quantization"])
    ```
    """
    if is_quantized_model(model):
        quantization = "quantization-aware"
    else:
        quantization = "none" if mode == "float32" else "post-training"
    return {
        "path": os.path.abspath(path),
        "mode": mode,
        "bytes": len(content),
        "epoch": epoch,
        "quantization": quantization,
        "calibration": calibration.describe()
        if calibration is not None
        else None,
        "input_type": input_type,
        "output_type": output_type,
        "allow_float_ops": allow_float_ops,
        **inspection,
        "keras_metrics": _plain(keras_metrics or {}),
        "tflite_metrics": _plain(tflite_metrics or {}),
        "conversion_seconds": None
        if conversion_seconds is None
        else round(conversion_seconds, 3),
        "versions": {
            "keras_tflq": __version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            **legacy_versions(model),
        },
    }


def report_path(artifact_path):
    """The report's path for an artifact: `model_int8.tflite` ->
    `model_int8.json`."""
    return os.path.splitext(artifact_path)[0] + ".json"


def _plain(metrics):
    return {
        k: float(v) if isinstance(v, (np.generic, float, int)) else str(v)
        for k, v in metrics.items()
    }
