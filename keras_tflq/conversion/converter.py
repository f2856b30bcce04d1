"""Converting a Keras model to TFLite bytes in one export mode."""

import contextlib
import functools
import os
import re
import tempfile
import warnings

import keras
import tensorflow as tf

from keras_tflq.conversion.embedding_export import direct_embedding_lookups
from keras_tflq.conversion.embedding_export import needs_direct_lookups
from keras_tflq.conversion.errors import ConversionError
from keras_tflq.conversion.float32_twin import float32_twin
from keras_tflq.conversion.int16x8_bias import fix_int16x8_fixed_range_outputs
from keras_tflq.conversion.int16x8_bias import widen_int16x8_conv_bias
from keras_tflq.conversion.isolated import convert_isolated
from keras_tflq.conversion.isolated import needs_isolation
from keras_tflq.conversion.lstm_state import align_lstm_hidden_state
from keras_tflq.conversion.modes import configure_converter
from keras_tflq.conversion.native_output import capture_native_output
from keras_tflq.conversion.sequence_checks import needs_static_export
from keras_tflq.conversion.sequence_export import confirm_paths
from keras_tflq.conversion.sequence_export import sequence_converter
from keras_tflq.quantization.quantize import is_quantized_model
from keras_tflq.runtime.inspection import inspect_tflite

_MAX_DIAGNOSTIC_LINES = 6
# The converter's MLIR locations: fused["Erf:",
# "model_1/layer_1/Erf@__inference..."]
_LOCATION = re.compile(r'fused\["([^"]+):", "([^"@]+)')
_OP_ERROR = re.compile(r"('tf\.\w+' op [^\n]*)")


def convert_model(model, mode, **options):
    """Converts a Keras 3 model to TFLite bytes; `options` and errors as
    in `convert_and_inspect`.

    Example:

    ```python
    import keras
    from keras_tflq.conversion.converter import convert_model

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    tflite_bytes = convert_model(model, "dynamic")
    ```
    """
    content, _ = convert_and_inspect(model, mode, **options)
    return content


def convert_and_inspect(
    model,
    mode,
    representative_dataset=None,
    input_type="float32",
    output_type="float32",
    allow_float_ops=False,
    isolate="auto",
):
    """Converts a Keras 3 model to a TFLite flatbuffer with TensorFlow's
    converter.

    `tf.lite.TFLiteConverter.from_keras_model` does the conversion, as in a
    hand-written export; a model with dict inputs, which that route cannot
    trace, is first exported as a SavedModel with Keras' own `ExportArchive`
    (which keeps the dict) and converted with `from_saved_model`. Either
    way the TFLite inputs carry the names of the Keras `Input` layers.

    Args:
        model: A built Keras model.
        mode: One of `keras_tflq.MODES`.
        representative_dataset: Generator function of calibration samples
            keyed by input name. Defaults to `None`.
        input_type: Input tensor type name. Defaults to `"float32"`.
        output_type: Output tensor type name. Defaults to `"float32"`.
        allow_float_ops: Allow float fallback in integer modes.
            Defaults to `False`.
        isolate: Run this conversion in a child process, so that a crash
            of the converter's native code raises a `ConversionError`
            instead of ending this process: `True`, `False`, or `"auto"`
            (or `None`): only for a model holding one of
            `isolated.CRASH_PRONE_LAYERS`. The child takes the same route
            and gives the same artifact. Defaults to `"auto"`.

    Returns:
        `(content, inspection)`: the TFLite model as `bytes` and what
        `inspect_tflite` says of it (the integer check and the report share
        this one inspection).

    Raises:
        ConversionError: The converter rejected the model (the message
            carries the converter's diagnostic), or left an op in float in
            an integer mode without `allow_float_ops`.

    Example:

    ```python
    import keras
    from keras_tflq.conversion.converter import convert_and_inspect

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    content, inspection = convert_and_inspect(model, "dynamic")
    print(len(content), inspection["op_counts"])
    ```
    """
    model = float32_twin(model)  # Mixed precision: the float32 graph.
    if needs_isolation(model, isolate):
        # This very function, with isolate=False, in a child process.
        return convert_isolated(
            model,
            mode,
            representative_dataset=representative_dataset,
            input_type=input_type,
            output_type=output_type,
            allow_float_ops=allow_float_ops,
        )
    sequence_paths = None
    with contextlib.ExitStack() as stack:
        if needs_direct_lookups(model, mode):
            # The 16x8 quantizer rejects Keras' negative-index wrapping.
            stack.enter_context(direct_embedding_lookups(model))
        if needs_static_export(model):
            converter, sequence_paths = sequence_converter(
                model, stack, fuse_lstm=mode != "int16x8"
            )
        else:
            converter = _converter_for(model, stack)
        configure_converter(
            converter,
            mode,
            representative_dataset=representative_dataset,
            input_type=input_type,
            output_type=output_type,
            allow_float_ops=allow_float_ops,
        )
        if representative_dataset is not None and is_quantized_model(model):
            _keep_per_tensor_dense_kernels(converter)
        captured = None
        try:
            with warnings.catch_warnings(), _quiet_stdout():
                # The converter calibrates with the deprecated
                # tf.lite.Interpreter itself.
                warnings.filterwarnings(
                    "ignore", message=".*tf.lite.Interpreter is deprecated"
                )
                # Emitted for every int8-I/O conversion; the ranges come from
                # calibration.
                warnings.filterwarnings(
                    "ignore",
                    message="Statistics for quantized inputs were expected",
                )
                # Its C++ prints go to the report, or the error: not the
                # console.
                with capture_native_output() as captured:
                    content = converter.convert()
        # The converter raises several unrelated types.
        except Exception as error:
            raise ConversionError(
                f"The TFLite converter rejected model {model.name!r} in "
                f"mode={mode!r}: "
                f"{diagnostic(error)}",
                converter_log=captured.text if captured else None,
            ) from error
    return _finish(
        content,
        captured.text,
        model,
        mode,
        allow_float_ops,
        sequence_paths=sequence_paths,
    )


def _keep_per_tensor_dense_kernels(converter):
    """Keeps a calibrated QAT model's `FULLY_CONNECTED` kernels per tensor.

    With calibration data (a QAT model with recurrent layers needs it),
    the converter requantizes every `FULLY_CONNECTED` kernel per channel,
    though QAT fake-quantized it with one range (the default scheme's
    `Dense`): the values the QAT model computed with land between the new
    grid's steps. Measured on TF 2.21: 15 % of a `TimeDistributed(Dense)`'s
    int8 outputs one step off. Per tensor, the converter's max-abs scale is
    the QAT range, and the kernel keeps its values. Convolutions keep
    their per-channel kernels.
    """
    converter._experimental_disable_per_channel_quantization_for_dense_layers = (  # noqa: E501
        True
    )


def _finish(
    content, log, model, mode, allow_float_ops, sequence_paths=None
):
    """The converted bytes fixed up, inspected and checked."""
    if mode == "int16x8":
        content = widen_int16x8_conv_bias(content)
        content = fix_int16x8_fixed_range_outputs(content)
    if mode == "int8" and sequence_paths:
        content = align_lstm_hidden_state(content)
    inspection = {**inspect_tflite(content), "converter_log": log}
    if sequence_paths:
        inspection["sequence_layers"] = confirm_paths(
            sequence_paths, inspection
        )
    if mode in ("int8", "int16x8") and not allow_float_ops:
        _check_integer_only(inspection, model, mode)
    return content, inspection


def _converter_for(model, stack):
    """`from_keras_model`, or for dict inputs a SavedModel in a folder `stack`
    removes."""
    if not _has_dict_inputs(model):
        return tf.lite.TFLiteConverter.from_keras_model(model)
    saved_model_dir = stack.enter_context(
        tempfile.TemporaryDirectory(prefix="keras_tflq_")
    )
    archive = keras.export.ExportArchive()
    archive.track(model)
    signature = {
        key: tf.TensorSpec(tensor.shape, tensor.dtype, name=tensor.name)
        for key, tensor in model.input.items()
    }
    archive.add_endpoint(
        "serve", functools.partial(model.__call__, training=False), [signature]
    )
    with _quiet_stdout():
        archive.write_out(saved_model_dir, verbose=False)
    return tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)


def _has_dict_inputs(model):
    try:
        return isinstance(model.input, dict)
    except (AttributeError, ValueError):
        return False


def _check_integer_only(inspection, model, mode):
    """The converter leaves ops with no integer kernel in float silently; refuse
    them."""
    float_ops = [
        op
        for op in inspection["float_ops"]
        if op["op"] not in ("DEQUANTIZE", "QUANTIZE")
    ]
    if float_ops:
        described = "; ".join(
            f"{op['op']} at {', '.join(op['outputs'])}" for op in float_ops
        )
        raise ConversionError(
            f"Expected every op of model {model.name!r} to be integer in "
            f"mode={mode!r}. "
            f"Received: {len(float_ops)} op(s) left in float: {described}. "
            "Quantize-friendly "
            "layers can replace them, or pass allow_float_ops=True to keep "
            "them in float."
        )


def diagnostic(error):
    """The converter's message cut to its point: the op it rejected and
    where."""
    text = str(error)
    op_errors = list(dict.fromkeys(_OP_ERROR.findall(text)))
    places = list(
        dict.fromkeys(
            f"{path} ({op})"
            for op, path in _LOCATION.findall(text)
            if op != "StatefulPartitionedCall"
        )
    )
    if op_errors or places:
        return "; ".join(op_errors) + (
            f" at {', '.join(places)}" if places else ""
        )
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[:_MAX_DIAGNOSTIC_LINES]) or type(error).__name__


@contextlib.contextmanager
def _quiet_stdout():
    """Silences the exporters' Python-level prints (they list every captured
    variable)."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield
