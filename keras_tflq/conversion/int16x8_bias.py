"""Post-conversion fix for quantization-aware 16x8 artifacts: int64 convolution
biases."""

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
    slot_of_opcode = {
        index: bias_slots.get(max(code.builtinCode, code.deprecatedBuiltinCode))
        for index, code in enumerate(model.operatorCodes)
    }
    changed = False
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            slot = slot_of_opcode[op.opcodeIndex]
            if slot is None or len(op.inputs) <= slot or op.inputs[slot] < 0:
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
