"""`quantize_apply` on a subclassed model: annotations quantized in place.

A subclassed model's call graph cannot be rebuilt, so each annotated layer
is quantized on its own, as one layer: no BatchNormalization folding, no
range sharing, no split activations. Layers the default scheme runs as
several ops in a Functional model are refused, with what to do instead.
"""

from keras_tflq.quantization import graph as keras_graph
from keras_tflq.quantization.default_scheme import registry
from keras_tflq.quantization.default_scheme.channel_affine import (
    QuantizeChannelAffine,
)
from keras_tflq.quantization.default_scheme.channel_affine import (
    is_channel_affine,
)
from keras_tflq.quantization.default_scheme.registry import Kind
from keras_tflq.quantization.default_scheme.registry import Merge
from keras_tflq.quantization.quantize_wrapper import QuantizeWrapper


def _is_long_chain(info, input_shape):
    """Whether a merge layer runs as a chain of two-input TFLite ops."""
    if info.merge is Merge.MEAN:
        return True
    return (
        info.merge is Merge.CHAIN
        and isinstance(input_shape, (list, tuple))
        and len(input_shape) > 2
        and all(isinstance(s, (list, tuple)) for s in input_shape)
    )


def refusal(layer, input_shape):
    """Why the default scheme cannot quantize `layer` as one layer, or None.

    Args:
        layer: the annotated layer.
        input_shape: the shape (or shapes) it was built with.
    """
    info = registry.info(layer)
    if info is None:
        return "it is not supported by the default quantization scheme"
    if info.kind is Kind.MODEL:
        return "it is a model: annotate the layers inside it instead"
    if info.kind is Kind.SEPARABLE:
        return (
            "inside a subclassed model it cannot be split into the depthwise "
            "and pointwise ops TFLite runs: use a DepthwiseConv2D and a 1x1 "
            "Conv2D"
        )
    activation = registry.activation_name(layer)
    if (
        info.split_activation
        and activation not in registry.KEPT_ACTIVATIONS
    ):
        return (
            f"its activation {activation!r} is not fused by TFLite and inside "
            "a subclassed model cannot be split off: use activation=None and "
            "an annotated keras.layers.Activation after it"
        )
    if info.kind in (Kind.ATTENTION, Kind.LAYER_NORM):
        return (
            "TFLite runs it as several ops, whose ranges the default "
            "scheme's layer for it learns only in a Functional model: "
            "quantize a Functional view of the model (`quantize_model`)"
        )
    if info.kind is Kind.ACTIVATION and activation == "hard_sigmoid":
        return (
            "hard_sigmoid runs as several TFLite ops: inside a subclassed "
            "model use ReLU(6.0) on `x + 3.0`, then multiply by 1/6"
        )
    if _is_long_chain(info, input_shape):
        return (
            "TFLite runs it as a chain of two-input ops, whose intermediate "
            "ranges a subclassed model cannot learn: merge two inputs at a "
            "time with annotated layers"
        )
    return None


def _default_layer(layer, input_shape, per_channel, activation_bits):
    """The default scheme's quantizing layer around `layer`, or None for a
    range-free one."""
    info = registry.info(layer)
    if info.kind is Kind.PASSTHROUGH:
        return None
    if info.kind in (Kind.BATCH_NORM, Kind.AFFINE) and is_channel_affine(
        layer, len(input_shape)
    ):
        return QuantizeChannelAffine(layer, activation_bits=activation_bits)
    quantize_output = not (
        info.kind is Kind.ACTIVATION
        and registry.activation_name(layer) in registry.FIXED_RANGE_ACTIVATIONS
    )
    return QuantizeWrapper(
        layer,
        registry.default_config(
            layer, per_channel, activation_bits, quantize_output
        ),
    )


def in_place_layer(annotation, per_channel, activation_bits, unsupported):
    """The built quantizing layer an annotation runs in place, or None
    (a range-free layer, or an unsupported one left in float)."""
    layer = annotation.layer
    input_shape = keras_graph.build_input_shape(annotation)
    if annotation.quantize_config is not None:
        quantized = QuantizeWrapper(layer, annotation.quantize_config)
    else:
        reason = refusal(layer, input_shape)
        if reason is not None:
            if unsupported == "float":
                return None
            raise ValueError(
                "Expected every annotated layer of a subclassed model to be "
                "quantizable in place by the default scheme, or to carry a "
                f"`quantize_config`. Received: layer={layer.name!r} of type "
                f"{type(layer).__name__}: {reason}. Pass "
                '`unsupported="float"` to keep it in float.'
            )
        quantized = _default_layer(
            layer, input_shape, per_channel, activation_bits
        )
        if quantized is None:
            return None
    quantized.build(input_shape)
    return quantized


def activate_annotations(
    annotations, per_channel, activation_bits, unsupported
):
    """Quantizes built `QuantizeAnnotate` layers in place.

    Every annotation is checked before any is changed. An annotation
    activated before with the same options is left as it is.

    Args:
        annotations: built `QuantizeAnnotate` layers.
        per_channel: per-channel weights for convolutions.
        activation_bits: 8 or 16.
        unsupported: `"error"` or `"float"`.
    """
    options = (per_channel, activation_bits, unsupported)
    planned = []
    for annotation in annotations:
        if annotation.applied_options == options:
            continue
        if annotation.applied_options is not None:
            raise ValueError(
                f"Expected annotation {annotation.name!r} to be quantized "
                "once, or again with the same options. Received: "
                "(per_channel, activation_bits, unsupported)="
                f"{options}, quantized before with "
                f"{annotation.applied_options}"
            )
        if (
            not annotation.built
            or keras_graph.build_input_shape(annotation) is None
        ):
            raise ValueError(
                "Expected a built model: call the subclassed model on a batch "
                "(or build it) before `quantize_apply`, so the annotated "
                "layers know their input shapes. Received: annotated layer "
                f"{annotation.layer.name!r}, not built"
            )
        planned.append((annotation, in_place_layer(annotation, *options)))
    for annotation, quantized in planned:
        annotation.activate(quantized, *options)


def activate_model(
    model,
    annotations,
    per_channel,
    activation_bits,
    unsupported,
    nested=False,
):
    """`quantize_apply` on a subclassed model: activates its annotations.

    Args:
        model: the subclassed model.
        annotations: the `QuantizeAnnotate` layers it tracks.
        per_channel: per-channel weights for convolutions.
        activation_bits: 8 or 16.
        unsupported: `"error"` or `"float"`.
        nested: whether a Functional model calls `model`; a nested one
            may have no annotation (it stays float). Defaults to `False`.
    """
    if not annotations and not nested:
        raise ValueError(
            "Expected a subclassed model with layers annotated by "
            "`quantize_annotate_layer` in its code: `quantize_apply` "
            "quantizes those in place (its other layers cannot be found "
            "automatically). Received: model="
            f"{model.name!r} of type {type(model).__name__}, "
            "with no annotated layer"
        )
    activate_annotations(annotations, per_channel, activation_bits, unsupported)
    # Train/predict functions traced before run the float layers.
    for name in ("train_function", "test_function", "predict_function"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)
