"""The microcontroller target of an export: checks, report key and C sources.

What `TFLiteExport(..., target="micro")` adds to a LiteRT export, in the
order of the fault contract: the target and mode are checked at
construction (`check_target`, `check_micro_mode`, and `tflite-micro` must be
importable); the trial conversion of `on_train_begin` must run in TensorFlow
Lite Micro (`check_micro_artifact`); after each export the artifact is run
in TFLM and compared with LiteRT, its arena measured, the report given a
`micro` key and the C++ sources written beside it (`add_micro_target`).
"""

import os

from keras_tflq.argument_checks import check_one_of
from keras_tflq.conversion.calibration import CalibrationSet
from keras_tflq.conversion.errors import ConversionError
from keras_tflq.conversion.micro_sources import write_micro_sources

TARGETS = ("litert", "micro")
"""Where an artifact runs: LiteRT (phones, desktops) or TFLite Micro."""

MICRO_SAMPLES = 32
"""Validation samples run in both TFLM and LiteRT after each export."""

# Modes TFLM cannot run, and why.
_MICRO_REFUSED_MODES = {
    "dynamic": (
        "TensorFlow Lite Micro has no dynamic-range (hybrid) kernels: its "
        "FULLY_CONNECTED and CONV_2D refuse float inputs with int8 weights"
    ),
    "float16": (
        "TensorFlow Lite Micro cannot dequantize float16 weights (its "
        "DEQUANTIZE reads int8, uint8 and int16 only)"
    ),
}


def check_target(target):
    """`target` if it is `"litert"` or `"micro"`, else a `ValueError`."""
    return check_one_of("target", target, TARGETS)


def check_micro_mode(mode):
    """Refuses, with the reason and what to use, a mode TFLM cannot run.

    `"int8"`, `"int16x8"` and `"float32"` run in TFLM; `"dynamic"` and
    `"float16"` do not.
    """
    if mode in _MICRO_REFUSED_MODES:
        raise ValueError(
            f"Expected a mode TensorFlow Lite Micro can run with "
            f'target="micro": "int8" (smallest and fastest on a '
            f'microcontroller), "int16x8" or "float32". Received: '
            f"mode={mode!r} ({_MICRO_REFUSED_MODES[mode]})"
        )
    return mode


def require_tflite_micro():
    """Raises an `ImportError` naming the `micro` extra unless installed."""
    from keras_tflq.runtime.micro import tflite_micro_runtime

    tflite_micro_runtime()


def check_micro_artifact(content, model):
    """Raises a `ConversionError` unless every op of `content` runs in TFLM.

    The error names the op and the Keras layer of `model` it came from.
    """
    from keras_tflq.runtime.micro import MicroError
    from keras_tflq.runtime.micro import check_micro_ops

    try:
        return check_micro_ops(content, _layer_names(model))
    except MicroError as error:
        raise ConversionError(
            f"Model {model.name!r} cannot run on TensorFlow Lite Micro: {error}"
        ) from None


def micro_samples(source, model_inputs, count=MICRO_SAMPLES):
    """Up to `count` samples of `source` (a `DataSource`) for the TFLM run,
    as `{input name: array}` dicts; `None` when there is no source."""
    if source is None:
        return None
    samples = CalibrationSet(source, model_inputs, count)
    return list(samples.representative_dataset())


def add_micro_target(path, content, report, model=None, samples=None):
    """Runs the artifact `content`, just written at `path`, in TFLM and adds
    the `micro` key to its report.

    The artifact is checked op by op, its smallest arena measured, and its
    TFLM outputs compared with LiteRT's on `samples`; `report` gains
    `micro`, and `<stem>.h` and `<stem>.cc` are written beside the
    artifact, each atomically. The caller writes the report, once, after
    this (`export_artifact(..., amend_report=...)`).

    Args:
        path: Where the artifact is written.
        content: The artifact's bytes.
        report: Its report (a dict), updated in place.
        model: The Keras model, to name layers in errors. Defaults to `None`.
        samples: A list of `{input name: array}` samples of batch 1, or
            `None` for random inputs. Defaults to `None`.

    Returns:
        The report.

    Raises:
        ConversionError: TFLM cannot run the artifact, or its outputs
            differ from LiteRT's by more than one quantization step.

    Example:

    >>> export_artifact(model, "m.tflite", "int8", inputs, amend_report=(
    ...     lambda path, content, report: add_micro_target(
    ...         path, content, report, model)))
    """
    from keras_tflq.runtime.micro import MicroError
    from keras_tflq.runtime.micro import analyze_micro

    try:
        micro = analyze_micro(
            content,
            samples=_in_artifact_order(content, samples),
            layer_names=_layer_names(model),
        )
    except MicroError as error:
        raise ConversionError(
            f"The artifact {path!r} cannot run on TensorFlow Lite Micro: "
            f"{error}"
        ) from None
    if samples is not None:
        micro["litert_agreement"]["source"] = "validation_data"
    stem = os.path.splitext(os.path.basename(path))[0]
    folder = os.path.dirname(os.path.abspath(path))
    micro["sources"] = write_micro_sources(content, micro, folder, stem)
    report["micro"] = micro
    return report


def _layer_names(model):
    return None if model is None else [layer.name for layer in model.layers]


def _in_artifact_order(content, samples):
    """Named samples as lists in the order of the artifact's input tensors."""
    if samples is None:
        return None
    from ai_edge_litert.interpreter import Interpreter

    from keras_tflq.runtime.tensor_io import named_io

    interpreter = Interpreter(model_content=bytes(content))
    inputs, _ = named_io(interpreter)
    name_of = {details["index"]: name for name, details in inputs}
    order = [name_of[d["index"]] for d in interpreter.get_input_details()]
    return [[sample[name] for name in order] for sample in samples]
