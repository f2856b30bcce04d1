"""What a TFLite artifact contains: I/O, ops, tensor types, float ops left."""

import collections
import os

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert.interpreter import OpResolverType

from keras_tflq.runtime.tensor_io import named_io
from keras_tflq.runtime.tensor_io import tensor_summary

_FLOAT_DTYPES = ("float16", "float32", "float64", "bfloat16")
_INTEGER_DTYPES = ("int8", "uint8", "int16", "int32", "int64", "bool")
# Constants of these types that are not biases are shapes, axes, indices.
_INDEX_TYPES = ("int32", "int64", "bool", "string")
# Ops whose last input is a bias (int32 in an int8 model).
_BIAS_OPS = (
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "TRANSPOSE_CONV",
)


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
    content = _read_content(model_content_or_path)
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


def byte_breakdown(model_content_or_path):
    """Counts the bytes of a TFLite flatbuffer by what they hold.

    The flatbuffer is parsed with the TFLite schema (all subgraphs), and
    every constant tensor's buffer, quantization parameter, name and
    metadata entry is counted once. Constant tensors are sorted by role:
    biases (the last input of a `CONV_2D`, `DEPTHWISE_CONV_2D`,
    `FULLY_CONNECTED` or `TRANSPOSE_CONV`), other int32, int64, bool or
    string constants (shapes, axes, indices), and weights (every other
    constant: int8, int16, float, ... kernels and tables). Quantization
    parameters are stored per tensor as float32 `scale`s, int64
    `zero_point`s and float32 `min`/`max`, one per channel for a
    per-channel tensor.

    Args:
        model_content_or_path: The bytes of a TFLite flatbuffer, or the path
            of a `.tflite` file.

    Returns:
        A dict of byte counts whose values sum to the file size:
        `weights`, `biases` and `other_constants` (buffer data, each also
        split by dtype under `constants_by_dtype`), `weight_quantization`,
        `bias_quantization` and `activation_quantization` (scales, zero
        points, min/max), `tensor_names`, `metadata` (metadata entries, their
        names and the model description), `signatures` (signature names and
        keys) and `structure`: the rest (tables, vtables, shapes, op options,
        vector lengths, alignment padding). `constants_by_dtype` is
        informational and not part of the sum.

    Example:

    ```python
    import keras, tensorflow as tf
    from keras_tflq.runtime.inspection import byte_breakdown

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    counts = byte_breakdown(content)
    assert counts["weights"] == 4 * 3 * 4  # float32 kernel
    ```
    """
    from ai_edge_litert import schema_py_generated as schema

    content = _read_content(model_content_or_path)
    model = schema.Model.GetRootAs(content, 0)
    type_names = {
        v: k.lower()
        for k, v in vars(schema.TensorType).items()
        if not k.startswith("_")
    }
    builtin_names = {
        v: k
        for k, v in vars(schema.BuiltinOperator).items()
        if not k.startswith("_")
    }
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        codes.append(
            builtin_names.get(
                max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            )
        )
    counts = collections.Counter()
    by_dtype = collections.Counter()
    seen_buffers = set()
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        roles = {}
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            inputs = [op.Inputs(i) for i in range(op.InputsLength())]
            if codes[op.OpcodeIndex()] in _BIAS_OPS and len(inputs) > 2:
                roles[inputs[-1]] = "bias"
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            counts["tensor_names"] += len(tensor.Name() or b"")
            buffer_index = tensor.Buffer()
            constant = (
                buffer_index > 0
                and model.Buffers(buffer_index).DataLength() > 0
            )
            role = "activation"
            if constant:
                index_type = type_names.get(tensor.Type()) in _INDEX_TYPES
                role = roles.get(t, "other" if index_type else "weight")
            # The converter stores identical constants (for example the
            # all-zero biases of an untrained model) once.
            data = 0
            if constant and buffer_index not in seen_buffers:
                seen_buffers.add(buffer_index)
                data = model.Buffers(buffer_index).DataLength()
            quantization = tensor.Quantization()
            if quantization is not None:
                counts[f"{role}_quantization"] += (
                    4 * quantization.ScaleLength()
                    + 8 * quantization.ZeroPointLength()
                    + 4 * (quantization.MinLength() + quantization.MaxLength())
                )
            if data:
                key = {"weight": "weights", "bias": "biases"}.get(
                    role, "other_constants"
                )
                counts[key] += data
                by_dtype[type_names.get(tensor.Type(), "unknown")] += data
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        counts["metadata"] += len(entry.Name() or b"")
        if entry.Buffer() not in seen_buffers:
            seen_buffers.add(entry.Buffer())
            counts["metadata"] += model.Buffers(entry.Buffer()).DataLength()
    counts["metadata"] += len(model.Description() or b"")
    for i in range(model.SignatureDefsLength()):
        signature = model.SignatureDefs(i)
        counts["signatures"] += len(signature.SignatureKey() or b"")
        for maps in (
            (signature.InputsLength(), signature.Inputs),
            (signature.OutputsLength(), signature.Outputs),
        ):
            for j in range(maps[0]):
                counts["signatures"] += len(maps[1](j).Name() or b"")
    keys = (
        "weights",
        "biases",
        "other_constants",
        "weight_quantization",
        "bias_quantization",
        "activation_quantization",
        "other_quantization",
        "tensor_names",
        "metadata",
        "signatures",
    )
    result = {key: int(counts[key]) for key in keys}
    result["activation_quantization"] += result.pop("other_quantization")
    result["structure"] = len(content) - sum(result.values())
    result["constants_by_dtype"] = dict(sorted(by_dtype.items()))
    return result


def _read_content(model_content_or_path):
    if isinstance(model_content_or_path, (bytes, bytearray, memoryview)):
        return bytes(model_content_or_path)
    if isinstance(model_content_or_path, (str, os.PathLike)):
        if not os.path.isfile(model_content_or_path):
            raise ValueError(
                "Expected an existing .tflite file. Received: "
                f"model_content_or_path={model_content_or_path}"
            )
        with open(model_content_or_path, "rb") as f:
            return f.read()
    raise ValueError(
        "Expected the bytes or the path of a TFLite model. Received: "
        "model_content_or_path of type "
        f"{type(model_content_or_path).__name__}"
    )


def _dtype(details):
    return np.dtype(details["dtype"]).name


def _is_quantized(details):
    return len(details["quantization_parameters"]["scales"]) > 0
