"""Post-conversion fix for int8 fused LSTMs: one grid for the hidden state."""

from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

# UNIDIRECTIONAL_SEQUENCE_LSTM's operand slots (TFLite's lstm_shared.h).
_PROJECTION_WEIGHTS = 16
_OUTPUT_STATE = 18
_HIDDEN_INTERMEDIATE = 4


def align_lstm_hidden_state(content):
    """Returns the artifact with each int8 fused LSTM's `h` on one grid.

    TFLite's int8 `UNIDIRECTIONAL_SEQUENCE_LSTM` kernel computes the new
    hidden state `h` once, as int8 on the grid of its hidden intermediate
    tensor, and copies those integers into its output-state variable (read
    back as the next step's recurrent input) and into its output. It never
    rescales between the three, so their scales and zero points must be
    equal; the converter calibrates them separately, and a `CONCATENATION`
    (such as a `Bidirectional` wrapper's) imposes its own range on the
    output. Measured on TF 2.21 (a `Bidirectional(LSTM(16))` on digits):
    scales up to 0.25 % apart and zero points 0 and -1, so each step
    reads `h` a grid step off, and the error grows along the sequence.
    This gives the output state and the hidden intermediate the output's
    scale and zero point, the grid the rest of the graph reads `h` on.
    With a projection, only the output state takes it (the hidden
    intermediate is then the projection's input).

    Args:
        content: The bytes of a TFLite flatbuffer.

    Returns:
        The fixed flatbuffer bytes (unchanged when there is nothing to fix).

    Example:

    ```python
    import contextlib
    import keras, numpy as np
    from keras_tflq.conversion.lstm_state import align_lstm_hidden_state
    from keras_tflq.conversion.modes import configure_converter
    from keras_tflq.conversion.sequence_export import sequence_converter

    model = keras.Sequential(
        [keras.Input((3, 2)), keras.layers.LSTM(2), keras.layers.Dense(2)])
    data = np.random.rand(8, 3, 2).astype("float32")
    with contextlib.ExitStack() as stack:  # the converter, by hand
        converter, _ = sequence_converter(model, stack)
        configure_converter(
            converter, "int8",
            representative_dataset=lambda: ([x[None]] for x in data))
        content = align_lstm_hidden_state(converter.convert())
    ```
    """
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    fused = {
        index
        for index, code in enumerate(model.operatorCodes)
        if max(code.builtinCode, code.deprecatedBuiltinCode)
        == schema.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM
    }
    changed = False
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            if op.opcodeIndex not in fused or len(op.inputs) <= _OUTPUT_STATE:
                continue
            output = subgraph.tensors[op.outputs[0]]
            if output.type != schema.TensorType.INT8 or not _quantized(output):
                continue
            targets = [op.inputs[_OUTPUT_STATE]]
            intermediates = list(
                [] if op.intermediates is None else op.intermediates
            )
            projected = op.inputs[_PROJECTION_WEIGHTS] >= 0
            if not projected and len(intermediates) > _HIDDEN_INTERMEDIATE:
                targets.append(intermediates[_HIDDEN_INTERMEDIATE])
            for index in targets:
                changed |= _take_grid(subgraph.tensors[index], output)
    if not changed:
        return content
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _quantized(tensor):
    quantization = tensor.quantization
    return (
        quantization is not None
        and quantization.scale is not None
        and len(quantization.scale) == 1
    )


def _take_grid(tensor, source):
    """Gives `tensor` the scale and zero point of `source`; whether it
    changed."""
    if tensor.type != schema.TensorType.INT8 or not _quantized(tensor):
        return False
    scale = [float(s) for s in source.quantization.scale]
    zero_point = [int(z) for z in source.quantization.zeroPoint]
    quantization = tensor.quantization
    if [float(s) for s in quantization.scale] == scale and [
        int(z) for z in quantization.zeroPoint
    ] == zero_point:
        return False
    quantization.scale = scale
    quantization.zeroPoint = zero_point
    quantization.min = None
    quantization.max = None
    return True
