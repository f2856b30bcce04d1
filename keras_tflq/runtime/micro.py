"""Running a TFLite artifact on TensorFlow Lite Micro (TFLM), on the host.

TFLM is the runtime of microcontrollers. An artifact that LiteRT runs can
still fail there: TFLM has a smaller set of ops, no hybrid (dynamic-range)
kernels, no float16 weights, and a fixed tensor arena whose size a firmware
must set. This module answers those questions with TFLM's own interpreter,
from the `tflite-micro` package (the `micro` extra), imported lazily:

- `micro_ops`: the ops of an artifact and the `MicroMutableOpResolver`
  method a firmware calls for each.
- `check_micro_ops`: every op resolves and prepares in TFLM, else a
  `MicroError` naming the op and the Keras layer it came from.
- `smallest_arena`: the smallest tensor arena that allocates, by bisection.
- `compare_with_litert`: TFLM's outputs against LiteRT's on samples.
- `analyze_micro`: all of the above as one JSON-serialisable dict.

The arena is measured by TFLM's interpreter on this (64-bit) host with the
recording allocator; a 32-bit microcontroller, with smaller pointers in the
interpreter's bookkeeping, should need at most as much.
"""

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

MICRO_INSTALL_HINT = 'pip install "keras-tflq[micro]"'

# Builtin ops TFLM has kernels for, as registered by its
# `MicroMutableOpResolver` (tflite-micro, 2026).
MICRO_BUILTIN_OPS = frozenset(
    """
    ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D
    BATCH_MATMUL BATCH_TO_SPACE_ND BROADCAST_ARGS BROADCAST_TO CALL_ONCE
    CAST CEIL CONCATENATION CONV_2D COS CUMSUM DEPTHWISE_CONV_2D
    DEPTH_TO_SPACE DEQUANTIZE DIV DYNAMIC_UPDATE_SLICE ELU EMBEDDING_LOOKUP
    EQUAL EXP EXPAND_DIMS FILL FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED
    GATHER GATHER_ND GREATER GREATER_EQUAL HARD_SWISH IF L2_NORMALIZATION
    L2_POOL_2D LEAKY_RELU LESS LESS_EQUAL LOG LOGICAL_AND LOGICAL_NOT
    LOGICAL_OR LOGISTIC LOG_SOFTMAX MAXIMUM MAX_POOL_2D MEAN MINIMUM
    MIRROR_PAD MUL NEG NOT_EQUAL PACK PAD PADV2 PRELU QUANTIZE READ_VARIABLE
    REDUCE_ALL REDUCE_MAX REDUCE_MIN RELU RELU6 RESHAPE RESIZE_BILINEAR
    RESIZE_NEAREST_NEIGHBOR REVERSE_V2 ROUND RSQRT SELECT_V2 SHAPE SIN SLICE
    SOFTMAX SPACE_TO_BATCH_ND SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE
    SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM SVDF TANH TRANSPOSE
    TRANSPOSE_CONV UNIDIRECTIONAL_SEQUENCE_LSTM UNPACK VAR_HANDLE WHILE
    ZEROS_LIKE
    """.split()
)

# Resolver methods whose name is not the op name in CamelCase.
_METHOD_EXCEPTIONS = {
    "BATCH_MATMUL": "AddBatchMatMul",
    "CUMSUM": "AddCumSum",
    "PADV2": "AddPadV2",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    # A custom op TFLM registers under its own method.
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
}

_FIRST_ARENA = 4096
_MAX_ARENA = 1 << 30
_AGREEMENT_ORDER = ("exact", "within one quantization step", "float rounding")
# Float kernels differ between LiteRT (XNNPACK) and TFLM (reference) only
# in the order of operations: a few units in the last place.
_FLOAT_RTOL = 1e-5
_TFLM_NODE = re.compile(r"Node (\w+) \(number (\d+)\)")
_TFLM_MISSING = re.compile(r"Didn't find op for builtin opcode '(\w+)'")


class MicroError(ValueError):
    """The artifact cannot run on TensorFlow Lite Micro as it is.

    The message names the op (and the Keras layer it came from, when the
    artifact's tensor names carry it) and TFLM's own diagnostic.
    """


def tflite_micro_runtime():
    """Imports and returns `tflite_micro`'s Python runtime module.

    Raises:
        ImportError: `tflite-micro` is not installed; the message names the
            `micro` extra that installs it.
    """
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as error:
        raise ImportError(
            "The micro target needs TensorFlow Lite Micro's Python "
            f"interpreter: {MICRO_INSTALL_HINT} (or pip install "
            f"tflite-micro). ({error})"
        ) from None
    return runtime


def resolver_method(op_name):
    """The `MicroMutableOpResolver` method that registers `op_name`.

    Example:

    >>> resolver_method("CONV_2D")
    'AddConv2D'
    """
    if op_name in _METHOD_EXCEPTIONS:
        return _METHOD_EXCEPTIONS[op_name]
    parts = re.split(r"[_-]", op_name)
    return "Add" + "".join(
        p.upper() if p[:1].isdigit() else p[:1].upper() + p[1:].lower()
        for p in parts
        if p
    )


def micro_ops(content):
    """Lists the ops of a TFLite artifact, as TFLM sees them.

    The flatbuffer is read with TFLM's own schema, so an artifact that
    LiteRT cannot load (a custom op, say) is still described.

    Args:
        content: The bytes of a TFLite flatbuffer.

    Returns:
        A list of one dict per op of every subgraph, in execution order:
        `op` (the builtin name, or the custom code), `subgraph`, `index`,
        `outputs` (the output tensor names, which carry the Keras layer
        names) and `in_micro` (`True` when TFLM has a kernel for it).
    """
    model = _parse(content)
    names = _builtin_names()
    ops = []
    for subgraph_index, subgraph in enumerate(model.subgraphs):
        for index, operator in enumerate(subgraph.operators or []):
            code = model.operatorCodes[operator.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            if code.customCode:
                name = _text(code.customCode)
            else:
                name = names.get(builtin, f"BUILTIN_{builtin}")
            outputs = [
                _text(subgraph.tensors[i].name)
                for i in (
                    operator.outputs if operator.outputs is not None else []
                )
                if i >= 0
            ]
            ops.append(
                {
                    "op": name,
                    "subgraph": subgraph_index,
                    "index": index,
                    "outputs": outputs,
                    "in_micro": name in MICRO_BUILTIN_OPS
                    or name in _METHOD_EXCEPTIONS,
                }
            )
    return ops


def resolver_ops(content):
    """The resolver methods an artifact needs, one per op, sorted by op name.

    Example:

    ```python
    import keras, tensorflow as tf
    from keras_tflq.runtime.micro import resolver_ops

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    assert resolver_ops(content) == ["AddFullyConnected"]
    ```
    """
    return [
        resolver_method(op)
        for op in sorted({o["op"] for o in micro_ops(content)})
    ]


def check_micro_ops(content, layer_names=None):
    """Checks that every op of an artifact resolves and prepares in TFLM.

    The artifact is loaded by TFLM's interpreter (all of TFLM's kernels
    registered) with a generous arena: that resolves every op and runs
    every kernel's `Prepare`, which refuses tensor types TFLM has no kernel
    for (a float16 `DEQUANTIZE`, a hybrid `FULLY_CONNECTED`).

    Args:
        content: The bytes of a TFLite flatbuffer.
        layer_names: The names of the Keras model's layers, to name the
            layer an op came from. Defaults to `None` (tensor names only).

    Returns:
        The resolver method names (see `resolver_ops`).

    Raises:
        MicroError: An op has no TFLM kernel, or TFLM cannot prepare it;
            the message names the op and its Keras layer.
    """
    with _ArenaProbe(content) as probe:
        return _check_ops(content, layer_names, probe)


def _check_ops(content, layer_names, probe):
    ops = micro_ops(content)
    missing = [op for op in ops if not op["in_micro"]]
    loaded, diagnostic = probe(_check_arena(content))
    if loaded:
        return [resolver_method(op) for op in sorted({o["op"] for o in ops})]
    tflm_missing = _TFLM_MISSING.findall(diagnostic)
    missing += [
        op for op in ops if op["op"] in tflm_missing and op not in missing
    ]
    if missing:
        described = "; ".join(
            _describe_op(op, layer_names) for op in _unique_ops(missing)
        )
        raise MicroError(
            "Expected every op of the artifact to have a TensorFlow Lite Micro "
            f"kernel. Received: {described}, which TFLM does not have. "
            "Replace the layer with one built from supported ops, or export "
            'with target="litert".'
        )
    node = _TFLM_NODE.search(diagnostic)
    where = ""
    if node:
        op = next(
            (
                o
                for o in ops
                if o["subgraph"] == 0 and o["index"] == int(node[2])
            ),
            None,
        )
        where = (
            f"{_describe_op(op, layer_names)}: " if op else f"op {node[1]}: "
        )
    raise MicroError(
        "Expected TensorFlow Lite Micro to prepare every op of the artifact. "
        f"Received: {where}{_first_lines(diagnostic)}"
    )


def smallest_arena(content, upper=None):
    """The smallest tensor arena, in bytes, in which TFLM allocates the model.

    Found without guessing: the arena is doubled from 4 KiB until TFLM
    allocates the model in it, then the size is bisected down to the byte
    (allocation succeeds for every size above the smallest). Each trial
    runs in a helper process: TFLM can crash, not just fail, when an arena
    is far too small.

    Args:
        content: The bytes of a TFLite flatbuffer that TFLM can run (see
            `check_micro_ops`).
        upper: An arena size known to allocate, to start the bisection
            from. Defaults to `None` (found by doubling).

    Returns:
        The smallest arena size, an int.

    Raises:
        MicroError: Not even a 1 GiB arena allocates the model.
    """
    with _ArenaProbe(content) as probe:
        return _bisect_arena(probe, upper)


def _bisect_arena(probe, upper=None):
    low = 0
    high = upper or _FIRST_ARENA
    while not probe(high)[0]:
        if high >= _MAX_ARENA:
            raise MicroError(
                "Expected the model to allocate in a tensor arena of at "
                f"most {_MAX_ARENA} bytes. Received: TFLM could not "
                "allocate it"
            )
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if probe(middle)[0]:
            high = middle
        else:
            low = middle
    return high


def allocates(content, arena_size):
    """Whether TFLM allocates the model in an arena of `arena_size` bytes.

    Tried in a helper process, so an arena small enough to crash TFLM
    answers `False` instead of ending this process.

    Example:

    ```python
    import keras, tensorflow as tf
    from keras_tflq.runtime.micro import allocates, smallest_arena

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    arena = smallest_arena(content)
    assert allocates(content, arena) and not allocates(content, arena - 1)
    ```
    """
    with _ArenaProbe(content) as probe:
        return probe(arena_size)[0]


class MicroModel:
    """A TFLite artifact loaded in TFLM's interpreter, run one sample at a time.

    Inputs and outputs are raw arrays of the artifact's tensor types (an
    int8 model takes and returns int8 arrays): this class compares
    runtimes, it does not quantize.

    Args:
        content: The bytes of a TFLite flatbuffer.
        arena_size: The tensor arena in bytes, one that allocates (TFLM
            may crash in an arena far too small: check with `allocates`).
            Defaults to `None` (`smallest_arena(content)`).

    Example:

    ```python
    import keras, numpy as np, tensorflow as tf
    from keras_tflq.runtime.micro import MicroModel

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    (y,) = MicroModel(content).run([np.ones((1, 4), np.float32)])
    assert y.shape == (1, 3)
    ```
    """

    def __init__(self, content, arena_size=None):
        self.arena_size = arena_size or smallest_arena(content)
        self._content = bytes(content)
        interpreter, diagnostic = _try_load(self._content, self.arena_size)
        if interpreter is None:
            raise MicroError(
                f"Expected TFLM to allocate the model in {self.arena_size} "
                f"bytes. Received: {_first_lines(diagnostic)}"
            )
        self._interpreter = interpreter
        model = _parse(self._content)
        self.num_inputs = len(model.subgraphs[0].inputs)
        self.num_outputs = len(model.subgraphs[0].outputs)

    def input_details(self, index):
        """TFLM's `dtype`, `shape` and `quantization_parameters` of an input."""
        return self._interpreter.get_input_details(index)

    def run(self, inputs):
        """Runs one sample: `inputs` in the artifact's input order, batch 1.

        Returns:
            The list of output arrays, in the artifact's output order.
        """
        self._interpreter.reset()
        for index, array in enumerate(inputs):
            details = self._interpreter.get_input_details(index)
            self._interpreter.set_input(
                np.asarray(array, dtype=details["dtype"]).reshape(
                    details["shape"]
                ),
                index,
            )
        with _captured_stderr() as read:
            try:
                self._interpreter.invoke()
            except RuntimeError as error:
                raise MicroError(
                    f"Expected TFLM to run the model. Received: {error}: "
                    f"{_first_lines(read())}"
                ) from None
        return [
            np.array(self._interpreter.get_output(i))
            for i in range(self.num_outputs)
        ]


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
            _to_tensor_type(x, d)
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


def analyze_micro(content, samples=None, layer_names=None):
    """Everything a firmware needs to know about an artifact, checked in TFLM.

    Args:
        content: The bytes of a TFLite flatbuffer.
        samples: Samples for the LiteRT comparison, each a list of arrays
            of batch 1 in the artifact's input order. Defaults to `None`
            (32 reproducible random samples).
        layer_names: The Keras model's layer names, for error messages.
            Defaults to `None`.

    Returns:
        A JSON-serialisable dict: `ops` (the `MicroMutableOpResolver`
        methods, sorted), `op_counts`, `arena_bytes` (the smallest arena
        that allocates), `flash_bytes` (the model array a firmware keeps in
        flash; kernel code not included), `litert_agreement` (see
        `compare_with_litert`; its `source` says where the samples came
        from) and the `tflite_micro` version.

    Raises:
        MicroError: TFLM cannot run the artifact, or its outputs differ
            from LiteRT's by more than one quantization step.
    """
    with _ArenaProbe(content) as probe:
        ops = _check_ops(content, layer_names, probe)
        arena = _bisect_arena(probe)
    source = "data"
    if samples is None:
        samples, source = random_samples(content), "random"
    agreement = compare_with_litert(content, samples, arena)
    counts = {}
    for op in micro_ops(content):
        counts[op["op"]] = counts.get(op["op"], 0) + 1
    return {
        "ops": ops,
        "op_counts": dict(sorted(counts.items())),
        "arena_bytes": arena,
        "flash_bytes": len(content),
        "litert_agreement": {"source": source, **agreement},
        "tflite_micro": _version(),
    }


# ------------------------------------------------------------------ helpers


def _parse(content):
    runtime = tflite_micro_runtime()
    return runtime.convert_bytearray_to_object(bytearray(content))


def _builtin_names():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

    operators = schema_py_generated.BuiltinOperator
    return {
        value: name
        for name, value in vars(operators).items()
        if not name.startswith("_") and isinstance(value, int)
    }


def _text(value):
    return (
        value.decode("utf-8", "replace")
        if isinstance(value, bytes)
        else str(value)
    )


def _check_arena(content):
    return max(64 << 20, 16 * len(content))


def _try_load(content, arena_size):
    """`(interpreter, "")`, or `(None, TFLM's diagnostic)` if it fails."""
    runtime = tflite_micro_runtime()
    with _captured_stderr() as read:
        try:
            return runtime.Interpreter.from_bytes(
                bytes(content), arena_size=int(arena_size)
            ), ""
        except RuntimeError as error:
            return None, f"{read().strip()}\n{error}".strip()


# Runs in the helper process: loads the model once, then answers one line
# of JSON per arena size read from stdin.
_PROBE_WORKER = """
import json, os, sys, tempfile
from tflite_micro.python.tflite_micro import runtime
data = open(sys.argv[1], "rb").read()
for line in sys.stdin:
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            runtime.Interpreter.from_bytes(data, arena_size=int(line))
            ok, error = True, ""
        except RuntimeError as e:
            ok, error = False, str(e)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode("utf-8", "replace")
    print(json.dumps([ok, (text + chr(10) + error).strip()]), flush=True)
"""


class _ArenaProbe:
    """Tries arena sizes in a helper process, restarted if TFLM crashes it.

    Called with a size, returns `(allocates, TFLM's diagnostic)`; a crash
    counts as not allocating.
    """

    def __init__(self, content):
        tflite_micro_runtime()
        fd, self._path = tempfile.mkstemp(suffix=".tflite")
        with os.fdopen(fd, "wb") as handle:
            handle.write(bytes(content))
        self._process = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._stop()
        os.remove(self._path)

    def __call__(self, arena_size):
        if self._process is None:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _PROBE_WORKER, self._path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        try:
            self._process.stdin.write(f"{int(arena_size)}\n")
            self._process.stdin.flush()
            line = self._process.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            code = self._process.wait()
            self._process = None
            return False, f"TFLM crashed (exit status {code})"
        ok, diagnostic = json.loads(line)
        return ok, diagnostic

    def _stop(self):
        if self._process is not None:
            self._process.stdin.close()
            self._process.wait()
            self._process = None


@contextlib.contextmanager
def _captured_stderr():
    """Sends the process' stderr (where TFLM prints) to a file while inside.

    Yields a function returning what was written so far.
    """
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)

        def read():
            os.fsync(capture.fileno())
            capture.seek(0)
            return capture.read().decode("utf-8", "replace")

        try:
            yield read
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _unique_ops(ops):
    seen = {}
    for op in ops:
        seen.setdefault(op["op"], op)
    return list(seen.values())


def _describe_op(op, layer_names):
    text = f"op {op['op']}"
    layer = _layer_of(op["outputs"], layer_names)
    if layer:
        text += f" of layer {layer!r}"
    elif op["outputs"]:
        text += f" (output tensor {op['outputs'][0].split(';')[0]!r})"
    return text


def _layer_of(tensor_names, layer_names):
    """The Keras layer whose name scope appears in the op's output names."""
    for layer in layer_names or ():
        pattern = re.compile(rf"(^|/){re.escape(layer)}(_\d+)?/")
        for name in tensor_names:
            if any(pattern.search(part) for part in name.split(";")):
                return layer
    return None


def _first_lines(text, count=4):
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[:count]) or "no diagnostic"


def _output_steps(content):
    """Per graph output: the scale of the quantized tensor a final
    `DEQUANTIZE` reads, else `None`."""
    model = _parse(content)
    subgraph = model.subgraphs[0]
    names = _builtin_names()
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


def _to_tensor_type(array, details):
    array = np.asarray(array)
    dtype = np.dtype(details["dtype"])
    if array.dtype == dtype:
        return array
    scales = details["quantization_parameters"]["scales"]
    if dtype.kind in "iu" and array.dtype.kind == "f" and len(scales):
        zero_point = details["quantization_parameters"]["zero_points"][0]
        info = np.iinfo(dtype)
        quantized = np.round(array / scales[0] + zero_point)
        return np.clip(quantized, info.min, info.max).astype(dtype)
    return array.astype(dtype)


def _version():
    import tflite_micro

    return getattr(tflite_micro, "__version__", "unknown")
