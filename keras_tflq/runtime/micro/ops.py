"""Which ops an artifact has, and whether TFLM can run each of them."""

import re

from keras_tflq.runtime.micro.arena import ArenaProbe
from keras_tflq.runtime.micro.arena import generous_arena
from keras_tflq.runtime.micro.tflm import MicroError
from keras_tflq.runtime.micro.tflm import builtin_names
from keras_tflq.runtime.micro.tflm import first_lines
from keras_tflq.runtime.micro.tflm import parse_model
from keras_tflq.runtime.micro.tflm import text_of

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

_TFLM_NODE = re.compile(r"Node (\w+) \(number (\d+)\)")
_TFLM_MISSING = re.compile(r"Didn't find op for builtin opcode '(\w+)'")


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
    model = parse_model(content)
    names = builtin_names()
    ops = []
    for subgraph_index, subgraph in enumerate(model.subgraphs):
        for index, operator in enumerate(subgraph.operators or []):
            code = model.operatorCodes[operator.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            if code.customCode:
                name = text_of(code.customCode)
            else:
                name = names.get(builtin, f"BUILTIN_{builtin}")
            outputs = [
                text_of(subgraph.tensors[i].name)
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
    with ArenaProbe(content) as probe:
        return check_ops(content, layer_names, probe)


def check_ops(content, layer_names, probe):
    """`check_micro_ops` with an open `ArenaProbe`."""
    ops = micro_ops(content)
    missing = [op for op in ops if not op["in_micro"]]
    loaded, diagnostic = probe(generous_arena(content))
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
        f"Received: {where}{first_lines(diagnostic)}"
    )


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
