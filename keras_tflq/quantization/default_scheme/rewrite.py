"""The default scheme's rewrite: a quantized model built from the plan.

`Rewriter` replaces each operation of a Functional graph by what its
`plan.Step` asks for: one method per action, and for `Action.DEFAULT`
one method per `registry.Kind` (`KIND_REPLACEMENTS`). Each method returns
the callable that replaces the operation in the rebuilt graph.
"""

import keras
from keras import ops

from keras_tflq.quantization import graph as keras_graph
from keras_tflq.quantization import in_place
from keras_tflq.quantization.default_scheme import registry
from keras_tflq.quantization.default_scheme.channel_affine import (
    QuantizeChannelAffine,
)
from keras_tflq.quantization.default_scheme.conv_batchnorm_fold import (
    ConvBatchNormFold,
)
from keras_tflq.quantization.default_scheme.default_quantize_config import (
    DefaultQuantizeConfig,
)
from keras_tflq.quantization.default_scheme.layer_normalization import (
    QuantizeLayerNormalization,
)
from keras_tflq.quantization.default_scheme.multi_head_attention import (
    QuantizeMultiHeadAttention,
)
from keras_tflq.quantization.default_scheme.plan import Action
from keras_tflq.quantization.default_scheme.plan import plan
from keras_tflq.quantization.default_scheme.registry import Kind
from keras_tflq.quantization.default_scheme.registry import Merge
from keras_tflq.quantization.default_scheme.softmax_output import (
    SoftmaxOutputQuantizer,
)
from keras_tflq.quantization.quantize_annotate import QuantizeAnnotate
from keras_tflq.quantization.quantize_annotate import annotations_in
from keras_tflq.quantization.quantize_wrapper import QuantizeWrapper


def copy_layer(layer, pending, **overrides):
    """A new, unbuilt layer like `layer`; its weights are copied later
    (by the callables appended to `pending`).

    A Keras op used on symbolic tensors (not a layer) holds no state and
    is reused as is.
    """
    if not isinstance(layer, keras.layers.Layer):
        return layer
    config = {**layer.get_config(), **overrides}
    new = type(layer).from_config(config)
    pending.append(lambda: new.set_weights(layer.get_weights()))
    return new


def float_layer(layer, pending):
    """`layer`, left in float in the new model.

    A layer without weights (a `Lambda`, `Reshape`, `Dropout`, ...) is
    reused as it is: it holds nothing the two models could disagree on,
    and its config is never rebuilt (a `Lambda` wrapping a Python lambda
    cannot be, in Keras' safe mode). A layer with weights is copied, so
    training the new model leaves the old one unchanged.
    """
    if not isinstance(layer, keras.layers.Layer) or not layer.weights:
        return layer
    return copy_layer(layer, pending)


def _chain(*callables):
    """`callables[-1](...(callables[0](*args, **kwargs)))`."""

    def call(*args, **kwargs):
        outputs = callables[0](*args, **kwargs)
        for function in callables[1:]:
            outputs = function(outputs)
        return outputs

    return call


def _on_rows(replacement):
    """`replacement` of a Dense layer, run on 2-D rows for inputs of higher
    rank with static inner dimensions.

    A Dense layer on (batch, steps, features) traces to a reshape, a
    matmul, a reshape back and the bias add; with a dynamic batch the
    reshapes keep the converter from fusing the bias into its
    `FULLY_CONNECTED`, whose output then has no range and stays float.
    On rows, the `FULLY_CONNECTED` takes the bias and the output range,
    and the reshapes around it (to `(-1, features)` and back) keep their
    input's range.
    """

    def call(inputs, *args, **kwargs):
        inner = tuple(inputs.shape[1:-1])
        if not inner or None in inner or inputs.shape[-1] is None:
            return replacement(inputs, *args, **kwargs)
        rows = ops.reshape(inputs, (-1, inputs.shape[-1]))
        outputs = replacement(rows, *args, **kwargs)
        return ops.reshape(outputs, (-1, *inner, outputs.shape[-1]))

    return call


class Rewriter:
    """Builds the quantized replacement of each operation of a graph.

    Args:
        per_channel: per-channel weights for convolutions.
        activation_bits: 8 or 16.
        unsupported: `"error"` or `"float"` (for nested models).
    """

    # The method building an `Action.DEFAULT` step of each kind
    # (`Kind.PASSTHROUGH` layers stay float; `Kind.MODEL` is an action).
    KIND_REPLACEMENTS = {
        Kind.CONV: "weighted",
        Kind.TRANSPOSED_CONV: "weighted",
        Kind.DENSE: "weighted",
        Kind.SEPARABLE: "separable",
        Kind.BATCH_NORM: "wrapped",
        Kind.AFFINE: "wrapped",
        Kind.ACTIVATION: "activation",
        Kind.OUTPUT: "output",
        Kind.OP: "quantized_op",
        Kind.RECURRENT: "wrapped",
        Kind.EMBEDDING: "wrapped",
        Kind.TIME_DISTRIBUTED: "wrapped",
        Kind.ATTENTION: "attention",
        Kind.LAYER_NORM: "layer_normalization",
        Kind.FIXED_RANGE_OP: "fixed_range_op",
    }

    def __init__(self, per_channel, activation_bits, unsupported):
        self.per_channel = per_channel
        self.activation_bits = activation_bits
        self.unsupported = unsupported
        # Weight copies, run once the new model is built.
        self.pending = []

    def copy(self, layer, **overrides):
        return copy_layer(layer, self.pending, **overrides)

    def wrap(self, layer, quantize_output):
        """`layer` in a `QuantizeWrapper` with its default config."""
        config = registry.default_config(
            layer, self.per_channel, self.activation_bits, quantize_output
        )
        return QuantizeWrapper(layer, config)

    def output_quantizer(self, name=None):
        """A layer fake-quantizing its input as an activation (named
        after `name` if given)."""
        config = DefaultQuantizeConfig(activation_bits=self.activation_bits)
        if name is None:
            return QuantizeWrapper(keras.layers.Identity(), config)
        return QuantizeWrapper(
            keras.layers.Identity(name=f"{name}_identity"),
            config,
            name=f"quantize_{name}",
        )

    # Actions.

    def replacement(self, step):
        """The callable replacing the operation of `step`."""
        if step.action == Action.FLOAT:
            return float_layer(step.layer, self.pending)
        if step.action == Action.SKIP:
            return lambda x, *args, **kwargs: x
        if step.action == Action.MODEL:
            return self.nested_model(step.layer)
        if step.action == Action.USER:
            return QuantizeWrapper(self.copy(step.layer), step.config)
        if step.action == Action.FOLD:
            return ConvBatchNormFold(
                self.copy(step.layer),
                self.copy(step.batch_norm),
                per_channel=self.per_channel,
                quantize_output=step.quantize_output,
                activation_bits=self.activation_bits,
            )
        if step.action == Action.AFFINE:
            return QuantizeChannelAffine(
                self.copy(step.layer),
                activation_bits=self.activation_bits,
                quantize_output=step.quantize_output,
            )
        activation = registry.activation_name(step.layer)
        if (
            self.activation_bits == 16
            and activation in registry.INT8_ONLY_ACTIVATIONS
        ):
            raise ValueError(
                "Expected activations TFLite runs in 16 bits with "
                f"`activation_bits=16`: its {activation.upper()} op has an "
                "int8 kernel only, so a 16x8 export would fail. Received: "
                f"layer={step.layer.name!r} with activation={activation!r}. "
                "Use `activation_bits=8`, or an activation with an int16 "
                "kernel (relu, tanh, sigmoid, ...)."
            )
        method = getattr(self, self.KIND_REPLACEMENTS[step.kind])
        replacement = method(step.layer, step.quantize_output, step.info)
        if (
            isinstance(step.layer, keras.layers.Dense)
            and step.quantize_output
            and self.activation_bits == 8
        ):
            # Not before a ReLU TFLite fuses into the op (no reshape may
            # stand between them), nor in 16x8 models: the converter folds
            # the reshape back into a broadcasting ADD after it, which its
            # int16 ADD rejects.
            return _on_rows(replacement)
        return replacement

    def nested_model(self, model):
        """A nested model quantized on its own (a subclassed one in
        place); its inputs are quantized by the model around it."""
        if keras_graph.is_subclassed(model):
            in_place.activate_model(
                model,
                annotations_in(model),
                self.per_channel,
                self.activation_bits,
                self.unsupported,
                nested=True,
            )
            return model
        return apply(
            model,
            self.per_channel,
            self.activation_bits,
            self.unsupported,
            quantize_inputs=False,
        )

    # Action.DEFAULT, by kind.

    def wrapped(self, layer, quantize_output, info=None):
        """A quantized copy of `layer`, as one op."""
        return self.wrap(self.copy(layer), quantize_output)

    def weighted(self, layer, quantize_output, info):
        """A quantized copy of a layer with weights; an activation TFLite
        does not fuse is split off into its own op (it needs the range
        of its input)."""
        activation = registry.activation_name(layer)
        if (
            not info.split_activation
            or activation in registry.KEPT_ACTIVATIONS
        ):
            return self.wrapped(layer, quantize_output)
        linear = self.wrap(self.copy(layer, activation="linear"), True)
        act = self.activation(
            keras.layers.Activation(
                layer.activation, name=f"{layer.name}_activation"
            ),
            quantize_output
            and activation not in registry.FIXED_RANGE_ACTIVATIONS,
        )
        return _chain(linear, act)

    def separable(self, layer, quantize_output, info=None):
        """SeparableConv2D as the depthwise and pointwise ops TFLite runs."""
        config = layer.get_config()
        depthwise = keras.layers.DepthwiseConv2D(
            kernel_size=config["kernel_size"],
            strides=config["strides"],
            padding=config["padding"],
            data_format=config["data_format"],
            dilation_rate=config["dilation_rate"],
            depth_multiplier=config["depth_multiplier"],
            use_bias=False,
            name=f"{layer.name}_depthwise",
        )
        pointwise = keras.layers.Conv2D(
            config["filters"],
            1,
            data_format=config["data_format"],
            activation=config["activation"],
            use_bias=config["use_bias"],
            name=f"{layer.name}_pointwise",
        )

        def copy():
            depthwise.set_weights([layer.depthwise_kernel.numpy()])
            pointwise.set_weights(
                [layer.pointwise_kernel.numpy()]
                + ([layer.bias.numpy()] if layer.use_bias else [])
            )

        first = self.wrap(depthwise, True)
        second = self.wrap(pointwise, quantize_output)
        self.pending.append(copy)
        return _chain(first, second)

    def quantized_op(self, op, quantize_output, info=None):
        """A Keras op (or any callable), its output quantized if asked."""
        if not quantize_output:
            return op
        return _chain(op, self.output_quantizer())

    def attention(self, layer, quantize_output, info=None):
        """A MultiHeadAttention as the int8 ops TFLite runs it with."""
        return QuantizeMultiHeadAttention(
            self.copy(layer),
            quantize_output=quantize_output,
            activation_bits=self.activation_bits,
        )

    def layer_normalization(self, layer, quantize_output, info=None):
        """A LayerNormalization as the int8 ops TFLite runs it with."""
        return QuantizeLayerNormalization(
            self.copy(layer),
            quantize_output=quantize_output,
            activation_bits=self.activation_bits,
        )

    def fixed_range_op(self, op, quantize_output, info=None):
        """A softmax op, its output on TFLite's fixed grid."""
        return _chain(op, SoftmaxOutputQuantizer(self.activation_bits))

    def activation(self, layer, quantize_output, info=None):
        """An activation layer; hard_sigmoid as `relu6(x + 3) / 6`, the
        ADD+RELU6 and MUL TFLite runs."""
        if registry.activation_name(layer) != "hard_sigmoid":
            return self.wrapped(layer, quantize_output)
        relu6 = self.wrap(
            keras.layers.ReLU(6.0, name=f"{layer.name}_relu6"), True
        )
        scale = self.quantized_op(lambda x: x * (1.0 / 6.0), quantize_output)
        return lambda x, *args, **kwargs: scale(relu6(x + 3.0))

    def output(self, layer, quantize_output, info):
        """A weightless layer with an output range; a merge TFLite runs as
        a chain of two-input ops gets a range per op."""
        if info.merge in (Merge.CHAIN, Merge.MEAN):
            return self.merge(layer, quantize_output, info.merge)
        return self.wrapped(layer, quantize_output)

    def merge(self, layer, quantize_output, merge):
        """A merge of n inputs as n - 1 two-input TFLite ops, each with
        its range (then a MUL by 1 / n, for `Merge.MEAN`)."""
        mean = merge is Merge.MEAN
        merge_class = keras.layers.Add if mean else type(layer)

        def call(inputs, *args, **kwargs):
            if len(inputs) <= 2 and not mean:
                copy = self.wrapped(layer, quantize_output)
                return copy(inputs, *args, **kwargs)
            outputs = inputs[0]
            for index, other in enumerate(inputs[1:], start=1):
                last = index == len(inputs) - 1
                pair = self.wrap(
                    merge_class(name=f"{layer.name}_{index}"),
                    quantize_output or not last or mean,
                )
                outputs = pair([outputs, other])
            if mean:
                outputs = self.quantized_op(
                    lambda x: x * (1.0 / len(inputs)), quantize_output
                )(outputs)
            return outputs

        return call


def fully_annotated(graph):
    """Whether every layer of the graph is annotated, range-free or a model
    (then Keras ops on symbolic tensors are quantized too)."""
    for node in graph.nodes:
        layer = node.operation
        if isinstance(layer, keras.layers.Layer) and not (
            isinstance(layer, (QuantizeAnnotate, keras.Model))
            or registry.kind(layer) is Kind.PASSTHROUGH
        ):
            return False
    return True


def apply(model, per_channel, activation_bits, unsupported, quantize_inputs):
    """`quantize_apply` on a Functional or Sequential model.

    Args:
        model: the annotated model.
        per_channel: per-channel weights for convolutions.
        activation_bits: 8 or 16.
        unsupported: `"error"` or `"float"`.
        quantize_inputs: quantize the model's float inputs (the outermost
            model only).

    Returns:
        A new model, with the float weights carried over.
    """
    graph = keras_graph.Graph(keras_graph.functional_model(model))
    steps = plan(graph, unsupported, fully_annotated(graph))
    rewriter = Rewriter(per_channel, activation_bits, unsupported)
    replaced = {}

    def operation_fn(operation):
        if id(operation) not in replaced:
            replaced[id(operation)] = rewriter.replacement(
                steps[id(operation)]
            )
        return replaced[id(operation)]

    input_fn = None
    quantized = any(
        step.action not in (Action.FLOAT, Action.SKIP)
        for step in steps.values()
    )
    if quantize_inputs and quantized:

        def input_fn(tensor):
            if "float" not in str(tensor.dtype):
                return tensor
            name = keras_graph.tensor_source_name(tensor)
            return rewriter.output_quantizer(name)(tensor)

    new_model = graph.rebuild(operation_fn, input_fn)
    for copy in rewriter.pending:
        copy()
    return new_model
