"""Export modes and the TFLite converter settings each one needs."""

import numpy as np

MODES = ("float32", "float16", "dynamic", "int8", "int16x8")
"""The export modes, from no quantization to full integer."""

_IO_TYPES = {
    "float32": ("float32",),
    "float16": ("float32",),
    "dynamic": ("float32",),
    "int8": ("int8", "uint8", "float32"),
    "int16x8": ("int16", "float32"),
}


def check_mode(mode):
    """Raises a `ValueError` naming the valid modes unless `mode` is one."""
    if mode not in MODES:
        raise ValueError(
            f"Expected mode to be one of {MODES}. Received: mode={mode!r}"
        )
    return mode


def calibration_need(mode, quantization_aware):
    """`"required"`, `"optional"` or `"none"`: what calibration data `mode`
    needs.

    A float model needs representative data for `"int8"` and `"int16x8"`.
    A quantization-aware model has learned its ranges: in `"int8"` data only
    calibrates ops left unannotated, and in `"int16x8"` the converter
    refuses it.
    """
    if mode not in ("int8", "int16x8"):
        return "none"
    if quantization_aware:
        return "none" if mode == "int16x8" else "optional"
    return "required"


def check_activation_bits(mode, model):
    """Raises a `ValueError` unless the activation bits `model` was
    quantized with fit `mode` (`"int8"`: 8, `"int16x8"`: 16); a float
    model, or one whose bits are unknown, passes.

    Measured on TF 2.21: an 8-bit QAT model converted in `"int16x8"` gives
    an int8 artifact (its fake-quant ops are 8-bit: no int16 tensor), or a
    converter failure with a sigmoid; a 16-bit one in `"int8"` fails in the
    converter (int8 input or output), or gives a 16x8 artifact LiteRT
    refuses to prepare (an int32 depthwise bias).
    """
    from keras_tflq.quantization.quantize import quantized_activation_bits

    expected = {"int8": 8, "int16x8": 16}.get(mode)
    if expected is None:
        return
    activation_bits = quantized_activation_bits(model)
    if activation_bits is None:
        return
    if activation_bits == expected:
        return
    raise ValueError(
        f"Expected a quantization-aware model with activation_bits="
        f"{expected} for mode={mode!r}. Received: a model quantized with "
        f"activation_bits={activation_bits}, mode={mode!r}. Export it with "
        f"mode={'int16x8' if activation_bits == 16 else 'int8'!r}, or "
        "quantize the float model again with "
        f"`quantize_model(model, activation_bits={expected})` and train it."
    )


def default_io_type(mode):
    """The default input/output tensor type for `mode`."""
    return "int8" if mode == "int8" else "float32"


def check_io_type(mode, io_type, arg_name):
    """Normalizes an I/O type (string, NumPy or TF dtype) and checks it fits
    `mode`."""
    if io_type is None:
        return default_io_type(mode)
    try:
        name = np.dtype(getattr(io_type, "as_numpy_dtype", io_type)).name
    except TypeError:
        name = repr(io_type)
    allowed = _IO_TYPES[mode]
    if name not in allowed:
        raise ValueError(
            f"Expected {arg_name} to be one of {allowed} for mode={mode!r}. "
            f"Received: {arg_name}={io_type!r}"
        )
    return name


def configure_converter(
    converter,
    mode,
    representative_dataset=None,
    input_type="float32",
    output_type="float32",
    allow_float_ops=False,
):
    """Sets `converter`'s optimizations, ops, types and calibration for `mode`.

    Args:
        converter: A `tf.lite.TFLiteConverter`.
        mode: One of `MODES`.
        representative_dataset: A generator function of calibration samples;
            required for a float model in `"int8"`/`"int16x8"`, optional for
            a quantization-aware model (whose ranges are learned).
            Defaults to `None`.
        input_type: Input tensor type name. Defaults to `"float32"`.
        output_type: Output tensor type name. Defaults to `"float32"`.
        allow_float_ops: Let ops with no integer kernel fall back to float in
            the integer modes instead of failing. Defaults to `False`.

    Example:

    ```python
    import keras, tensorflow as tf
    from keras_tflq.conversion.modes import configure_converter

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    configure_converter(converter, "float16")
    content = converter.convert()
    ```
    """
    # Imported here on purpose: `MODES` and the checks above serve
    # `import keras_tflq` and the CLI, which must not load TensorFlow.
    import tensorflow as tf

    check_mode(mode)
    if mode == "float32":
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode in ("int8", "int16x8"):
        integer_ops = (
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8
            if mode == "int8"
            else tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8  # noqa: E501
        )
        ops = [integer_ops]
        if allow_float_ops:
            ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
        if representative_dataset is not None:
            converter.representative_dataset = representative_dataset
            converter.target_spec.supported_ops = ops
        elif mode == "int16x8":
            converter.target_spec.supported_ops = ops
        # A quantization-aware int8 model converts from its fake-quant ranges
        # with the default op set: the int8-only set would demand a
        # representative dataset. `convert_model` then checks no op is float.
        converter.inference_input_type = tf.as_dtype(input_type)
        converter.inference_output_type = tf.as_dtype(output_type)
    return converter
