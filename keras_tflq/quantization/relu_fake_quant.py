"""A ReLU layer and the fake quant of its output, as one op in training.

A quantized ReLU's output range starts at 0 and ends at or below the ReLU's
cap (6 for ReLU6), and fake quantization clamps to its range. So in a
training step `fake_quant(relu(x), 0, m)` is `fake_quant(x, 0, m)`: the ReLU
and its gradient need not run (TFLite fuses the ReLU into the op before it
the same way), and the batch range is the ReLU of the input's maximum. The
outputs and the stored range are those of the ReLU followed by the
quantizer; the input gradient is too, but at inputs exactly on the range's
ends (0, the cap), where the ReLU's gradient is 0 and the fake quant's 1.

The traced inference graph (which the converter reads) keeps the ReLU.
"""

import math

import keras
from keras import ops

from keras_tflq.quantization import replicas
from keras_tflq.quantization import schedule_state
from keras_tflq.quantization.fake_quant import fake_quant
from keras_tflq.quantization.quantizers import MovingAverageQuantizer


def relu_cap(layer):
    """The cap of a plain ReLU layer (`math.inf` when uncapped), or `None`
    when `layer` is not a `ReLU` (no slope, no threshold) or an
    `Activation` of `relu` or `relu6`.

    Example:

    >>> relu_cap(keras.layers.ReLU(6.0))
    6.0
    """
    if isinstance(layer, keras.layers.ReLU):
        if layer.negative_slope or layer.threshold:
            return None
        if layer.max_value is None:
            return math.inf
        return float(layer.max_value)
    if isinstance(layer, keras.layers.Activation):
        if layer.activation is keras.activations.relu:
            return math.inf
        if layer.activation is keras.activations.relu6:
            return 6.0
    return None


def _fusable(wrapper, inputs):
    if len(wrapper._output_entries) != 1:
        return False
    quantizer, _ = wrapper._output_entries[0]
    return (
        keras.backend.backend() == "tensorflow"
        and type(quantizer) is MovingAverageQuantizer
        and not quantizer.per_axis
        and not quantizer.symmetric
        and relu_cap(wrapper.layer) is not None
        and not keras.backend.is_keras_tensor(inputs)
        and ops.convert_to_tensor(inputs).dtype == "float32"
        and not replicas.is_multi_replica()
        and schedule_state.flag(wrapper, schedule_state.RANGES_FROZEN)
        is False
        and schedule_state.flag(wrapper, schedule_state.QUANTIZE_ENABLED)
        is True
    )


def fused_training_call(wrapper, inputs):
    """The training output of `wrapper` (a `QuantizeWrapper`) on `inputs`
    with its ReLU folded into the output fake quant, or `None` when the
    wrapper is not a plain ReLU whose one output quantizer is the default
    `MovingAverageQuantizer` (asymmetric, one range), updating its range
    in this step, enabled, on one replica, in float32.

    Example:

    >>> from keras_tflq.quantization.default_scheme import registry
    >>> from keras_tflq.quantization.quantize_wrapper import QuantizeWrapper
    >>> relu = keras.layers.ReLU(6.0)
    >>> wrapper = QuantizeWrapper(relu, registry.default_config(relu))
    >>> y = wrapper(ops.ones((2, 3)), training=True)
    """
    if not _fusable(wrapper, inputs):
        return None
    quantizer, weights = wrapper._output_entries[0]
    x = ops.convert_to_tensor(inputs)
    # max(relu(x)) clipped to the cap, at least 1e-6 as `_batch_range`.
    batch_max = ops.max(ops.stop_gradient(x))
    cap = relu_cap(wrapper.layer)
    if cap != math.inf:
        batch_max = ops.minimum(batch_max, cap)
    batch_max = ops.maximum(batch_max, 1e-6)
    range_min, range_max = quantizer.update_range(0.0, batch_max, weights)
    return fake_quant(
        x,
        range_min,
        range_max,
        num_bits=quantizer.num_bits,
        narrow_range=quantizer.narrow_range,
        axis=None,
        training=True,
    )
