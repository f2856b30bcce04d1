"""Post-conversion fixes for quantization-aware 16x8 artifacts: int64
convolution biases, and the fixed output grid of int16 LOGISTIC and TANH."""

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils


def widen_int16x8_conv_bias(content):
    """Returns the 16x8 artifact with its int32 convolution biases made int64.

    Measured on TF 2.21: converting a quantization-aware model in 16x8 mode
    gives CONV_2D, DEPTHWISE_CONV_2D and TRANSPOSE_CONV an int32 bias, but
    LiteRT's int16 kernels read an int64 bias (DEPTHWISE_CONV_2D refuses to
    prepare; CONV_2D reads past the buffer). Widening the bias with the same
    scale fixes both; post-training 16x8 conversion already emits int64.

    Args:
        content: The bytes of a TFLite flatbuffer.

    Returns:
        The fixed flatbuffer bytes (unchanged when there is nothing to fix).

    Example:

    ```python
    import keras, tensorflow as tf
    import keras_tflq as tflq

    model = tflq.quantize_model(
        keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3)]),
        activation_bits=16,
    )
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
    ]
    content = tflq.widen_int16x8_conv_bias(converter.convert())
    ```
    """
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    bias_slots = {
        schema.BuiltinOperator.CONV_2D: 2,
        schema.BuiltinOperator.DEPTHWISE_CONV_2D: 2,
        schema.BuiltinOperator.TRANSPOSE_CONV: 3,
    }
    changed = False
    for subgraph, op, builtin in _operators(model, bias_slots):
        slot = bias_slots[builtin]
        if len(op.inputs) <= slot or op.inputs[slot] < 0:
            continue
        activations = subgraph.tensors[op.inputs[0]]
        bias = subgraph.tensors[op.inputs[slot]]
        if (
            activations.type != schema.TensorType.INT16
            or bias.type != schema.TensorType.INT32
        ):
            continue
        buffer = model.buffers[bias.buffer]
        values = np.frombuffer(bytes(buffer.data), dtype="<i4")
        buffer.data = np.frombuffer(
            values.astype("<i8").tobytes(), dtype=np.uint8
        )
        bias.type = schema.TensorType.INT64
        changed = True
    if not changed:
        return content
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


# TFLite's int16 LOGISTIC and TANH kernels write their output with scale
# 1/32768 and zero point 0, and refuse to prepare with other parameters.
_FIXED_INT16_OUTPUT = (1.0 / 32768.0, 0)


def fix_int16x8_fixed_range_outputs(content):
    """Returns the 16x8 artifact with its int16 LOGISTIC and TANH outputs on
    the grid their kernels write (scale 1/32768, zero point 0).

    Measured on TF 2.21: converting a quantization-aware model in 16x8 mode
    gives an int16 LOGISTIC output scale 2^-16 and zero point -32768, even
    after a fake quantization on the kernel's grid (it then adds a
    requantization to that grid), so LiteRT refuses to prepare the op
    ("output->params.scale == 1. / 32768 was not true"). The kernel's
    output is on the 1/32768 grid whatever its tensor says. Where the
    output feeds only QUANTIZE ops (the requantization the converter adds
    after a fake quantization; the default scheme fake-quantizes 16-bit
    sigmoid and tanh outputs on that grid), giving the tensor that grid
    makes those ops read the values the kernel writes (a QUANTIZE that
    then writes the same grid is removed). Any other consumer
    was built for the wrong scale (a FULLY_CONNECTED's bias holds it), so
    such an op is left as it is. Post-training 16x8 conversion already
    emits the right grid.

    Args:
        content: The bytes of a TFLite flatbuffer.

    Returns:
        The fixed flatbuffer bytes (unchanged when there is nothing to fix).
    """
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    fixed_range_ops = (
        schema.BuiltinOperator.LOGISTIC,
        schema.BuiltinOperator.TANH,
    )
    scale, zero_point = _FIXED_INT16_OUTPUT
    requantizations = _requantization_inputs(model)
    changed = False
    for subgraph, op, _ in _operators(model, fixed_range_ops):
        output = subgraph.tensors[op.outputs[0]]
        params = output.quantization
        if (
            output.type != schema.TensorType.INT16
            or not requantizations[id(subgraph)].get(op.outputs[0], False)
            or params is None
            or params.scale is None
            or len(params.scale) != 1
        ):
            continue
        if (
            float(params.scale[0]) == scale
            and int(params.zeroPoint[0]) == zero_point
        ):
            continue
        params.scale = [scale]
        params.zeroPoint = [zero_point]
        params.min = None
        params.max = None
        _drop_identity_requantizations(model, subgraph, op.outputs[0])
        changed = True
    if not changed:
        return content
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _same_grid(first, second):
    """Whether two tensors have the same type and per-tensor grid."""
    a, b = first.quantization, second.quantization
    return (
        first.type == second.type
        and a is not None
        and b is not None
        and list(a.scale) == list(b.scale)
        and list(a.zeroPoint) == list(b.zeroPoint)
    )


def _drop_identity_requantizations(model, subgraph, index):
    """Removes the QUANTIZE ops reading tensor `index` that now write the
    same grid (not a graph output): their readers read `index` instead."""
    quantize = schema.BuiltinOperator.QUANTIZE
    builtin_of_opcode = _builtin_codes(model)
    kept = []
    for op in subgraph.operators:
        output = op.outputs[0]
        if (
            builtin_of_opcode[op.opcodeIndex] == quantize
            and op.inputs[0] == index
            and output not in subgraph.outputs
            and _same_grid(subgraph.tensors[index], subgraph.tensors[output])
        ):
            for reader in subgraph.operators:
                reader.inputs = [
                    index if i == output else i for i in reader.inputs
                ]
            continue
        kept.append(op)
    subgraph.operators = kept


def _requantization_inputs(model):
    """Per subgraph (by id), `{tensor index: whether every operator reading
    it is a QUANTIZE}`."""
    quantize = schema.BuiltinOperator.QUANTIZE
    builtin_of_opcode = _builtin_codes(model)
    found = {}
    for subgraph in model.subgraphs:
        readers = {}
        for op in subgraph.operators:
            is_quantize = builtin_of_opcode[op.opcodeIndex] == quantize
            for index in op.inputs:
                readers[index] = readers.get(index, True) and is_quantize
        for index in subgraph.outputs:
            readers[index] = False
        found[id(subgraph)] = readers
    return found


def _builtin_codes(model):
    """The builtin operator code of each of `model`'s operator codes."""
    return [
        max(code.builtinCode, code.deprecatedBuiltinCode)
        for code in model.operatorCodes
    ]


def _operators(model, builtins):
    """`(subgraph, operator, builtin code)` of `model`'s operators whose
    builtin code is in `builtins`."""
    builtin_of_opcode = _builtin_codes(model)
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            builtin = builtin_of_opcode[op.opcodeIndex]
            if builtin in builtins:
                yield subgraph, op, builtin
