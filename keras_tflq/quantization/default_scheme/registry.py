"""The default scheme's table: how each layer class is quantized.

One row per layer class (or Keras op, by class name) says its `Kind`,
which weights are quantized, how its own activation is handled and which
TFLite fusions it takes part in. The plan (`plan.py`) and the rewrite
(`rewrite.py`) read only this table; supporting a new layer is one row
here plus, for a new `Kind`, its replacement in `rewrite.py`.
"""

import dataclasses
import enum
import sys

import keras

from keras_tflq.quantization.default_scheme import multi_head_attention
from keras_tflq.quantization.default_scheme.attention_configs import (
    EmbeddingQuantizeConfig,
)
from keras_tflq.quantization.default_scheme.default_quantize_config import (
    DefaultQuantizeConfig,
)
from keras_tflq.quantization.default_scheme.sequence_configs import (
    RecurrentQuantizeConfig,
)
from keras_tflq.quantization.default_scheme.sequence_configs import (
    recurrent_layers_of,
)
from keras_tflq.quantization.default_scheme.time_distributed_config import (
    TimeDistributedQuantizeConfig,
)

L = keras.layers


class Kind(enum.Enum):
    """How the default scheme treats a layer."""

    CONV = "conv"  # kernel per channel; a BatchNormalization folds in
    TRANSPOSED_CONV = "transposed_conv"  # kernel per tensor
    DENSE = "dense"  # kernel per tensor (TFLite FullyConnected int8)
    SEPARABLE = "separable"  # split into depthwise and pointwise convs
    BATCH_NORM = "batch_norm"  # folded, or run as a 1x1 depthwise conv
    AFFINE = "affine"  # per-channel affine, run as a 1x1 depthwise conv
    ACTIVATION = "activation"  # an activation as its own op
    PASSTHROUGH = "passthrough"  # moves values: no range of its own
    OUTPUT = "output"  # no weights, an output range of its own
    OP = "op"  # an arithmetic Keras op used on symbolic tensors
    ATTENTION = "attention"  # projections, two matmuls, softmax
    LAYER_NORM = "layer_norm"  # TFLite's MEAN/SUB/MUL/RSQRT ops
    FIXED_RANGE_OP = "fixed_range_op"  # an op with TFLite's fixed range
    MODEL = "model"  # a nested model, quantized on its own
    RECURRENT = "recurrent"  # kernels, fixed-range gates, output range
    EMBEDDING = "embedding"  # int8 table; GATHER keeps its scale
    TIME_DISTRIBUTED = "time_distributed"  # the inner layer's own row


class Merge(enum.Enum):
    """How a merge layer of more than two inputs runs in TFLite."""

    CHAIN = "chain"  # as n - 1 two-input ops, each with its range
    MEAN = "mean"  # as n - 1 ADDs, then a MUL by 1 / n
    CONCATENATE = "concatenate"  # one op; its inputs share its range


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """One row of the table.

    Args:
        match: the layer class (subclasses match too), or the class name
            of a Keras op.
        kind: the layer's `Kind`.
        weight_attrs: names of the attributes holding the weights to
            quantize. Defaults to `()`.
        per_channel: whether those weights may be quantized per channel.
            Defaults to `False`.
        split_activation: whether an activation TFLite does not fuse is
            split off the layer into its own op. Defaults to `False`.
        fuses_relu: whether TFLite fuses a following ReLU/ReLU6 into the
            layer's op (no range in between). Defaults to `False`.
        merge: the `Merge` of a merge layer, or None. Defaults to `None`.
    """

    match: object
    kind: Kind
    weight_attrs: tuple = ()
    per_channel: bool = False
    split_activation: bool = False
    fuses_relu: bool = False
    merge: Merge = None


def _conv(match):
    return LayerInfo(
        match,
        Kind.CONV,
        ("kernel",),
        per_channel=True,
        split_activation=True,
        fuses_relu=True,
    )


def _dense(match):
    return LayerInfo(
        match,
        Kind.DENSE,
        ("kernel",),
        split_activation=True,
        fuses_relu=True,
    )


def _rows(kind, matches):
    return tuple(LayerInfo(match, kind) for match in matches)


_RECURRENT_WEIGHTS = ("cell.kernel", "cell.recurrent_kernel")

# TFLite FullyConnected int8 is per-tensor only; the converter rejects a
# per-channel transposed-convolution kernel (it transposes the kernel).
# Layers TFLite runs as several ops get a layer of their own computing
# those ops (MultiHeadAttention, LayerNormalization); layers TFLite has no
# int8 kernel for, such as ELU, are not listed: they would leave float ops.
# So are Conv3D (TFLite's CONV_3D is float only) and MaxPooling3D and
# AveragePooling3D (no TFLite builtin: the converter refuses them).
TABLE = (
    _conv(L.Conv1D),
    _conv(L.Conv2D),
    _conv(L.DepthwiseConv1D),
    _conv(L.DepthwiseConv2D),
    LayerInfo(
        L.Conv2DTranspose,
        Kind.TRANSPOSED_CONV,
        ("kernel",),
        split_activation=True,
    ),
    _dense(L.Dense),
    LayerInfo(L.SeparableConv2D, Kind.SEPARABLE),
    LayerInfo(L.BatchNormalization, Kind.BATCH_NORM),
    LayerInfo(L.Rescaling, Kind.AFFINE),
    LayerInfo(L.Normalization, Kind.AFFINE),
    LayerInfo(L.ReLU, Kind.ACTIVATION),
    LayerInfo(L.Activation, Kind.ACTIVATION),
    LayerInfo(L.Softmax, Kind.ACTIVATION),
    LayerInfo(L.Add, Kind.OUTPUT, fuses_relu=True, merge=Merge.CHAIN),
    LayerInfo(L.Subtract, Kind.OUTPUT, fuses_relu=True),
    LayerInfo(L.Multiply, Kind.OUTPUT, fuses_relu=True, merge=Merge.CHAIN),
    LayerInfo(L.Maximum, Kind.OUTPUT, merge=Merge.CHAIN),
    LayerInfo(L.Minimum, Kind.OUTPUT, merge=Merge.CHAIN),
    LayerInfo(L.Average, Kind.OUTPUT, merge=Merge.MEAN),
    LayerInfo(L.Concatenate, Kind.OUTPUT, merge=Merge.CONCATENATE),
    *_rows(
        Kind.OUTPUT,
        (
            L.GlobalAveragePooling1D,
            L.GlobalAveragePooling2D,
            L.GlobalAveragePooling3D,
            L.LeakyReLU,
            L.PReLU,
        ),
    ),
    # TFLite requires (or propagates) equal input and output quantization
    # for these: no quantizer of their own.
    *_rows(
        Kind.PASSTHROUGH,
        (
            L.InputLayer,
            L.Reshape,
            L.Flatten,
            L.Dropout,
            L.SpatialDropout1D,
            L.SpatialDropout2D,
            L.SpatialDropout3D,
            L.GaussianNoise,
            L.GaussianDropout,
            L.AlphaDropout,
            L.ActivityRegularization,
            L.ZeroPadding1D,
            L.ZeroPadding2D,
            L.ZeroPadding3D,
            L.Cropping1D,
            L.Cropping2D,
            L.Cropping3D,
            L.MaxPooling1D,
            L.MaxPooling2D,
            L.GlobalMaxPooling1D,
            L.GlobalMaxPooling2D,
            L.GlobalMaxPooling3D,
            L.Permute,
            L.Identity,
            L.AveragePooling1D,
            L.AveragePooling2D,
            L.UpSampling1D,
            L.UpSampling2D,
            L.UpSampling3D,
        ),
    ),
    # Recurrent layers (the kernels live on the cell) and embeddings:
    # sequence_configs.py and attention_configs.py hold their configs.
    LayerInfo(L.LSTM, Kind.RECURRENT, _RECURRENT_WEIGHTS),
    LayerInfo(L.GRU, Kind.RECURRENT, _RECURRENT_WEIGHTS),
    LayerInfo(L.SimpleRNN, Kind.RECURRENT, _RECURRENT_WEIGHTS),
    LayerInfo(L.Bidirectional, Kind.RECURRENT, _RECURRENT_WEIGHTS),
    LayerInfo(L.TimeDistributed, Kind.TIME_DISTRIBUTED),
    LayerInfo(L.Embedding, Kind.EMBEDDING, ("embeddings",)),
    # Keras ops used on symbolic tensors (`x + 3.0`), by class name.
    LayerInfo("Add", Kind.OP, fuses_relu=True),
    LayerInfo("Subtract", Kind.OP, fuses_relu=True),
    LayerInfo("Multiply", Kind.OP, fuses_relu=True),
    *_rows(Kind.OP, ("Divide", "TrueDivide")),
    *_rows(
        Kind.PASSTHROUGH,
        ("Reshape", "Transpose", "ExpandDims", "Squeeze", "GetItem"),
    ),
    # Attention models: a block of its own.
    _dense(L.EinsumDense),
    LayerInfo(L.MultiHeadAttention, Kind.ATTENTION),
    LayerInfo(L.LayerNormalization, Kind.LAYER_NORM),
    LayerInfo("Matmul", Kind.OP),
    LayerInfo("Softmax", Kind.FIXED_RANGE_OP),
)
_LAYER_ROWS = {row.match: row for row in TABLE if isinstance(row.match, type)}
_OP_ROWS = {row.match: row for row in TABLE if isinstance(row.match, str)}
_MODEL_ROW = LayerInfo(keras.Model, Kind.MODEL)

# Activations TFLite fuses into the op before them (no range in between).
FUSABLE_ACTIVATIONS = ("relu", "relu6")
# Activations a layer with weights keeps: TFLite runs them in the op.
KEPT_ACTIVATIONS = ("linear",) + FUSABLE_ACTIVATIONS
# Activations TFLite runs with a fixed output range.
FIXED_RANGE_ACTIVATIONS = ("sigmoid", "softmax", "tanh")
# Activations the default scheme supports as standalone TFLite ops.
SUPPORTED_ACTIVATIONS = KEPT_ACTIVATIONS + FIXED_RANGE_ACTIVATIONS + (
    "silu",
    "swish",
    "hard_silu",
    "hard_swish",
    "hard_sigmoid",
    "leaky_relu",
    "gelu",
)
# Activations TFLite runs in int8 only: no int16 kernel for 16x8 models
# (the converter: "'tfl.gelu' op operand #0 must be tensor of 32-bit
# float or QI8 type or QUI8 type values").
INT8_ONLY_ACTIVATIONS = ("gelu",)
# Depthwise convolutions: (..., in, multiplier) kernels.
DEPTHWISE_CONVS = (L.DepthwiseConv1D, L.DepthwiseConv2D)


def classes_of(*kinds):
    """The layer classes of the table's rows of `kinds`, in table order."""
    return tuple(cls for cls, row in _LAYER_ROWS.items() if row.kind in kinds)


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


def info(layer):
    """The table row for `layer` (a layer or a Keras op), or None when the
    default scheme does not support it."""
    if not isinstance(layer, L.Layer):
        return _OP_ROWS.get(type(layer).__name__)
    if isinstance(layer, keras.Model):
        return _MODEL_ROW
    if (
        getattr(layer, "activation", None) is not None
        and not isinstance(layer, L.Activation)
        and activation_name(layer) not in SUPPORTED_ACTIVATIONS
    ):
        return None  # an activation TFLite has no int8 kernel for
    row = next(
        (_LAYER_ROWS[c] for c in type(layer).__mro__ if c in _LAYER_ROWS),
        None,
    )
    if (
        row is not None
        and row.kind is Kind.ACTIVATION
        and activation_name(layer) not in SUPPORTED_ACTIVATIONS
    ):
        return None  # a ReLU with other bounds runs as several TFLite ops
    if row is not None and row.kind is Kind.RECURRENT:
        return row if _supported_recurrent(layer) else None
    if row is not None and row.kind is Kind.TIME_DISTRIBUTED:
        return row if _supported_time_distributed(layer) else None
    if row is not None and row.kind is Kind.LAYER_NORM and (
        layer.rms_scaling or layer.axis not in (-1, [-1], (-1,))
    ):
        return None  # the scheme's ops normalize over the last axis only
    if (
        row is not None
        and row.kind is Kind.ATTENTION
        and multi_head_attention.unsupported_form(layer) is not None
    ):
        return None  # other attention axes, gating, a sliding window
    return row


def _supported_recurrent(layer):
    """A recurrent layer (or Bidirectional of one) whose activations
    TFLite runs in int8."""
    found = recurrent_layers_of(layer)
    if found is None:
        return False
    for _, rnn in found:
        for attribute in ("activation", "recurrent_activation"):
            function = getattr(rnn.cell, attribute, None)
            if function is None:
                continue
            name = keras.activations.serialize(function)
            if name not in SUPPORTED_ACTIVATIONS:
                return False
    return True


def _supported_time_distributed(layer):
    """A TimeDistributed around a layer with weights that runs as one
    op (no activation split off)."""
    row = info(layer.layer)
    if row is None:
        return False
    if row.kind is Kind.RECURRENT:
        return True
    return (
        row.kind in (Kind.CONV, Kind.DENSE)
        and activation_name(layer.layer) in (None,) + KEPT_ACTIVATIONS
    )


def kind(layer):
    """The `Kind` of `layer` in the default scheme, or None (unsupported)."""
    row = info(layer)
    return None if row is None else row.kind


def is_supported(layer):
    """Whether the default scheme can quantize `layer`."""
    return info(layer) is not None


def conv_weight_axis(conv):
    """The per-channel axis of `conv`'s kernel in TFLite's int8 spec.

    None (per-tensor) for 1-D convolutions: they run as 2-D ones on an
    expanded kernel, and the converter rejects the moved channel axis.
    """
    if len(conv.kernel_size) != 2:
        return None
    if isinstance(conv, DEPTHWISE_CONVS):
        # Channels of a depthwise kernel (..., in, multiplier) are in*mult;
        # one axis holds them all only when the multiplier is 1.
        return len(conv.kernel_size) if conv.depth_multiplier == 1 else None
    return len(conv.kernel_size) + 1


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
    row = info(layer)
    if row is None or row.kind in (Kind.PASSTHROUGH, Kind.MODEL):
        return None
    if row.kind is Kind.RECURRENT:
        return RecurrentQuantizeConfig(
            activation_bits=activation_bits, quantize_output=quantize_output
        )
    if row.kind is Kind.EMBEDDING:
        return EmbeddingQuantizeConfig(activation_bits=activation_bits)
    if row.kind is Kind.TIME_DISTRIBUTED:
        return TimeDistributedQuantizeConfig(
            default_config(
                layer.layer, per_channel, activation_bits, quantize_output
            )
        )
    axes = [
        conv_weight_axis(layer) if per_channel and row.per_channel else None
        for _ in row.weight_attrs
    ]
    return DefaultQuantizeConfig(
        list(row.weight_attrs), axes, quantize_output, activation_bits
    )


# The docs' layer table (docs/quantization.md), generated from `TABLE`.
_KIND_TEXT = {
    Kind.CONV: (
        "int8 symmetric kernel, per channel (per tensor with "
        "`per_channel=False`, for 1-D convolutions and for depth multipliers "
        "above 1); a `BatchNormalization` after it is folded in; a "
        "ReLU/ReLU6 after it (layer or `activation=`) is fused; another "
        "supported `activation=` is split off as its own op with its own "
        "range"
    ),
    Kind.TRANSPOSED_CONV: (
        "int8 symmetric kernel, per tensor (the converter rejects per "
        "channel); another supported `activation=` is split off"
    ),
    Kind.DENSE: (
        "int8 symmetric kernel, per tensor (TFLite FullyConnected); "
        "ReLU/ReLU6 fused; another supported `activation=` is split off"
    ),
    Kind.SEPARABLE: (
        "split into the depthwise and 1x1 convolutions TFLite runs, each "
        "quantized as a convolution"
    ),
    Kind.BATCH_NORM: (
        "folded into the convolution before it; elsewhere one int8 "
        "per-channel op (a 1x1 depthwise convolution)"
    ),
    Kind.AFFINE: "one int8 per-channel op (a 1x1 depthwise convolution)",
    Kind.ACTIVATION: (
        "output range, fused with the op before for ReLU/ReLU6; "
        "`sigmoid`, `tanh`, `softmax`: TFLite's fixed output range (with "
        "`activation_bits=16`, `sigmoid` and `tanh` outputs fake-quantized "
        "on its int16 grid, scale 1/32768, zero point 0); "
        "`hard_sigmoid` as `relu6(x + 3) / 6`"
    ),
    Kind.OUTPUT: "output range",
    Kind.RECURRENT: (
        "int8 symmetric kernel and recurrent kernel, per tensor (per gate "
        "in the fused int8 LSTM, which holds each gate's weights apart); the "
        "`sigmoid`/`tanh` gates with TFLite's fixed ranges (int8 where the "
        "export unrolls the layer, int16 in the fused int8 LSTM); a learned "
        "output range (none for a `SimpleRNN` with `tanh`); a "
        "`Bidirectional` quantizes both directions. Other gate activations: "
        "those supported below"
    ),
    Kind.TIME_DISTRIBUTED: (
        "the wrapped `Dense`, convolution or recurrent layer quantized by "
        "its own row (no activation split off: `linear`, `relu`, `relu6`)"
    ),
    Kind.EMBEDDING: (
        "int8 symmetric table, per tensor (int16 with "
        "`activation_bits=16`, as TFLite's 16x8 `GATHER` stores it); no "
        "output range (TFLite's `GATHER` keeps the table's scale)"
    ),
    Kind.PASSTHROUGH: (
        "no quantizer: TFLite keeps the input's range (range passthrough)"
    ),
    Kind.OP: (
        "output range when the whole model is quantized (`quantize_model`, "
        "`quantize_annotate_model`)"
    ),
    Kind.ATTENTION: (
        "the ops TFLite runs: query/key/value/output projections with int8 "
        "symmetric per-tensor kernels and output ranges (the query scaled "
        "by 1/sqrt(key_dim) in its kernel), a range on the scores and the "
        "context (both operands of both matmuls have ranges), the softmax "
        "output on TFLite's fixed grid (1/256, zero point -128); 3-D "
        "inputs, no masks"
    ),
    Kind.LAYER_NORM: (
        "the ops TFLite runs (MEAN, SUB, MUL, MEAN, RSQRT, MUL), a range on "
        "each output; `+ epsilon`, `* gamma` and `+ beta` as ADD, MUL and "
        "ADD of a constant (gamma and beta per tensor, PTQ's ops) with 8-bit "
        "activations, as 1x1 depthwise convolutions (per-channel kernel, "
        "addend in the bias) with 16-bit ones; last axis only"
    ),
    Kind.FIXED_RANGE_OP: (
        "TFLite's fixed output range (int8: scale 1/256, zero point -128; "
        "int16: 1/32768, 0) when the whole model is quantized"
    ),
}
_MERGE_TEXT = {
    Merge.CHAIN: (
        "; more than two inputs run as a chain of two-input ops, each with "
        "a range"
    ),
    Merge.MEAN: ": a chain of two-input adds, then a multiply by 1/n, each "
    "with a range",
    Merge.CONCATENATE: ", shared by its inputs",
}


def _describe(row):
    text = _KIND_TEXT[row.kind]
    if row.merge is not None:
        text += _MERGE_TEXT[row.merge]
    if row.fuses_relu and row.kind in (Kind.OUTPUT, Kind.OP):
        text += "; a ReLU/ReLU6 after it is fused"
    return text


def _name(row):
    if isinstance(row.match, type):
        return f"`{row.match.__name__}`"
    return f"`{row.match}` op"


def markdown_table():
    """The default scheme's layer table as markdown: the classes of each
    row of `TABLE` (Keras ops on symbolic tensors by class name), grouped
    by what `quantize_apply` does with them, in table order."""
    groups = {}
    for row in TABLE:
        groups.setdefault(_describe(row), []).append(_name(row))
    activations = ", ".join(f"`{name}`" for name in SUPPORTED_ACTIVATIONS)
    lines = [
        "| layer | what `quantize_apply` does |",
        "| --- | --- |",
        *(f"| {', '.join(names)} | {text} |" for text, names in groups.items()),
        "| any other layer or op, a `ReLU` with other bounds, an activation "
        "not listed below | refused with `ValueError` naming the layer; "
        '`unsupported="float"` keeps it float |',
        "",
        "An `… op` is a Keras op called on symbolic tensors (`x + 3.0`, "
        "`keras.ops.reshape`). Supported activations (`activation=` or "
        f"`Activation`): {activations}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv):
    """`python keras_tflq/quantization/default_scheme/registry.py
    --markdown` (or `python -m` with the module) prints `markdown_table()`
    (docs/quantization.md holds it)."""
    if list(argv) != ["--markdown"]:
        raise SystemExit(
            "usage: python -m keras_tflq.quantization.default_scheme.registry "
            "--markdown"
        )
    sys.stdout.write(markdown_table())


if __name__ == "__main__":
    main(sys.argv[1:])
