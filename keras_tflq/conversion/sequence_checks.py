"""Which models export through the sequence route, and the checks their
export runs before the first batch.

A model with Keras recurrent layers (`recurrent_layers`, inside nested
models, `Bidirectional` and `TimeDistributed`), `MultiHeadAttention` or
`LayerNormalization` converts through `sequence_export.sequence_converter`
(`needs_static_export`). Its sequence length must be fixed
(`check_sequence_lengths`); a quantization-aware recurrent model needs
calibration data in `"int8"` (`calibration_need`) and cannot export in
`"int16x8"` (`check_sequence_export`).
"""

import keras

from keras_tflq.conversion import modes
from keras_tflq.conversion.model_inputs import ModelInputs
from keras_tflq.quantization.quantize import is_quantized_model

_STATIC_EXPORT_LAYERS = (
    keras.layers.MultiHeadAttention,
    keras.layers.LayerNormalization,
)


def recurrent_layers(model):
    """Every Keras recurrent layer of `model`, with a path-like name.

    Looks inside nested models and the `Bidirectional` and
    `TimeDistributed` wrappers.

    Args:
        model: A Keras model or layer.

    Returns:
        A list of `(name, layer)` for each `keras.layers.RNN` instance.

    Example:

    >>> inputs = keras.Input((8, 4))
    >>> lstm = keras.layers.LSTM(4, return_sequences=True, name="lstm")
    >>> x = keras.layers.Bidirectional(lstm, name="bidirectional")(inputs)
    >>> model = keras.Model(inputs, keras.layers.GRU(4, name="gru")(x))
    >>> [name for name, _ in recurrent_layers(model)]
    ['bidirectional/forward_lstm', 'bidirectional/backward_lstm', 'gru']
    """
    found = []
    for layer in getattr(model, "layers", None) or [model]:
        _collect(layer, "", found)
    return found


def has_recurrent_layers(model):
    """Whether `model` holds a Keras recurrent layer anywhere."""
    return bool(recurrent_layers(model))


def needs_static_export(model):
    """Whether `model` converts through `sequence_converter`.

    Recurrent layers need it (see the module docstring); attention and
    layer normalization gain from it: with a fixed batch the converter
    drops the `SHAPE`/`REDUCE_PROD`/`PACK` ops of the dynamic reshapes in
    `MultiHeadAttention`, and `LayerNormalization` is rewritten without
    the `NEG` op that TFLite has no int8 kernel for.
    """
    return has_recurrent_layers(model) or bool(attention_layers(model))


def check_sequence_lengths(model):
    """Refuses a model with recurrent layers and a dynamic input axis.

    TFLite's sequence kernels and the unrolled fallback both need a fixed
    number of time steps; only the batch axis may be `None`. Called before
    the first batch, so that a long training never ends on this.

    Args:
        model: A built Keras model.

    Raises:
        ValueError: A model input other than its batch axis is `None`.

    Example:

    >>> model = keras.Sequential([keras.Input((None, 4)), keras.layers.GRU(4)])
    >>> check_sequence_lengths(model)
    Traceback (most recent call last):
    ...
    ValueError: Expected input ... to have a fixed sequence length: ...
    """
    layers = recurrent_layers(model)
    if not layers:
        return
    described = _describe(layers)
    for tensor in keras.tree.flatten(ModelInputs(model).structure):
        shape = tuple(tensor.shape)
        if any(dim is None for dim in shape[1:]):
            fixed = ", ".join(
                "timesteps" if dim is None else str(dim) for dim in shape[1:]
            ) + ("," if len(shape) == 2 else "")
            raise ValueError(
                f"Expected input '{tensor.name}' of model {model.name!r} to "
                "have a fixed sequence length: its recurrent layers "
                f"({described}) export to TFLite with a fixed number of "
                f"time steps. Received: shape={shape}. Build the model on "
                f"keras.Input(shape=({fixed})) with the length you train "
                "on (pad or crop sequences to it)."
            )


def check_sequence_export(model, mode):
    """The checks of a recurrent model's export, before the first batch.

    The sequence length must be fixed (`check_sequence_lengths`), and a
    quantization-aware model with recurrent layers cannot be exported in
    `"int16x8"`: TFLite's converter takes the ranges of a QAT model from
    its fake-quant ops, and the recurrent cells' internal tensors (the
    unrolled cells' matmul outputs, sums and products, an LSTM's cell
    state) have none, so their ops stay float. Measured on TF 2.21 (an
    unrolled `SimpleRNN`, `LSTM`, `GRU` of 16 units over 8 steps, from
    `quantize_model(..., activation_bits=16)`): 21, 64 and 103 ops left
    in float; with calibration data as well, the converter's 16x8
    quantizer runs over the partly quantized graph and fails
    ("Quantization to 16x8-bit not yet supported for op: 'DEQUANTIZE'"
    for the `SimpleRNN`, "Node number N (LOGISTIC) failed to prepare"
    for the `LSTM` and `GRU`).

    Args:
        model: A built Keras model.
        mode: The export mode.

    Raises:
        ValueError: A dynamic time axis, or a QAT recurrent model in
            `"int16x8"`.

    Example:

    >>> from keras_tflq import quantize_model
    >>> model = keras.Sequential([keras.Input((8, 4)), keras.layers.GRU(4)])
    >>> check_sequence_export(model, "int16x8")  # a float model: post-training
    >>> check_sequence_export(quantize_model(model), "int16x8")
    Traceback (most recent call last):
    ...
    ValueError: Expected a float model for mode='int16x8' with recurrent ...
    """
    check_sequence_lengths(model)
    layers = recurrent_layers(model)
    if mode != "int16x8" or not layers or not is_quantized_model(model):
        return
    raise ValueError(
        "Expected a float model for mode='int16x8' with recurrent layers: "
        "TFLite's converter quantizes a quantization-aware model from its "
        "fake-quant ops, and the recurrent cells' internal tensors (matmul "
        "outputs, sums and products in each unrolled step, an LSTM's cell "
        "state) have none, so it leaves those ops in float; with "
        "calibration data as well, TensorFlow's 16x8 quantizer fails on "
        "the partly quantized graph. Received: quantization-aware model "
        f"{model.name!r} with recurrent layers ({_describe(layers)}). "
        "Export the float model (before quantize_model) with "
        "mode='int16x8': post-training 16x8, calibrated on the validation "
        "data; or export this model with mode='int8' (the cells' "
        "internals are calibrated on the validation data)."
    )


def calibration_need(mode, model):
    """`"required"`, `"optional"` or `"none"`: what calibration data the
    export of `model` in `mode` needs (`modes.calibration_need`).

    A quantization-aware model with recurrent layers needs it in `"int8"`:
    the converter quantizes the recurrent cells' internal tensors (the
    fused LSTM's cell state and gates, an unrolled cell's sums and
    products) from calibration statistics; fake quant cannot carry them.

    Example:

    >>> from keras_tflq import quantize_model
    >>> dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> calibration_need("int8", quantize_model(dense))
    'optional'
    >>> gru = keras.Sequential([keras.Input((8, 4)), keras.layers.GRU(4)])
    >>> calibration_need("int8", quantize_model(gru))
    'required'
    """
    need = modes.calibration_need(mode, is_quantized_model(model))
    if need == "optional" and has_recurrent_layers(model):
        return "required"
    return need


def calibration_subject(model):
    """What needs calibration, for the errors: "a float model" or "a
    quantization-aware model with recurrent layers (...)"."""
    if not is_quantized_model(model):
        return "a float model"
    layers = _describe(recurrent_layers(model))
    return (
        f"a quantization-aware model with recurrent layers ({layers}), whose "
        "internal tensors the converter quantizes from calibration data"
    )


def _describe(layers):
    return ", ".join(
        f"{type(layer).__name__} {name!r}" for name, layer in layers
    )


def _collect(layer, prefix, found):
    name = f"{prefix}{layer.name}"
    if isinstance(layer, keras.layers.RNN):
        found.append((name, layer))
        return
    if isinstance(layer, keras.layers.Bidirectional):
        for inner in (layer.forward_layer, layer.backward_layer):
            _collect(inner, f"{name}/", found)
        return
    if isinstance(layer, keras.layers.Wrapper):
        _collect(layer.layer, f"{name}/", found)
        return
    for inner in getattr(layer, "layers", None) or []:
        _collect(inner, f"{name}/", found)


def keras_layers(model):
    """Every layer of `model`, inside nested models and wrappers."""
    found = []

    def walk(layer):
        found.append(layer)
        if isinstance(layer, keras.layers.Bidirectional):
            walk(layer.forward_layer)
            walk(layer.backward_layer)
        elif isinstance(layer, keras.layers.Wrapper):
            walk(layer.layer)
        for inner in getattr(layer, "layers", None) or []:
            walk(inner)

    walk(model)
    return found


def attention_layers(model):
    """The `MultiHeadAttention` and `LayerNormalization` layers of `model`
    (`keras_layers`), which export with a fixed batch."""
    return [
        layer
        for layer in keras_layers(model)
        if isinstance(layer, _STATIC_EXPORT_LAYERS)
    ]
