"""Annotate layers for quantization, and apply it: the QAT entry points."""

import collections

import keras

from keras_tflq.legacy import tfmot_qat
from keras_tflq.legacy.tf_keras_models import is_tf_keras_model
from keras_tflq.quantization.default_scheme import registry
from keras_tflq.quantization.default_scheme.channel_affine import (
    QuantizeChannelAffine,
)
from keras_tflq.quantization.default_scheme.channel_affine import (
    is_channel_affine,
)
from keras_tflq.quantization.default_scheme.conv_batchnorm_fold import (
    ConvBatchNormFold,
)
from keras_tflq.quantization.default_scheme.conv_batchnorm_fold import can_fold
from keras_tflq.quantization.default_scheme.default_quantize_config import (
    DefaultQuantizeConfig,
)
from keras_tflq.quantization.default_scheme.default_quantize_config import (
    check_activation_bits,
)
from keras_tflq.quantization.quantize_annotate import QuantizeAnnotate
from keras_tflq.quantization.quantize_config import QuantizeConfig
from keras_tflq.quantization.quantize_wrapper import QuantizeWrapper

_UNSUPPORTED_CHOICES = ("error", "float")
# Ops TFLite fuses a following ReLU/ReLU6 into.
_FUSING_KINDS = ("conv", "dense")
_FUSING_MERGES = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
)
_FUSING_OPS = ("Add", "Subtract", "Multiply")
# Merges TFLite runs as a chain of two-input ops when given more inputs.
_PAIRWISE_MERGES = (
    keras.layers.Add,
    keras.layers.Multiply,
    keras.layers.Maximum,
    keras.layers.Minimum,
)
_QUANTIZED_LAYERS = (QuantizeWrapper, ConvBatchNormFold, QuantizeChannelAffine)


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
    if not isinstance(per_channel, bool):
        raise ValueError(
            "Expected `per_channel` to be a bool. "
            f"Received: per_channel={per_channel!r}"
        )
    check_activation_bits(activation_bits)
    if unsupported not in _UNSUPPORTED_CHOICES:
        raise ValueError(
            f"Expected `unsupported` to be one of {_UNSUPPORTED_CHOICES}. "
            f"Received: unsupported={unsupported!r}"
        )


def _is_subclassed(model):
    """Whether `model` is a subclassed model (no graph to rebuild)."""
    return (
        isinstance(model, keras.Model)
        and not isinstance(model, keras.Sequential)
        and not hasattr(model, "_nodes_by_depth")
    )


def _graph_model(model, argument="model"):
    """The Functional model whose graph `model` runs, checked."""
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"Expected `{argument}` to be a keras.Model instance. "
            f"Received: {argument}={model!r}"
        )
    if isinstance(model, keras.Sequential):
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise ValueError(
                "Expected a Sequential model with a known input shape "
                "(start it with `keras.Input(shape)` or build it). "
                f"Received: {argument}={model.name!r}, not built"
            )
        return functional
    if not hasattr(model, "_nodes_by_depth"):
        raise ValueError(
            "Expected a Functional or Sequential model; a subclassed model's "
            "call graph cannot be rebuilt, so its layers cannot be annotated "
            "automatically. Annotate them inline with "
            "`quantize_annotate_layer` in the model's `__init__` and call "
            "`quantize_apply` on the model (it quantizes them in place), or "
            "build the model functionally. "
            f"Received: {argument}={model.name!r} of type "
            f"{type(model).__name__}"
        )
    return model


def _unsupported_error(layer):
    return ValueError(
        "Expected every annotated layer to be supported by the default "
        "quantization scheme or to carry a `quantize_config`. Received: "
        f"layer={layer.name!r} of type {type(layer).__name__}. Pass "
        '`unsupported="float"` to keep such layers in float, or annotate '
        "them with a QuantizeConfig."
    )


def _copy_layer(layer, pending, **overrides):
    """A new, unbuilt layer like `layer`; its weights are copied later.

    A Keras op used on symbolic tensors (not a layer) holds no state and
    is reused as is.
    """
    if not isinstance(layer, keras.layers.Layer):
        return layer
    config = {**layer.get_config(), **overrides}
    new = type(layer).from_config(config)
    pending.append(lambda: new.set_weights(layer.get_weights()))
    return new


class _Graph:
    """The nodes of a Functional model in call order, with their consumers."""

    def __init__(self, model):
        self.model = model
        self.nodes = []
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                if node.operation is not None and not node.is_input:
                    self.nodes.append(node)
        self.consumers = collections.defaultdict(list)
        for node in self.nodes:
            for tensor in node.input_tensors:
                self.consumers[id(tensor)].append(node)
        for tensor in model.outputs:
            self.consumers[id(tensor)].append(None)
        self.calls = collections.Counter(
            id(node.operation) for node in self.nodes
        )

    def producer(self, tensor):
        """The node computing `tensor`, or None for a model input."""
        operation, node_index, _ = tensor._keras_history
        node = operation._inbound_nodes[node_index]
        return None if node.is_input else node

    def sole_consumer(self, node):
        """The one node consuming `node`'s one output, else None."""
        if len(node.outputs) != 1:
            return None
        consumers = self.consumers[id(node.outputs[0])]
        if len(consumers) == 1 and consumers[0] is not None:
            return consumers[0]
        return None

    def rebuild(self, operation_fn, input_fn=None):
        """A new Functional model with each operation replaced."""
        model = self.model
        inputs = keras.tree.map_structure(
            lambda x: keras.Input(
                batch_shape=x.shape,
                dtype=x.dtype,
                name=x._keras_history.operation.name,
            ),
            model.input,
        )
        flat = keras.tree.flatten(inputs)
        if input_fn is not None:
            flat = [input_fn(x) for x in flat]
        outputs = model._run_through_graph(flat, operation_fn=operation_fn)
        return keras.Model(inputs, outputs, name=model.name)


def _copy_weights(pending):
    for copy in pending:
        copy()


def _unwrap(operation):
    if isinstance(operation, QuantizeAnnotate):
        return operation.layer, True, operation.quantize_config
    return operation, False, None


def quantize_annotate_layer(layer, quantize_config=None):
    """Marks a layer to be quantized by `quantize_apply`.

    Use it inline in model code, Functional or subclassed (in `__init__`);
    the returned layer computes exactly what `layer` computes until
    `quantize_apply` is called on the model. A `tf_keras` layer is
    annotated by tfmot (the `legacy` extra; `quantize_config` is then a
    tfmot `QuantizeConfig`).

    Args:
        layer: the Keras layer to annotate.
        quantize_config: a `keras_tflq.QuantizeConfig` saying how to
            quantize it, or `None` for the default scheme (which must
            support the layer). Defaults to `None`.

    Returns:
        A `QuantizeAnnotate` layer wrapping `layer`.

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
    return _annotate(model, unsupported)


def _annotate(model, unsupported):
    graph = _Graph(_graph_model(model))
    pending = []
    replaced = {}

    def operation_fn(operation):
        if id(operation) in replaced:
            return replaced[id(operation)]
        if isinstance(operation, QuantizeAnnotate) or not isinstance(
            operation, keras.layers.Layer
        ):
            new = operation  # annotated already, or a stateless Keras op
        elif _is_subclassed(operation):
            if unsupported == "error":
                _graph_model(operation)  # raises, with guidance
            new = operation  # its inline annotations are its own
        elif isinstance(operation, keras.Model):
            new = _annotate(operation, unsupported)
        elif registry.kind(operation) == "passthrough":
            new = _copy_layer(operation, pending)
        elif registry.is_supported(operation):
            new = QuantizeAnnotate(_copy_layer(operation, pending))
        elif unsupported == "error":
            raise _unsupported_error(operation)
        else:
            new = _copy_layer(operation, pending)
        replaced[id(operation)] = new
        return new

    new_model = graph.rebuild(operation_fn)
    _copy_weights(pending)
    return new_model


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
    if _is_subclassed(model):
        _activate_in_place(model, per_channel, activation_bits, unsupported)
        return model
    return _apply(model, per_channel, activation_bits, unsupported, True)


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
    annotated = _annotate(model, unsupported)
    return _apply(annotated, per_channel, activation_bits, unsupported, True)


class _Step:
    """What `quantize_apply` does with one operation."""

    def __init__(self, action, layer, config=None):
        self.action = action  # float|default|user|fold|skip|model
        self.layer = layer
        self.config = config
        self.kind = registry.kind(layer)
        self.quantize_output = True
        self.batch_norm = None
        self.last_node = None


def _plan(graph, unsupported, quantize_ops):
    steps = {}
    for node in graph.nodes:
        operation = node.operation
        if id(operation) in steps:
            continue
        layer, annotated, config = _unwrap(operation)
        if not isinstance(layer, keras.layers.Layer):
            # A Keras op on symbolic tensors (`x + 3.0`): quantized with
            # the rest of the model by quantize_model.
            annotated = quantize_ops
        if isinstance(layer, keras.Model):
            action = "model"
        elif not annotated:
            action = "float"
        elif config is not None:
            action = "user"
        elif registry.kind(layer) is None:
            if unsupported == "error":
                raise _unsupported_error(layer)
            action = "float"
        elif registry.kind(layer) == "passthrough":
            action = "float"
        else:
            action = "default"
        steps[id(operation)] = _Step(action, layer, config)

    def step_of(node):
        return steps[id(node.operation)] if node is not None else None

    def single_call(node):
        return graph.calls[id(node.operation)] == 1

    # BatchNormalization folded into the convolution feeding only it.
    for node in graph.nodes:
        step = step_of(node)
        step.last_node = step.last_node or node
        consumer = graph.sole_consumer(node)
        after = step_of(consumer)
        if (
            step.action == "default"
            and step.kind == "conv"
            and after is not None
            and after.action == "default"
            and after.kind == "batch_norm"
            and single_call(node)
            and single_call(consumer)
            and can_fold(step.layer, after.layer)
        ):
            step.action = "fold"
            step.batch_norm = after.layer
            step.last_node = consumer
            after.action = "skip"
    # A BatchNormalization left alone, a Normalization or a Rescaling runs
    # as one int8 op.
    for node in graph.nodes:
        step = step_of(node)
        if step.action == "default" and step.kind in ("batch_norm", "affine"):
            rank = len(node.input_tensors[0].shape)
            if is_channel_affine(step.layer, rank):
                step.action = "affine"
        if step.action == "default" and step.kind == "activation":
            name = registry.activation_name(step.layer)
            # TFLite gives these a fixed output range of its own.
            if name in registry.FIXED_RANGE_ACTIVATIONS:
                step.quantize_output = False
    # No range between an op and the ReLU TFLite fuses into it, nor between
    # a Concatenate and its inputs (TFLite gives them the output's range).
    for node in graph.nodes:
        step = step_of(node)
        if step.action not in ("default", "fold", "affine") or not (
            single_call(node)
        ):
            continue
        consumer = graph.sole_consumer(step.last_node)
        after = step_of(consumer)
        if after is None or after.action != "default":
            continue
        fuses = (
            step.action == "fold"
            or step.kind in _FUSING_KINDS
            or isinstance(step.layer, _FUSING_MERGES)
            or (step.kind == "op" and type(step.layer).__name__ in _FUSING_OPS)
        ) and registry.activation_name(step.layer) in (None, "linear")
        if (
            fuses
            and after.kind == "activation"
            and registry.activation_name(after.layer)
            in registry.FUSABLE_ACTIVATIONS
        ):
            step.quantize_output = False
    # No range of their own for a Concatenate's inputs, through range-free
    # layers: TFLite gives them the output's range.
    for node in graph.nodes:
        step = step_of(node)
        if step.action != "default" or not isinstance(
            step.layer, keras.layers.Concatenate
        ):
            continue
        for tensor in node.input_tensors:
            producer = graph.producer(tensor)
            while (
                producer is not None
                and step_of(producer).kind == "passthrough"
                and graph.sole_consumer(producer) is not None
                and len(producer.input_tensors) == 1
            ):
                producer = graph.producer(producer.input_tensors[0])
            before = step_of(producer)
            if (
                before is not None
                and before.action in ("default", "fold")
                and graph.sole_consumer(before.last_node) is not None
                and single_call(producer)
            ):
                before.quantize_output = False
    return steps


def _fully_annotated(graph):
    """Whether every layer of the graph is annotated, range-free or a model."""
    for node in graph.nodes:
        layer = node.operation
        if isinstance(layer, keras.layers.Layer) and not (
            isinstance(layer, (QuantizeAnnotate, keras.Model))
            or registry.kind(layer) == "passthrough"
        ):
            return False
    return True


def _apply(model, per_channel, activation_bits, unsupported, quantize_inputs):
    graph = _Graph(_graph_model(model))
    steps = _plan(graph, unsupported, _fully_annotated(graph))
    pending = []
    replaced = {}

    def wrap(layer, quantize_output):
        config = registry.default_config(
            layer, per_channel, activation_bits, quantize_output
        )
        return QuantizeWrapper(layer, config)

    def weighted(layer, quantize_output):
        """A quantized copy of a layer with weights, activation split off."""
        activation = registry.activation_name(layer)
        if activation in ("linear", "relu", "relu6"):
            return wrap(_copy_layer(layer, pending), quantize_output)
        # An activation TFLite does not fuse runs as its own op and needs
        # the range of its input: split it off.
        linear = wrap(_copy_layer(layer, pending, activation="linear"), True)
        act = wrap(
            keras.layers.Activation(
                layer.activation, name=f"{layer.name}_activation"
            ),
            quantize_output
            and activation not in registry.FIXED_RANGE_ACTIVATIONS,
        )
        return lambda *args, **kwargs: act(linear(*args, **kwargs))

    def separable(layer, quantize_output):
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

        first = wrap(depthwise, True)
        second = wrap(pointwise, quantize_output)
        pending.append(copy)
        return lambda *args, **kwargs: second(first(*args, **kwargs))

    def quantized_op(op, quantize_output):
        if not quantize_output:
            return op
        quantizer = QuantizeWrapper(
            keras.layers.Identity(),
            DefaultQuantizeConfig(activation_bits=activation_bits),
        )
        return lambda *args, **kwargs: quantizer(op(*args, **kwargs))

    def hard_sigmoid(layer, quantize_output):
        """hard_sigmoid as `relu6(x + 3) / 6`: TFLite's ADD+RELU6, MUL."""
        relu6 = wrap(keras.layers.ReLU(6.0, name=f"{layer.name}_relu6"), True)
        scale = quantized_op(lambda x: x * (1.0 / 6.0), quantize_output)
        return lambda x, *args, **kwargs: scale(relu6(x + 3.0))

    def merge(layer, quantize_output, scale=None):
        """A merge of n inputs as n - 1 two-input TFLite ops, each with
        its range (then a MUL by `scale`, for Average)."""
        merge_class = (
            keras.layers.Add
            if isinstance(layer, keras.layers.Average)
            else type(layer)
        )

        def call(inputs, *args, **kwargs):
            if len(inputs) <= 2 and scale is None:
                copy = _copy_layer(layer, pending)
                return wrap(copy, quantize_output)(inputs, *args, **kwargs)
            outputs = inputs[0]
            for index, other in enumerate(inputs[1:], start=1):
                last = index == len(inputs) - 1
                pair = wrap(
                    merge_class(name=f"{layer.name}_{index}"),
                    quantize_output or not last or scale is not None,
                )
                outputs = pair([outputs, other])
            if scale is not None:
                outputs = quantized_op(
                    lambda x: x * (1.0 / len(inputs)), quantize_output
                )(outputs)
            return outputs

        return call

    def build(operation):
        step = steps[id(operation)]
        layer = step.layer
        if step.action == "float":
            return _copy_layer(layer, pending)
        if step.action == "skip":
            return lambda x, *args, **kwargs: x
        if step.action == "model":
            if _is_subclassed(layer):
                _activate_in_place(
                    layer, per_channel, activation_bits, unsupported, True
                )
                return layer
            return _apply(
                layer, per_channel, activation_bits, unsupported, False
            )
        if step.action == "user":
            return QuantizeWrapper(_copy_layer(layer, pending), step.config)
        if step.action == "fold":
            return ConvBatchNormFold(
                _copy_layer(layer, pending),
                _copy_layer(step.batch_norm, pending),
                per_channel=per_channel,
                quantize_output=step.quantize_output,
                activation_bits=activation_bits,
            )
        if step.action == "affine":
            return QuantizeChannelAffine(
                _copy_layer(layer, pending),
                activation_bits=activation_bits,
                quantize_output=step.quantize_output,
            )
        if step.kind == "op":
            return quantized_op(layer, step.quantize_output)
        if registry.activation_name(layer) == "hard_sigmoid":
            return hard_sigmoid(layer, step.quantize_output)
        if isinstance(layer, keras.layers.Average):
            return merge(layer, step.quantize_output, scale=True)
        if isinstance(layer, _PAIRWISE_MERGES):
            return merge(layer, step.quantize_output)
        if step.kind == "separable":
            return separable(layer, step.quantize_output)
        if step.kind in ("conv", "dense", "transposed_conv"):
            return weighted(layer, step.quantize_output)
        return wrap(_copy_layer(layer, pending), step.quantize_output)

    def operation_fn(operation):
        if id(operation) not in replaced:
            replaced[id(operation)] = build(operation)
        return replaced[id(operation)]

    input_fn = None
    quantized = any(
        step.action not in ("float", "skip") for step in steps.values()
    )
    if quantize_inputs and quantized:

        def input_fn(tensor):
            if "float" not in str(tensor.dtype):
                return tensor
            name = tensor._keras_history.operation.name
            wrapper = QuantizeWrapper(
                keras.layers.Identity(name=f"{name}_identity"),
                DefaultQuantizeConfig(activation_bits=activation_bits),
                name=f"quantize_{name}",
            )
            return wrapper(tensor)

    new_model = graph.rebuild(operation_fn, input_fn)
    _copy_weights(pending)
    return new_model


# Default-scheme layers `quantize_apply` runs as several quantized ops in a
# Functional model; in place (a subclassed model) a layer stays one layer.
_IN_PLACE_WEIGHTED = ("conv", "dense", "transposed_conv")
_IN_PLACE_ACTIVATIONS = ("linear", "relu", "relu6")


def _build_shape(annotation):
    shapes = annotation._build_shapes_dict or {}
    return next(iter(shapes.values()), None)


def _in_place_refusal(layer, input_shape):
    """Why the default scheme cannot quantize `layer` as one layer, or None."""
    layer_kind = registry.kind(layer)
    if layer_kind is None:
        return "it is not supported by the default quantization scheme"
    if layer_kind == "model":
        return "it is a model: annotate the layers inside it instead"
    if layer_kind == "separable":
        return (
            "inside a subclassed model it cannot be split into the depthwise "
            "and pointwise ops TFLite runs: use a DepthwiseConv2D and a 1x1 "
            "Conv2D"
        )
    activation = registry.activation_name(layer)
    if (
        layer_kind in _IN_PLACE_WEIGHTED
        and activation not in _IN_PLACE_ACTIVATIONS
    ):
        return (
            f"its activation {activation!r} is not fused by TFLite and inside "
            "a subclassed model cannot be split off: use activation=None and "
            "an annotated keras.layers.Activation after it"
        )
    if layer_kind == "activation" and activation == "hard_sigmoid":
        return (
            "hard_sigmoid runs as several TFLite ops: inside a subclassed "
            "model use ReLU(6.0) on `x + 3.0`, then multiply by 1/6"
        )
    if isinstance(layer, keras.layers.Average) or (
        isinstance(layer, _PAIRWISE_MERGES)
        and isinstance(input_shape, (list, tuple))
        and len(input_shape) > 2
        and all(isinstance(s, (list, tuple)) for s in input_shape)
    ):
        return (
            "TFLite runs it as a chain of two-input ops, whose intermediate "
            "ranges a subclassed model cannot learn: merge two inputs at a "
            "time with annotated layers"
        )
    return None


def _in_place_layer(annotation, per_channel, activation_bits, unsupported):
    """The built quantizing layer an annotation runs in place, or None
    (a range-free layer, or an unsupported one left in float)."""
    layer = annotation.layer
    input_shape = _build_shape(annotation)
    if annotation.quantize_config is not None:
        quantized = QuantizeWrapper(layer, annotation.quantize_config)
    else:
        reason = _in_place_refusal(layer, input_shape)
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
        layer_kind = registry.kind(layer)
        if layer_kind == "passthrough":
            return None
        if layer_kind in ("batch_norm", "affine") and is_channel_affine(
            layer, len(input_shape)
        ):
            quantized = QuantizeChannelAffine(
                layer, activation_bits=activation_bits
            )
        else:
            quantize_output = not (
                layer_kind == "activation"
                and registry.activation_name(layer)
                in registry.FIXED_RANGE_ACTIVATIONS
            )
            quantized = QuantizeWrapper(
                layer,
                registry.default_config(
                    layer, per_channel, activation_bits, quantize_output
                ),
            )
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
        if not annotation.built or _build_shape(annotation) is None:
            raise ValueError(
                "Expected a built model: call the subclassed model on a batch "
                "(or build it) before `quantize_apply`, so the annotated "
                "layers know their input shapes. Received: annotated layer "
                f"{annotation.layer.name!r}, not built"
            )
        planned.append((annotation, _in_place_layer(annotation, *options)))
    for annotation, quantized in planned:
        annotation._activate(quantized, *options)


def _activate_in_place(
    model, per_channel, activation_bits, unsupported, nested=False
):
    """`quantize_apply` on a subclassed model: activates its annotations.

    A nested one (called by a Functional model) may have none: it stays
    float."""
    annotations = [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, QuantizeAnnotate)
    ]
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
        for layer in model._flatten_layers(include_self=False, recursive=True)
    )
