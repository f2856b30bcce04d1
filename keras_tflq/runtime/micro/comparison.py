"""TFLM's outputs against LiteRT's on the same input tensors."""

import numpy as np

from keras_tflq.runtime.micro.micro_model import MicroModel
from keras_tflq.runtime.micro.tflm import MicroError
from keras_tflq.runtime.micro.tflm import builtin_names
from keras_tflq.runtime.micro.tflm import parse_model
from keras_tflq.runtime.tensor_io import quantize_input

_AGREEMENT_ORDER = ("exact", "within one quantization step", "float rounding")
# Float kernels differ between LiteRT (XNNPACK) and TFLM (reference) only
# in the order of operations: a few units in the last place.
_FLOAT_RTOL = 1e-5


def compare_with_litert(content, samples, arena_size=None):
    """Runs TFLM and LiteRT on the same samples and compares their outputs.

    Both runtimes get the same raw input tensors (float samples are
    quantized once, with the input tensor's scale and zero point). An
    integer output agrees "exact"ly or "within one quantization step" when
    no value differs by more than 1; a float output read from a quantized
    tensor (a `DEQUANTIZE` at the end of a model with float I/O) by at most
    that tensor's scale; a float output of a float model within float
    rounding (relative 1e-5).

    Args:
        content: The bytes of a TFLite flatbuffer.
        samples: A list of samples, each a list of arrays of batch 1 in the
            artifact's input order (float, or already of the input types).
        arena_size: The TFLM arena. Defaults to `None` (the smallest).

    Returns:
        A dict: `agreement` (the worst over the outputs), `samples`, and
        `outputs`, one dict per output with `name`, `dtype`,
        `agreement` and either `max_abs_diff` and `max_steps` (the largest
        difference, in the output's units and in quantization steps) or,
        for a float model, `max_relative_diff`.

    Raises:
        MicroError: An output differs by more than that.
    """
    from ai_edge_litert.interpreter import Interpreter

    micro = MicroModel(content, arena_size)
    litert = Interpreter(model_content=bytes(content))
    litert.allocate_tensors()
    input_details = litert.get_input_details()
    output_details = litert.get_output_details()
    steps = _output_steps(content)
    worst = [0.0] * len(output_details)
    magnitude = [0.0] * len(output_details)
    for sample in samples:
        raw = [
            quantize_input(np.asarray(x), d)
            for x, d in zip(sample, input_details, strict=True)
        ]
        for array, details in zip(raw, input_details, strict=True):
            if tuple(details["shape"]) != array.shape:
                litert.resize_tensor_input(details["index"], array.shape)
                litert.allocate_tensors()
            litert.set_tensor(details["index"], array)
        litert.invoke()
        expected = [litert.get_tensor(d["index"]) for d in output_details]
        actual = micro.run(raw)
        for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
            diff = np.abs(
                want.astype(np.float64)
                - got.astype(np.float64).reshape(want.shape)
            )
            if np.dtype(want.dtype).kind == "f" and steps[i] is None:
                scale = max(float(np.abs(want).max()), 1e-30)
                diff = diff / scale
            worst[i] = max(worst[i], float(diff.max()) if diff.size else 0.0)
            if want.size:
                magnitude[i] = max(magnitude[i], float(np.abs(want).max()))
    outputs = []
    for details, step, diff, largest in zip(
        output_details, steps, worst, magnitude, strict=True
    ):
        dtype = np.dtype(details["dtype"])
        entry = {"name": details["name"], "dtype": dtype.name}
        if dtype.kind in "iu":
            step = 1.0  # Integer outputs differ in whole quantization steps.
        if step is not None:
            entry["max_abs_diff"] = diff
            entry["max_steps"] = diff / step
            # A dequantized float output adds float32 rounding of its value.
            rounding = 2 * float(np.finfo(np.float32).eps) * largest
            ok = diff <= step * (1 + 1e-6) + (rounding if step != 1.0 else 0)
            agreement = "exact" if diff == 0 else "within one quantization step"
        else:
            entry["max_relative_diff"] = diff
            ok = diff <= _FLOAT_RTOL
            agreement = "exact" if diff == 0 else "float rounding"
        if not ok:
            raise MicroError(
                "Expected TFLM and LiteRT outputs to agree within one "
                f"quantization step (or float rounding). Received: output "
                f"{details['name']!r} differs by {diff:.6g}"
                + (f" with a step of {step:.6g}" if step else " (relative)")
            )
        entry["agreement"] = agreement
        outputs.append(entry)
    return {
        "agreement": max(
            (o["agreement"] for o in outputs),
            key=_AGREEMENT_ORDER.index,
            default="exact",
        ),
        "samples": len(samples),
        "outputs": outputs,
    }


def random_samples(content, count=32, seed=0):
    """`count` reproducible random samples for an artifact's inputs.

    Integer inputs are drawn uniformly over their type's range, float
    inputs from a standard normal distribution.
    """
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_content=bytes(content)).get_input_details()
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        sample = []
        for d in details:
            shape = [1] + [int(s) for s in d["shape"][1:]]
            dtype = np.dtype(d["dtype"])
            if dtype.kind in "iu":
                info = np.iinfo(dtype)
                sample.append(
                    rng.integers(
                        info.min, info.max, shape, endpoint=True
                    ).astype(dtype)
                )
            else:
                sample.append(rng.standard_normal(shape).astype(dtype))
        samples.append(sample)
    return samples


def _output_steps(content):
    """Per graph output: the scale of the quantized tensor a final
    `DEQUANTIZE` reads, else `None`."""
    model = parse_model(content)
    subgraph = model.subgraphs[0]
    names = builtin_names()
    producers = {}
    for operator in subgraph.operators or []:
        for index in operator.outputs if operator.outputs is not None else []:
            producers[int(index)] = operator
    steps = []
    for output in subgraph.outputs:
        operator = producers.get(int(output))
        step = None
        if operator is not None:
            code = model.operatorCodes[operator.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            if names.get(builtin) == "DEQUANTIZE":
                quantization = subgraph.tensors[
                    int(operator.inputs[0])
                ].quantization
                if quantization is not None and quantization.scale is not None:
                    step = float(np.max(quantization.scale))
        steps.append(step)
    return steps
