"""Per-layer error of a TFLite artifact against the Keras model it came from.

The converter names every tensor after the Keras layers whose ops produced
it (`"functional_1/conv2d_1/Relu;functional_1/conv2d_1/convolution"`, the
name scopes uniquified with a `_<n>` suffix). `graph_layers` reads those
names to say which Keras layer each TFLite op belongs to, which tensor holds
each layer's output and which layers feed which; `layer_errors` runs both
models on the same samples and compares, layer by layer.
"""

import re

import keras
import numpy as np

from keras_tflq.runtime.litert_model import LiteRTModel

PRECISIONS = ("int8", "int16x8", "float32")
"""The precisions a layer of an artifact can run in, lowest first."""

SNR_CAP_DB = 150.0
"""The SNR reported for a tensor equal to the Keras output (no error)."""

_REQUANTIZE_OPS = ("QUANTIZE", "DEQUANTIZE")
_SUFFIX = re.compile(r"_\d+$")
_DTYPE_PRECISION = {"int8": "int8", "uint8": "int8", "int16": "int16x8"}


class GraphLayers:
    """Which Keras layer each op of a TFLite artifact belongs to.

    Attributes:
        op_layer: `{op index: layer name}` for every op that could be
            attributed (ops named after no layer inherit the layer of the op
            that feeds them; `QUANTIZE`/`DEQUANTIZE` are left out).
        op_names: `{op index: the op's first output tensor name}`.
        output_tensor: `{layer name: tensor index}` of each layer's output
            (the last op of the layer, or the graph output for a model
            output).
        producers: `{layer name: set of layer names}` whose outputs the
            layer's ops read.
        layers: The attributed Keras layer names, in the model's order.
    """

    def __init__(self, model, interpreter):
        self.model_name = model.name
        names = [
            layer.name
            for layer in model.layers
            if not isinstance(layer, keras.layers.InputLayer)
        ]
        tensors = {d["index"]: d for d in interpreter.get_tensor_details()}
        order = {name: i for i, name in enumerate(names)}
        ops = [
            op
            for op in interpreter._get_ops_details()
            if op["op_name"] != "DELEGATE"
        ]
        producer_op = {}
        for op in ops:
            for out in op["outputs"]:
                producer_op[int(out)] = op
        self.op_layer, self.op_names, self.output_tensor = {}, {}, {}
        for op in ops:
            outputs = [int(t) for t in op["outputs"] if t >= 0]
            if not outputs:
                continue
            self.op_names[op["index"]] = tensors[outputs[0]]["name"]
            if op["op_name"] in _REQUANTIZE_OPS:
                continue
            mentioned = [
                layer
                for layer in (
                    _layer_of(part, self.model_name, order)
                    for part in tensors[outputs[0]]["name"].split(";")
                )
                if layer is not None
            ]
            if mentioned:
                layer = max(mentioned, key=order.get)
            else:
                layer = self._inherited(op, producer_op)
            if layer is None:
                continue
            self.op_layer[op["index"]] = layer
            self.output_tensor[layer] = outputs[0]
        # A model output is the artifact's output tensor, whatever its name.
        graph_outputs = [d["index"] for d in interpreter.get_output_details()]
        output_layers = [
            _layer_name_of_tensor(t) for t in keras.tree.flatten(model.outputs)
        ]
        for layer, index in zip(output_layers, graph_outputs, strict=False):
            if layer in order:
                self.output_tensor[layer] = int(index)
        self.producers = {}
        for op in ops:
            layer = self.op_layer.get(op["index"])
            if layer is None:
                continue
            for tensor in op["inputs"]:
                source = self._source_layer(int(tensor), producer_op)
                if source is not None and source != layer:
                    self.producers.setdefault(layer, set()).add(source)
        self.layers = sorted(set(self.op_layer.values()), key=order.get)

    def ops_of(self, layer):
        """The output tensor names of `layer`'s ops (for per-op recipes)."""
        return [
            self.op_names[index]
            for index, owner in sorted(self.op_layer.items())
            if owner == layer
        ]

    def _inherited(self, op, producer_op):
        for tensor in op["inputs"]:
            source = producer_op.get(int(tensor))
            if source is not None and source["index"] in self.op_layer:
                return self.op_layer[source["index"]]
        return None

    def _source_layer(self, tensor, producer_op):
        """The layer that produced `tensor`, looking through requantization."""
        op = producer_op.get(tensor)
        while op is not None and op["op_name"] in _REQUANTIZE_OPS:
            op = producer_op.get(int(op["inputs"][0]))
        return None if op is None else self.op_layer.get(op["index"])


def _layer_of(part, model_name, order):
    """The layer named in one `;`-part of a tensor name, or `None`."""
    segments = part.split("/")
    if len(segments) < 3:
        return None
    scope, layer = segments[0], segments[1]
    if scope != model_name:
        # Uniquified: `conv2d` -> `conv2d_1`, `conv2d_1` -> `conv2d_1_2`.
        if _SUFFIX.sub("", scope) != model_name:
            return None
        layer = _SUFFIX.sub("", layer)
    return layer if layer in order else None


def _layer_name_of_tensor(tensor):
    history = getattr(tensor, "_keras_history", None)
    return None if history is None else history[0].name


def layer_errors(model, model_content, x):
    """Compares each Keras layer's output with its tensor in the artifact.

    Both models run on the same samples (one batch; keep it small, a few
    dozen samples). For each Keras layer with a tensor in the artifact:

    - `relative_rmse`: the RMSE of the artifact's tensor against the Keras
      output, divided by the range (max - min) of the Keras output.
    - `snr_db`: `10 * log10(sum(keras^2) / sum(error^2))`, capped at
      `SNR_CAP_DB` for an exact match.
    - `cosine`: the cosine similarity of the flattened outputs.
    - `precision`: `"int8"`, `"int16x8"` or `"float32"`, from the type of
      the layer's output tensor in the artifact.

    Args:
        model: The Keras model the artifact was converted from.
        model_content: The artifact's bytes.
        x: The inputs: one array, or a dict of arrays keyed by input name.

    Returns:
        A list of dicts (`layer`, `tensor`, `precision`, `relative_rmse`,
        `rmse`, `snr_db`, `cosine`), worst (highest `relative_rmse`) first;
        layers fused into another op (no tensor of their own) are left out.

    Example:

    >>> layer_errors(model, tflite_bytes, x_val[:32])[0]["layer"]
    'logits'
    """
    litert_model = LiteRTModel(
        model_content=model_content, preserve_all_tensors=True
    )
    graph = GraphLayers(model, litert_model._interpreter)
    if not graph.output_tensor:
        return []
    keras_layers = {layer.name: layer for layer in model.layers}
    names = [n for n in graph.layers if n in graph.output_tensor] + [
        n
        for n in graph.output_tensor
        if n not in graph.layers and n in keras_layers
    ]
    probe = keras.Model(
        model.inputs, [keras_layers[name].output for name in names]
    )
    keras_x = x
    if isinstance(x, dict) and len(model.inputs) == 1:
        keras_x = next(iter(x.values()))
    expected = probe.predict_on_batch(keras_x)
    expected = expected if isinstance(expected, list) else [expected]
    litert_model.predict_on_batch(x)
    details = {d["index"]: d for d in litert_model.tensor_details}
    results = []
    for name, want in zip(names, expected, strict=True):
        index = graph.output_tensor[name]
        got = litert_model.get_tensor(index)
        want = np.asarray(want, dtype=np.float32)
        if got.shape != want.shape:
            continue
        results.append(
            {
                "layer": name,
                "tensor": details[index]["name"],
                "precision": _DTYPE_PRECISION.get(
                    np.dtype(details[index]["dtype"]).name, "float32"
                ),
                **error_metrics(want, got),
            }
        )
    return sorted(results, key=lambda r: -r["relative_rmse"])


def error_metrics(expected, actual):
    """RMSE (absolute and relative to the range), SNR in dB and cosine."""
    expected = np.asarray(expected, np.float64).ravel()
    actual = np.asarray(actual, np.float64).ravel()
    error = actual - expected
    rmse = float(np.sqrt(np.mean(error**2)))
    span = float(expected.max() - expected.min()) or 1.0
    noise = float(np.sum(error**2))
    signal = float(np.sum(expected**2))
    if noise == 0.0:
        snr = SNR_CAP_DB
    elif signal == 0.0:
        snr = -SNR_CAP_DB
    else:
        snr = min(SNR_CAP_DB, 10.0 * np.log10(signal / noise))
    norms = float(np.linalg.norm(expected) * np.linalg.norm(actual))
    cosine = float(expected @ actual / norms) if norms else float(noise == 0)
    return {
        "relative_rmse": rmse / span,
        "rmse": rmse,
        "snr_db": float(snr),
        "cosine": cosine,
    }
