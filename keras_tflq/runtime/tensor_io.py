"""The interpreter's tensors as the Keras model names them, and arrays
converted to and from their quantized form.

Shared by `LiteRTModel`, `inspect_tflite`, the command line and the
microcontroller checks, so every runtime feeds an artifact the same
quantized input.
"""

import numpy as np

_SIGNATURE_KEY = "serving_default"
_QUANTIZED_IO_DTYPES = (np.int8, np.uint8, np.int16)


def tensor_summary(details, name=None):
    """Returns a JSON-serialisable summary of one interpreter tensor.

    Args:
        details: A tensor details dict from the LiteRT interpreter.
        name: The signature name of the tensor, or `None` to use the tensor
            name. Defaults to `None`.

    Returns:
        A dict with `name`, `tensor_name`, `index`, `shape` (from the shape
        signature, `-1` for a dynamic dimension), `dtype` (a numpy dtype
        name) and `quantization`: `scale` and `zero_point` lists (one entry
        per channel for a per-channel tensor, empty when the tensor is not
        quantized) and `quantized_dimension`.
    """
    params = details["quantization_parameters"]
    return {
        "name": details["name"] if name is None else name,
        "tensor_name": details["name"],
        "index": int(details["index"]),
        "shape": [int(d) for d in details["shape_signature"]],
        "dtype": np.dtype(details["dtype"]).name,
        "quantization": {
            "scale": [float(s) for s in params["scales"]],
            "zero_point": [int(z) for z in params["zero_points"]],
            "quantized_dimension": int(params["quantized_dimension"]),
        },
    }


def named_io(interpreter):
    """Names the interpreter's inputs and outputs as the Keras model does.

    Args:
        interpreter: A LiteRT `Interpreter`.

    Returns:
        `(inputs, outputs)`: lists of `(name, tensor_details)` in the Keras
        input and output order. Names come from the `"serving_default"`
        signature (or the only signature), else from the tensor names.
    """
    input_details = interpreter.get_input_details()
    output_details = interpreter.get_output_details()
    signatures = interpreter.get_signature_list()
    key = _SIGNATURE_KEY if _SIGNATURE_KEY in signatures else None
    if key is None and len(signatures) == 1:
        key = next(iter(signatures))
    if key is not None:
        runner = interpreter.get_signature_runner(key)
        input_names = {
            d["index"]: n for n, d in runner.get_input_details().items()
        }
        output_names = {
            d["index"]: n for n, d in runner.get_output_details().items()
        }
        if set(input_names) == {d["index"] for d in input_details} and set(
            output_names
        ) == {d["index"] for d in output_details}:
            # The interpreter lists inputs in the Keras order; the signature
            # lists them alphabetically.
            inputs = [(input_names[d["index"]], d) for d in input_details]
            outputs = [(output_names[d["index"]], d) for d in output_details]
            return inputs, sorted(outputs, key=lambda o: _numeric_key(o[0]))
    # No usable signature: fall back on the tensor names.
    inputs = [(_input_name(d["name"]), d) for d in input_details]
    outputs = [(d["name"], d) for d in output_details]
    return inputs, sorted(outputs, key=lambda o: _numeric_key(o[0]))


def _numeric_key(name):
    """Sorts `output_10` after `output_9` and `Call:10` after `Call:9`."""
    head = name.rstrip("0123456789")
    tail = name[len(head) :]
    return (head, int(tail) if tail else -1)


def _input_name(tensor_name):
    name = tensor_name.split(":")[0]
    prefix = _SIGNATURE_KEY + "_"
    return name[len(prefix) :] if name.startswith(prefix) else name


def quantize_input(array, details):
    """`array` as the input tensor takes it: rounded and clipped
    `x / scale + zero_point` in float32 for a float array and a quantized
    tensor, else cast to the tensor's dtype."""
    dtype = np.dtype(details["dtype"])
    scale, zero_point = details["quantization"]
    if dtype in _QUANTIZED_IO_DTYPES and scale and array.dtype.kind == "f":
        info = np.iinfo(dtype)
        q = np.rint(
            array.astype(np.float32) / np.float32(scale)
            + np.float32(zero_point)
        )
        return np.clip(q, info.min, info.max).astype(dtype)
    return np.ascontiguousarray(array, dtype=dtype)


def dequantized_dtype(array, details):
    """The dtype `dequantize_output` gives `array` of the tensor `details`:
    float32 for a quantized or float tensor, else the array's own."""
    scale, _ = details["quantization"]
    quantized = np.dtype(details["dtype"]) in _QUANTIZED_IO_DTYPES and scale
    return np.float32 if quantized or array.dtype.kind == "f" else array.dtype


def dequantize_output(array, details, out=None):
    """`(array - zero_point) * scale` in float32 for a quantized tensor, a
    float32 copy of a float one; written into `out` when given."""
    scale, zero_point = details["quantization"]
    if out is None:
        out = np.empty(array.shape, dequantized_dtype(array, details))
    if np.dtype(details["dtype"]) in _QUANTIZED_IO_DTYPES and scale:
        np.subtract(array, zero_point, out=out, dtype=np.float32)
        np.multiply(out, np.float32(scale), out=out)
    else:
        out[...] = array
    return out
