"""Which layers the default scheme supports, and how it quantizes each."""

import keras

from keras_tflq.quantization.default_scheme.conv_batchnorm_fold import (
    conv_weight_axis,
)
from keras_tflq.quantization.default_scheme.default_quantize_config import (
    DefaultQuantizeConfig,
)

L = keras.layers

# Layers with weights: quantized kernel, quantized output.
_CONVS = (
    L.Conv1D,
    L.Conv2D,
    L.DepthwiseConv1D,
    L.DepthwiseConv2D,
)
_TRANSPOSED_CONVS = (L.Conv2DTranspose,)
_DENSE = (L.Dense,)
# Layers that move or select values without changing their range: TFLite
# requires (or propagates) equal input and output quantization, so no
# quantizer of their own.
_PASSTHROUGH = (
    L.InputLayer,
    L.Reshape,
    L.Flatten,
    L.Dropout,
    L.SpatialDropout1D,
    L.SpatialDropout2D,
    L.GaussianNoise,
    L.GaussianDropout,
    L.AlphaDropout,
    L.ActivityRegularization,
    L.ZeroPadding1D,
    L.ZeroPadding2D,
    L.Cropping1D,
    L.Cropping2D,
    L.MaxPooling1D,
    L.MaxPooling2D,
    L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D,
    L.Permute,
    L.Identity,
    # TFLite requires equal input and output quantization for these.
    L.AveragePooling1D,
    L.AveragePooling2D,
    L.UpSampling1D,
    L.UpSampling2D,
)
# Layers without weights whose output needs its own range. (Layers that
# TFLite runs as several ops, such as LayerNormalization, or has no int8
# kernel for, such as ELU, are not supported: they would leave float ops.)
_OUTPUT_ONLY = (
    L.Add,
    L.Subtract,
    L.Multiply,
    L.Average,
    L.Maximum,
    L.Minimum,
    L.Concatenate,
    L.GlobalAveragePooling1D,
    L.GlobalAveragePooling2D,
    L.Softmax,
    L.LeakyReLU,
    L.PReLU,
    L.ReLU,
    L.Activation,
)
# Per-channel affine layers, run as one int8 depthwise op.
_AFFINE = (L.Rescaling, L.Normalization)
# Keras ops used on symbolic tensors (`x + 3.0`) appear as operations.
_OP_ARITHMETIC = ("Add", "Subtract", "Multiply", "Divide", "TrueDivide")
_OP_PASSTHROUGH = ("Reshape", "Transpose", "ExpandDims", "Squeeze", "GetItem")
# Activations TFLite fuses into the op before them (no range in between).
FUSABLE_ACTIVATIONS = ("relu", "relu6")
# Activations TFLite runs with a fixed output range.
FIXED_RANGE_ACTIVATIONS = ("sigmoid", "softmax", "tanh")
# Activations the default scheme supports as standalone TFLite ops.
SUPPORTED_ACTIVATIONS = (
    "linear",
    "relu",
    "relu6",
    "sigmoid",
    "softmax",
    "tanh",
    "silu",
    "swish",
    "hard_silu",
    "hard_swish",
    "hard_sigmoid",
    "leaky_relu",
    "gelu",
)


def activation_name(layer):
    """The activation a layer applies, as a Keras name, or None."""
    if isinstance(layer, L.ReLU):
        if float(layer.negative_slope) == 0.0 and float(layer.threshold) == 0.0:
            if layer.max_value is None:
                return "relu"
            if float(layer.max_value) == 6.0:
                return "relu6"
        return "relu_custom"
    if isinstance(layer, L.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    name = keras.activations.serialize(activation)
    return name if isinstance(name, str) else "custom"


def kind(layer):
    """How the default scheme treats `layer`.

    Returns one of "conv", "dense", "transposed_conv", "separable",
    "batch_norm", "affine", "activation", "passthrough", "output", "op"
    (an arithmetic Keras op), "model", or None (unsupported).
    """
    if not isinstance(layer, L.Layer):
        name = type(layer).__name__
        if name in _OP_ARITHMETIC:
            return "op"
        if name in _OP_PASSTHROUGH:
            return "passthrough"
        return None
    if isinstance(layer, keras.Model):
        return "model"
    builtin = getattr(layer, "activation", None)
    if (
        builtin is not None
        and not isinstance(layer, L.Activation)
        and activation_name(layer) not in SUPPORTED_ACTIVATIONS
    ):
        return None  # an activation TFLite has no int8 kernel for
    if isinstance(layer, L.SeparableConv2D):
        return "separable"
    if isinstance(layer, _CONVS):
        return "conv"
    if isinstance(layer, _TRANSPOSED_CONVS):
        return "transposed_conv"
    if isinstance(layer, _DENSE):
        return "dense"
    if isinstance(layer, L.BatchNormalization):
        return "batch_norm"
    if isinstance(layer, _AFFINE):
        return "affine"
    if isinstance(layer, (L.ReLU, L.Activation, L.Softmax)):
        name = activation_name(layer)
        # A ReLU with other bounds runs as several TFLite ops: unsupported.
        return "activation" if name in SUPPORTED_ACTIVATIONS else None
    if isinstance(layer, _PASSTHROUGH):
        return "passthrough"
    if isinstance(layer, _OUTPUT_ONLY):
        return "output"
    return None


def is_supported(layer):
    """Whether the default scheme can quantize `layer`."""
    return kind(layer) is not None


def default_config(
    layer, per_channel=True, activation_bits=8, quantize_output=True
):
    """The default `QuantizeConfig` for `layer`, or None if none is needed.

    Args:
        layer: a built Keras layer.
        per_channel: per-channel weights for convolutions. Defaults to
            `True`.
        activation_bits: 8 or 16. Defaults to `8`.
        quantize_output: fake-quantize the output. Defaults to `True`.

    Returns:
        A `DefaultQuantizeConfig`, or None for a passthrough layer.
    """
    layer_kind = kind(layer)
    if layer_kind in ("passthrough", "model", None):
        return None
    if layer_kind == "conv":
        axes = [conv_weight_axis(layer) if per_channel else None]
        return DefaultQuantizeConfig(
            ["kernel"], axes, quantize_output, activation_bits
        )
    if layer_kind in ("dense", "transposed_conv"):
        # TFLite FullyConnected int8 is per-tensor only; the converter
        # rejects a per-channel transposed-convolution kernel (it
        # transposes the kernel).
        return DefaultQuantizeConfig(
            ["kernel"], [None], quantize_output, activation_bits
        )
    return DefaultQuantizeConfig([], [], quantize_output, activation_bits)
