"""Annotate layers for quantization, and apply it: the QAT entry points.

The checks of the public functions live here; the work is done by the
default scheme's plan and rewrite (`default_scheme/`) for Functional and
Sequential models, and by `in_place` for subclassed ones.
"""

import keras

from keras_tflq.argument_checks import check_bool
from keras_tflq.argument_checks import check_one_of
from keras_tflq.legacy import tfmot_qat
from keras_tflq.legacy.tf_keras_models import is_tf_keras_model
from keras_tflq.quantization import graph as keras_graph
from keras_tflq.quantization import in_place
from keras_tflq.quantization.default_scheme import registry
from keras_tflq.quantization.default_scheme import rewrite
from keras_tflq.quantization.default_scheme.base_layer import SchemeLayer
from keras_tflq.quantization.default_scheme.default_quantize_config import (
    ACTIVATION_BITS,
)
from keras_tflq.quantization.default_scheme.plan import unsupported_error
from keras_tflq.quantization.default_scheme.registry import Kind
from keras_tflq.quantization.quantize_annotate import UNSUPPORTED_CHOICES
from keras_tflq.quantization.quantize_annotate import QuantizeAnnotate
from keras_tflq.quantization.quantize_annotate import annotations_in
from keras_tflq.quantization.quantize_config import QuantizeConfig
from keras_tflq.quantization.quantize_wrapper import QuantizeWrapper

# The layers keras_tflq quantizes with.
_QUANTIZED_LAYERS = (QuantizeWrapper, SchemeLayer)


def _check_layer(layer):
    if not isinstance(layer, keras.layers.Layer):
        raise ValueError(
            "Expected `layer` to be a keras.layers.Layer instance. "
            f"Received: layer={layer!r}"
        )
    if isinstance(layer, (QuantizeAnnotate,) + _QUANTIZED_LAYERS):
        raise ValueError(
            "Expected a layer that is not already annotated or quantized. "
            f"Received: layer={layer.name!r} of type {type(layer).__name__}"
        )


def _check_quantize_config(quantize_config):
    if quantize_config is not None and not isinstance(
        quantize_config, QuantizeConfig
    ):
        raise ValueError(
            "Expected `quantize_config` to be a keras_tflq.QuantizeConfig "
            f"instance or None. Received: quantize_config={quantize_config!r}"
        )


def _check_options(per_channel, activation_bits, unsupported):
    check_bool("per_channel", per_channel)
    check_one_of("activation_bits", activation_bits, ACTIVATION_BITS)
    check_one_of("unsupported", unsupported, UNSUPPORTED_CHOICES)


def quantize_annotate_layer(layer, quantize_config=None):
    """Marks a layer to be quantized by `quantize_apply`.

    Use it inline in model code, Functional or subclassed (in `__init__`);
    the returned layer computes exactly what `layer` computes until
    `quantize_apply` is called on the model. A `tf_keras` layer is
    annotated by tfmot (the `legacy` extra; `quantize_config` is then a
    tfmot `QuantizeConfig`).

    A Functional or Sequential model used as a layer has every layer inside
    it annotated (as `quantize_annotate_model` would, raising on a layer
    the default scheme does not support); the model itself takes no
    `quantize_config`: give each custom layer inside it its own.

    Args:
        layer: the Keras layer to annotate, or a Functional or Sequential
            model to annotate every layer of.
        quantize_config: a `keras_tflq.QuantizeConfig` saying how to
            quantize it, or `None` for the default scheme (which must
            support the layer). Must be `None` for a model. Defaults to
            `None`.

    Returns:
        A `QuantizeAnnotate` layer wrapping `layer`; for a model, a copy of
        it (same weights) with its layers annotated.

    Example:

    ```python
    import keras
    import keras_tflq as tflq

    inputs = keras.Input((8,))
    x = tflq.quantize_annotate_layer(keras.layers.Dense(4))(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    qat_model = tflq.quantize_apply(model)  # only the first Dense quantized
    ```
    """
    if is_tf_keras_model(layer, "layer"):
        return tfmot_qat.quantize_annotate_layer(layer, quantize_config)
    _check_layer(layer)
    _check_quantize_config(quantize_config)
    if isinstance(layer, keras.Model):
        if quantize_config is not None:
            raise ValueError(
                "Expected `quantize_config` to be None for a model: a "
                "QuantizeConfig describes the weights and activations of one "
                "layer. Annotate the layers inside the model instead, each "
                "with its own config (`quantize_annotate_layer(inner_layer, "
                "quantize_config)`), or pass the model without a config to "
                "annotate every supported layer in it. Received: "
                f"layer={layer.name!r} of type {type(layer).__name__}, "
                f"quantize_config={quantize_config!r}"
            )
        keras_graph.functional_model(layer, argument="layer")
        return _annotate(layer, "error", "quantize_annotate_layer")
    return QuantizeAnnotate(layer, quantize_config)


def quantize_annotate_model(model, unsupported="error"):
    """Marks every layer of a model the default scheme supports.

    A `tf_keras` model is annotated by tfmot (the `legacy` extra).

    Args:
        model: a Functional or Sequential model (nested models are
            annotated too). The layers of a subclassed model cannot be
            found and replaced: annotate them inline instead. A subclassed
            model nested in `model` is refused, or with
            `unsupported="float"` kept as it is (with its own inline
            annotations).
        unsupported: `"error"` raises on a layer the default scheme does not
            support, `"float"` leaves it unannotated (it stays float).
            Defaults to `"error"`.

    Returns:
        A new model with annotated layers and the same weights.

    Example:

    ```python
    import keras
    import keras_tflq as tflq

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    qat_model = tflq.quantize_apply(tflq.quantize_annotate_model(model))
    ```
    """
    _check_options(True, 8, unsupported)
    if is_tf_keras_model(model):
        return tfmot_qat.quantize_annotate_model(model, unsupported)
    return _annotate(model, unsupported, "quantize_annotate_model")


def _annotate(model, unsupported, entry_point):
    """`model` with every supported layer annotated; an unsupported one
    raises the error worded for the public function `entry_point`."""
    graph = keras_graph.Graph(keras_graph.functional_model(model))
    pending = []
    replaced = {}

    def operation_fn(operation):
        if id(operation) in replaced:
            return replaced[id(operation)]
        if isinstance(operation, QuantizeAnnotate) or not isinstance(
            operation, keras.layers.Layer
        ):
            new = operation  # annotated already, or a stateless Keras op
        elif keras_graph.is_subclassed(operation):
            if unsupported == "error":
                # Raises, with guidance.
                keras_graph.functional_model(operation)
            new = operation  # its inline annotations are its own
        elif isinstance(operation, keras.Model):
            new = _annotate(operation, unsupported, entry_point)
        elif registry.kind(operation) is Kind.PASSTHROUGH:
            new = rewrite.float_layer(operation, pending)
        elif registry.is_supported(operation):
            new = QuantizeAnnotate(rewrite.copy_layer(operation, pending))
        elif unsupported == "error":
            raise unsupported_error(operation, entry_point)
        else:
            new = rewrite.float_layer(operation, pending)
        replaced[id(operation)] = new
        return new

    new_model = graph.rebuild(operation_fn)
    for copy in pending:
        copy()
    return new_model


def _activate_in_place(model, per_channel, activation_bits, unsupported):
    in_place.activate_model(
        model, annotations_in(model), per_channel, activation_bits, unsupported
    )


def quantize_apply(
    model, per_channel=True, activation_bits=8, unsupported="error"
):
    """Turns an annotated model into a quantization-aware-training model.

    Annotated layers get fake quantization on their weights and outputs;
    the default scheme follows TFLite's int8 spec: BatchNormalization
    folded into the convolution before it, ReLU/ReLU6 fused with the op
    before them, Concatenate inputs sharing the output range, range-free
    layers (Reshape, MaxPooling, Dropout, ...) left as they are. The
    model inputs are quantized too, so the TFLite model can take int8.

    A Functional or Sequential model is rebuilt: the result is a new model
    and `model` is left as it was. A subclassed model cannot be rebuilt,
    so it is quantized **in place** and returned itself: each
    `QuantizeAnnotate` among its tracked layers (attributes, lists, nested
    models; found recursively) starts running its layer, with the same
    float weights, through the quantizers of its `QuantizeConfig` (the
    default scheme's if none). There, each annotated layer is quantized on
    its own: no BatchNormalization folding (an annotated one runs as one
    int8 per-channel op), no range sharing across layers, and the model
    inputs are not quantized; the converter calibrates such tensors from
    representative data (`TFLiteExport` uses the validation data), or call
    `quantize_apply` on a Functional model that calls the subclassed one,
    which quantizes the inputs (and the subclassed model, in place). The
    activation is recorded in the weights, so the saved model reloads
    quantized. Call the model on a batch before (it must be built).

    A `tf_keras` model is quantized by tfmot (the `legacy` extra) with its
    default 8-bit scheme; `activation_bits=16` and `unsupported="float"`
    are refused there.

    Args:
        model: a Functional or Sequential model with annotated layers
            (`quantize_annotate_layer`, `quantize_annotate_model`), or a
            built subclassed model with layers annotated in its code.
        per_channel: per-channel weights for convolutions (TFLite's int8
            spec); `False` for hardware that needs per-tensor weights.
            Defaults to `True`.
        activation_bits: `8` for int8, `16` for TFLite's 16x8 mode
            (symmetric 16-bit activations, 8-bit weights). Defaults to `8`.
        unsupported: what to do with an annotated layer the default scheme
            does not support and no `quantize_config` covers: `"error"` or
            `"float"` (leave it in float). Defaults to `"error"`.

    Returns:
        A new, trainable Keras model with the float weights carried over;
        for a subclassed `model`, `model` itself, quantized in place.

    Example:

    ```python
    import keras
    import keras_tflq as tflq

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    qat_model = tflq.quantize_apply(tflq.quantize_annotate_model(model))
    qat_model.compile("adam", "mse")

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = tflq.quantize_annotate_layer(keras.layers.Dense(2))

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(keras.ops.ones((1, 8)))
    assert tflq.quantize_apply(net) is net  # quantized in place
    ```
    """
    _check_options(per_channel, activation_bits, unsupported)
    if is_tf_keras_model(model):
        return tfmot_qat.quantize_apply(
            model, per_channel, activation_bits, unsupported
        )
    if keras_graph.is_subclassed(model):
        _activate_in_place(model, per_channel, activation_bits, unsupported)
        return model
    return rewrite.apply(
        model, per_channel, activation_bits, unsupported, quantize_inputs=True
    )


def quantize_model(
    model, per_channel=True, activation_bits=8, unsupported="error"
):
    """Annotates every supported layer of `model` and applies quantization.

    The result trains as usual (`compile`, `fit`) and converts with
    `tf.lite.TFLiteConverter` and `Optimize.DEFAULT` to a full-integer
    model using the learned ranges, with no representative dataset.
    A `tf_keras` model is quantized by tfmot (the `legacy` extra) with its
    default 8-bit scheme; `activation_bits=16` and `unsupported="float"`
    are refused there.

    Args:
        model: a Functional or Sequential model (nested models included;
            for a subclassed model, annotate its layers inline and use
            `quantize_apply`).
        per_channel: per-channel weights for convolutions. Defaults to
            `True`.
        activation_bits: `8` (int8) or `16` (16x8). Defaults to `8`.
        unsupported: `"error"` raises on a layer the default scheme does
            not support; `"float"` leaves it in float. Defaults to
            `"error"`.

    Returns:
        A new, trainable Keras model with the float weights carried over.

    Example:

    ```python
    import keras
    import keras_tflq as tflq

    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])
    qat_model = tflq.quantize_model(model)
    qat_model.compile("adam", "sparse_categorical_crossentropy")
    ```
    """
    _check_options(per_channel, activation_bits, unsupported)
    if is_tf_keras_model(model):
        return tfmot_qat.quantize_model(
            model, per_channel, activation_bits, unsupported
        )
    annotated = _annotate(model, unsupported, "quantize_model")
    return rewrite.apply(
        annotated,
        per_channel,
        activation_bits,
        unsupported,
        quantize_inputs=True,
    )


def is_quantized_model(model):
    """Whether `model` has keras_tflq fake quantization anywhere in it.

    Args:
        model: a Keras model (nested models and layers are searched).

    Returns:
        True if any layer is a keras_tflq quantize wrapper.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> is_quantized_model(model)
    False
    """
    if is_tf_keras_model(model):
        return tfmot_qat.is_tfmot_quantized(model)
    if isinstance(model, _QUANTIZED_LAYERS):
        return True
    return any(
        isinstance(layer, _QUANTIZED_LAYERS)
        for layer in keras_graph.flatten_layers(model)
    )


def quantized_activation_bits(model):
    """The activation bits `model` was quantized with: 8, 16 or None.

    Read from the default scheme's layers and configs (each holds its
    `activation_bits`); None for a float model, a `tf_keras` model, a
    model quantized only with custom `QuantizeConfig`s, or one mixing
    both widths.

    Args:
        model: a Keras model (nested models and layers are searched).

    Returns:
        `8`, `16` or None.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> quantized_activation_bits(quantize_model(model, activation_bits=16))
    16
    """
    if is_tf_keras_model(model):
        return None
    found = set()
    for layer in keras_graph.flatten_layers(model):
        holder = layer
        if isinstance(layer, QuantizeWrapper):
            holder = layer.quantize_config
        bits = getattr(holder, "activation_bits", None)
        if bits in ACTIVATION_BITS:
            found.add(bits)
    return found.pop() if len(found) == 1 else None
