"""What a TFLite artifact contains: I/O, ops, tensor types, float ops left."""

import collections
import os

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert.interpreter import OpResolverType

from keras_tflq.runtime.litert_model import named_io
from keras_tflq.runtime.litert_model import tensor_summary

_FLOAT_DTYPES = ("float16", "float32", "float64", "bfloat16")
_INTEGER_DTYPES = ("int8", "uint8", "int16", "int32", "int64", "bool")


def inspect_tflite(model_content_or_path):
    """Describes a TFLite artifact as a JSON-serialisable dict.

    The graph is read with the LiteRT interpreter without its default
    delegates, so the ops are the artifact's own (not XNNPACK's fused
    partitions). Only the main subgraph (index 0) is listed.

    An op "computes in float" when one of its outputs is a float tensor,
    except a `DEQUANTIZE` whose output is a graph output (the float output
    of an int8 or 16x8 model). A `QUANTIZE` of a float graph input has an
    integer output, so it is not a float op either. Hybrid (dynamic range)
    ops, with int8 weights and float activations, are float ops.

    Args:
        model_content_or_path: The bytes of a TFLite flatbuffer, or the path
            of a `.tflite` file.

    Returns:
        A dict with:
        - `bytes`: the size of the artifact.
        - `inputs`, `outputs`: one dict per tensor in the Keras order, with
          `name`, `tensor_name`, `index`, `shape`, `dtype` and
          `quantization` (`scale`/`zero_point` lists, per channel when the
          tensor is quantized per channel).
        - `op_counts`: `{op_name: count}`.
        - `tensor_dtypes`: `{dtype_name: count}` over all tensors.
        - `float_ops`, `quantized_ops`: one `{"index", "op", "outputs"}`
          per op, where `outputs` are the output tensor names (which carry
          the Keras layer names). A quantized op reads or writes a quantized
          tensor and has no float output.
        - `all_integer`: `True` when every non-empty tensor but the graph
          inputs and outputs is an integer tensor.

    Example:

    ```python
    import keras, tensorflow as tf
    from keras_tflq import inspect_tflite

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    report = inspect_tflite(
        tf.lite.TFLiteConverter.from_keras_model(model).convert()
    )
    assert report["op_counts"] == {"FULLY_CONNECTED": 1}
    ```
    """
    if isinstance(model_content_or_path, (bytes, bytearray, memoryview)):
        content = bytes(model_content_or_path)
    elif isinstance(model_content_or_path, (str, os.PathLike)):
        if not os.path.isfile(model_content_or_path):
            raise ValueError(
                "Expected an existing .tflite file. Received: "
                f"model_content_or_path={model_content_or_path}"
            )
        with open(model_content_or_path, "rb") as f:
            content = f.read()
    else:
        raise ValueError(
            "Expected the bytes or the path of a TFLite model. Received: "
            "model_content_or_path of type "
            f"{type(model_content_or_path).__name__}"
        )
    interpreter = Interpreter(
        model_content=content,
        experimental_op_resolver_type=(
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        ),
    )
    inputs, outputs = named_io(interpreter)
    tensors = {d["index"]: d for d in interpreter.get_tensor_details()}
    io_indices = {d["index"] for _, d in inputs + outputs}
    graph_outputs = {d["index"] for _, d in outputs}

    op_counts = collections.Counter()
    float_ops = []
    quantized_ops = []
    for op in interpreter._get_ops_details():
        op_counts[op["op_name"]] += 1
        used = [tensors[i] for i in op["inputs"] if i in tensors]
        produced = [tensors[i] for i in op["outputs"] if i in tensors]
        entry = {
            "index": int(op["index"]),
            "op": op["op_name"],
            "outputs": [d["name"] for d in produced],
        }
        float_output = any(_dtype(d) in _FLOAT_DTYPES for d in produced)
        dequantizes_output = op["op_name"] == "DEQUANTIZE" and all(
            d["index"] in graph_outputs for d in produced
        )
        if float_output and not dequantizes_output:
            float_ops.append(entry)
        elif any(_is_quantized(d) for d in used + produced):
            quantized_ops.append(entry)

    return {
        "bytes": len(content),
        "inputs": [tensor_summary(d, name) for name, d in inputs],
        "outputs": [tensor_summary(d, name) for name, d in outputs],
        "op_counts": dict(sorted(op_counts.items())),
        "tensor_dtypes": dict(
            sorted(collections.Counter(map(_dtype, tensors.values())).items())
        ),
        "float_ops": float_ops,
        "quantized_ops": quantized_ops,
        # Empty tensors (the fused LSTM's float "intermediate" placeholders,
        # shape [0]) hold no data and run no float arithmetic.
        "all_integer": all(
            _dtype(d) in _INTEGER_DTYPES
            for i, d in tensors.items()
            if i not in io_indices and int(np.prod(d["shape"])) > 0
        ),
    }


def _dtype(details):
    return np.dtype(details["dtype"]).name


def _is_quantized(details):
    return len(details["quantization_parameters"]["scales"]) > 0
