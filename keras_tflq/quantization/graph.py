"""Every private Keras attribute keras_tflq touches, in one place.

Keras 3 has no public API to walk a Functional model's graph, rebuild it
with some operations replaced, or list a model's nested layers; its own
`keras/src/models/cloning.py` uses the attributes below. Going through
this module, a Keras upgrade that renames them breaks one file.
"""

import collections
import contextlib

import keras


def is_subclassed(model):
    """Whether `model` is a subclassed model (no graph to rebuild)."""
    return (
        isinstance(model, keras.Model)
        and not isinstance(model, keras.Sequential)
        and not hasattr(model, "_nodes_by_depth")
    )


def functional_model(model, argument="model"):
    """The Functional model whose graph `model` runs, checked.

    Args:
        model: a Functional or a built Sequential model.
        argument: the argument name used in error messages. Defaults to
            `"model"`.

    Returns:
        `model`, or the Functional model a Sequential model runs.
    """
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


def flatten_layers(model):
    """Every layer tracked by `model` (recursively), `model` excluded."""
    return list(model._flatten_layers(include_self=False, recursive=True))


def tensor_source_name(tensor):
    """The name of the operation (or input) that made a symbolic tensor."""
    return tensor._keras_history.operation.name


def build_input_shape(layer):
    """The input shape `layer` was built with (its first input), or None."""
    shapes = layer._build_shapes_dict or {}
    return next(iter(shapes.values()), None)


@contextlib.contextmanager
def untracked(layer):
    """Lets `layer` take a new attribute after its tracker was locked."""
    locked = layer._tracker.locked
    layer._tracker.unlock()
    try:
        yield
    finally:
        if locked:
            layer._tracker.lock()


class Graph:
    """The nodes of a Functional model in call order, with their consumers.

    Args:
        model: a Functional model (see `functional_model`).
    """

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

    def called_once(self, node):
        """Whether `node`'s operation is called once in the graph."""
        return self.calls[id(node.operation)] == 1

    def rebuild(self, operation_fn, input_fn=None):
        """A new Functional model with each operation replaced.

        Args:
            operation_fn: called with each operation, returns the callable
                that replaces it (called once per call of the operation).
            input_fn: called with each new model input tensor, returns the
                tensor the graph starts from. Defaults to `None` (the
                inputs as they are).
        """
        model = self.model
        inputs = keras.tree.map_structure(
            lambda x: keras.Input(
                batch_shape=x.shape,
                dtype=x.dtype,
                name=tensor_source_name(x),
            ),
            model.input,
        )
        flat = keras.tree.flatten(inputs)
        if input_fn is not None:
            flat = [input_fn(x) for x in flat]
        outputs = model._run_through_graph(flat, operation_fn=operation_fn)
        return keras.Model(inputs, outputs, name=model.name)
