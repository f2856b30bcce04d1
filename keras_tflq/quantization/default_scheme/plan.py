"""The default scheme's plan: what `quantize_apply` does with each operation.

`plan()` gives every operation of a Functional graph a `Step`, then runs
the named passes below in order; each reads the graph and the table
(`registry`) and refines the steps. The rewrite (`rewrite.py`) then
builds the quantized model from the steps.
"""

import enum

import keras

from keras_tflq.quantization.default_scheme import registry
from keras_tflq.quantization.default_scheme.channel_affine import (
    is_channel_affine,
)
from keras_tflq.quantization.default_scheme.conv_batchnorm_fold import can_fold
from keras_tflq.quantization.default_scheme.registry import Kind
from keras_tflq.quantization.quantize_annotate import QuantizeAnnotate


class Action(enum.Enum):
    """What the rewrite does with one operation."""

    FLOAT = "float"  # copied as it is: not annotated, or range-free
    DEFAULT = "default"  # quantized by the default scheme, per its kind
    USER = "user"  # wrapped with the annotation's QuantizeConfig
    FOLD = "fold"  # a convolution with the BatchNormalization after it
    AFFINE = "affine"  # a per-channel affine layer as one int8 op
    SKIP = "skip"  # a BatchNormalization folded into the op before it
    MODEL = "model"  # a nested model, quantized on its own


# The actions that give an operation an output range of its own.
_RANGED = (Action.DEFAULT, Action.FOLD, Action.AFFINE)


class Step:
    """What `quantize_apply` does with one operation.

    Args:
        action: the `Action`.
        layer: the operation (the annotated layer, unwrapped).
        config: the annotation's `QuantizeConfig`, or None.
    """

    def __init__(self, action, layer, config=None):
        self.action = action
        self.layer = layer
        self.config = config
        self.info = registry.info(layer)
        self.kind = None if self.info is None else self.info.kind
        # Whether the output gets a range of its own (cleared by the
        # passes where TFLite gives it none).
        self.quantize_output = True
        # For Action.FOLD: the BatchNormalization folded in.
        self.batch_norm = None
        # The node whose output is this step's output (the folded
        # BatchNormalization's for Action.FOLD).
        self.last_node = None

    def fuses_relu(self):
        """Whether TFLite fuses a following ReLU/ReLU6 into this step."""
        return (
            self.action == Action.FOLD
            or (self.info is not None and self.info.fuses_relu)
        ) and registry.activation_name(self.layer) in (None, "linear")


def unwrap(operation):
    """`(layer, annotated, quantize_config)` of a graph operation."""
    if isinstance(operation, QuantizeAnnotate):
        return operation.layer, True, operation.quantize_config
    return operation, False, None


# What each entry point says about a layer the default scheme cannot run:
# (which layers it checks, what to do instead).
_UNSUPPORTED_GUIDANCE = {
    "quantize_apply": (
        "every annotated layer to be supported by the default quantization "
        "scheme or to carry a `quantize_config`",
        '`unsupported="float"` to keep such layers in float, or annotate '
        "them with a QuantizeConfig.",
    ),
    "quantize_model": (
        "every layer of the model to be supported by the default "
        "quantization scheme (`quantize_model` quantizes them all)",
        '`unsupported="float"` to keep such layers in float, or choose the '
        "layers yourself: `quantize_annotate_layer` on each (with a "
        "QuantizeConfig for a custom layer), then `quantize_apply`.",
    ),
    "quantize_annotate_model": (
        "every layer of the model to be supported by the default "
        "quantization scheme (`quantize_annotate_model` annotates them all)",
        '`unsupported="float"` to leave such layers unannotated (float), or '
        "annotate them with `quantize_annotate_layer(layer, "
        "quantize_config)`.",
    ),
    "quantize_annotate_layer": (
        "every layer of a model passed to `quantize_annotate_layer` to be "
        "supported by the default quantization scheme (it annotates every "
        "layer inside the model)",
        "`quantize_annotate_layer` on the supported layers inside the model "
        "instead, one by one, and a QuantizeConfig for the others, or "
        '`quantize_annotate_model(model, unsupported="float")` to leave '
        "them in float.",
    ),
}


def unsupported_error(layer, entry_point="quantize_apply"):
    """The error for a layer the default scheme cannot run, worded for the
    public function (`entry_point`) that met it."""
    expected, remedy = _UNSUPPORTED_GUIDANCE[entry_point]
    action = "Use" if entry_point == "quantize_annotate_layer" else "Pass"
    return ValueError(
        f"Expected {expected}. Received: layer={layer.name!r} of type "
        f"{type(layer).__name__}. {action} {remedy}"
    )


def annotated_model_error(model):
    """The error for a `QuantizeAnnotate` around a model."""
    return ValueError(
        "Expected the layers inside a model to be annotated, not the model "
        "itself: `quantize_annotate_layer(model)` annotates every supported "
        "layer inside it, and a QuantizeConfig belongs on the layers it "
        "describes (`quantize_annotate_layer(layer, quantize_config)` in the "
        f"model's code). Received: model={model.name!r} of type "
        f"{type(model).__name__}, annotated as a whole"
    )


class _Plan:
    """The steps of a graph, by operation."""

    def __init__(self, graph, steps):
        self.graph = graph
        self.steps = steps

    def step(self, node):
        """The step of `node`'s operation (None for no node)."""
        return None if node is None else self.steps[id(node.operation)]


def initial_steps(graph, unsupported, quantize_ops):
    """One step per operation: annotated layers the scheme supports get
    `DEFAULT` (range-free ones `FLOAT`), others `USER`, `MODEL`, `FLOAT`,
    or an error for an unsupported layer when `unsupported="error"`.

    A Keras op on symbolic tensors (`x + 3.0`) cannot be annotated: it is
    quantized when `quantize_ops` (the whole model is annotated, as by
    `quantize_model`).
    """
    steps = {}
    for node in graph.nodes:
        operation = node.operation
        if id(operation) in steps:
            continue
        layer, annotated, config = unwrap(operation)
        if not isinstance(layer, keras.layers.Layer):
            annotated = quantize_ops
        layer_kind = registry.kind(layer)
        if isinstance(layer, keras.Model):
            if isinstance(operation, QuantizeAnnotate):
                raise annotated_model_error(layer)
            action = Action.MODEL
        elif not annotated:
            action = Action.FLOAT
        elif config is not None:
            action = Action.USER
        elif layer_kind is None:
            if unsupported == "error":
                raise unsupported_error(layer)
            action = Action.FLOAT
        elif layer_kind is Kind.PASSTHROUGH:
            action = Action.FLOAT
        else:
            action = Action.DEFAULT
        steps[id(operation)] = Step(action, layer, config)
    return _Plan(graph, steps)


def fold_batch_norms(plan):
    """Folds a BatchNormalization into the convolution feeding only it
    (`FOLD`; the BatchNormalization is skipped)."""
    graph = plan.graph
    for node in graph.nodes:
        step = plan.step(node)
        step.last_node = step.last_node or node
        consumer = graph.sole_consumer(node)
        after = plan.step(consumer)
        if (
            step.action == Action.DEFAULT
            and step.kind is Kind.CONV
            and after is not None
            and after.action == Action.DEFAULT
            and after.kind is Kind.BATCH_NORM
            and graph.called_once(node)
            and graph.called_once(consumer)
            and can_fold(step.layer, after.layer)
        ):
            step.action = Action.FOLD
            step.batch_norm = after.layer
            step.last_node = consumer
            after.action = Action.SKIP


def affine_layers(plan):
    """A BatchNormalization left alone, a Normalization or a Rescaling
    that is a per-channel affine map runs as one int8 op (`AFFINE`)."""
    for node in plan.graph.nodes:
        step = plan.step(node)
        if step.action == Action.DEFAULT and step.kind in (
            Kind.BATCH_NORM,
            Kind.AFFINE,
        ):
            rank = len(node.input_tensors[0].shape)
            if is_channel_affine(step.layer, rank):
                step.action = Action.AFFINE


def fixed_range_activations(plan):
    """No range for sigmoid, softmax and tanh: TFLite fixes their output
    range itself."""
    for node in plan.graph.nodes:
        step = plan.step(node)
        if (
            step.action == Action.DEFAULT
            and step.kind is Kind.ACTIVATION
            and registry.activation_name(step.layer)
            in registry.FIXED_RANGE_ACTIVATIONS
        ):
            step.quantize_output = False


def fuse_activations(plan):
    """No range between an op and the ReLU/ReLU6 TFLite fuses into it."""
    graph = plan.graph
    for node in graph.nodes:
        step = plan.step(node)
        if step.action not in _RANGED or not graph.called_once(node):
            continue
        after = plan.step(graph.sole_consumer(step.last_node))
        if after is None or after.action != Action.DEFAULT:
            continue
        if (
            step.fuses_relu()
            and after.kind is Kind.ACTIVATION
            and registry.activation_name(after.layer)
            in registry.FUSABLE_ACTIVATIONS
        ):
            step.quantize_output = False


def share_concatenate_ranges(plan):
    """No range of their own for a Concatenate's inputs, through
    range-free layers: TFLite gives them the output's range."""
    graph = plan.graph
    for node in graph.nodes:
        step = plan.step(node)
        if (
            step.action != Action.DEFAULT
            or step.info.merge is not registry.Merge.CONCATENATE
        ):
            continue
        for tensor in node.input_tensors:
            producer = graph.producer(tensor)
            while (
                producer is not None
                and plan.step(producer).kind is Kind.PASSTHROUGH
                and graph.sole_consumer(producer) is not None
                and len(producer.input_tensors) == 1
            ):
                producer = graph.producer(producer.input_tensors[0])
            before = plan.step(producer)
            if (
                before is not None
                and before.action in (Action.DEFAULT, Action.FOLD)
                and graph.sole_consumer(before.last_node) is not None
                and graph.called_once(producer)
            ):
                before.quantize_output = False


# The passes after `initial_steps`, in the order they run.
PASSES = (
    fold_batch_norms,
    affine_layers,
    fixed_range_activations,
    fuse_activations,
    share_concatenate_ranges,
)


def plan(graph, unsupported, quantize_ops):
    """The steps of `graph` (a `graph.Graph`), by operation id.

    Args:
        graph: the Functional graph to quantize.
        unsupported: `"error"` or `"float"`.
        quantize_ops: whether Keras ops on symbolic tensors are quantized.

    Returns:
        `{id(operation): Step}`.
    """
    steps = initial_steps(graph, unsupported, quantize_ops)
    for named_pass in PASSES:
        named_pass(steps)
    return steps.steps
