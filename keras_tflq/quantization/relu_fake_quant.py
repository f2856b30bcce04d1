"""A ReLU layer and the fake quant of its output, as one op in training.

A quantized ReLU's output range starts at 0 and ends at or below the ReLU's
cap (6 for ReLU6), and fake quantization clamps to its range. So in a
training step `fake_quant(relu(x), 0, m)` is `fake_quant(x, 0, m)`: the ReLU
and its gradient need not run (TFLite fuses the ReLU into the op before it
the same way), and the batch range is the ReLU of the input's maximum. The
outputs and the stored range are those of the ReLU followed by the
quantizer; the input gradient is too, but for inputs within a rounding
error of the range's upper end.

The traced inference graph (which the converter reads) keeps the ReLU.
"""

import math

import keras
from keras import ops

from keras_tflq.quantization import schedule_state
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


def _fusable(wrapper, x):
    # One output quantizer and nothing else to quantize (a config may also
    # quantize an `Activation` layer's function).
    if (
        len(wrapper._output_entries) != 1
        or wrapper._activations
        or wrapper._weight_entries
    ):
        return False
    quantizer, _ = wrapper._output_entries[0]
    return (
        type(quantizer) is MovingAverageQuantizer
        and not quantizer.per_axis
        and not quantizer.symmetric
        and x.dtype == "float32"
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
    in this step, enabled, in float32.

    Example:

    >>> from keras_tflq.quantization.default_scheme import registry
    >>> from keras_tflq.quantization.quantize_wrapper import QuantizeWrapper
    >>> relu = keras.layers.ReLU(6.0)
    >>> wrapper = QuantizeWrapper(relu, registry.default_config(relu))
    >>> y = wrapper(ops.ones((2, 3)), training=True)
    """
    cap = relu_cap(wrapper.layer)
    if (
        cap is None
        or keras.backend.backend() != "tensorflow"
        or keras.backend.is_keras_tensor(inputs)
    ):
        return None
    x = ops.convert_to_tensor(inputs)
    if not _fusable(wrapper, x):
        return None
    quantizer, weights = wrapper._output_entries[0]
    # max(relu(x)) clipped to the cap, at least 1e-6 as `_batch_range`.
    batch_max = ops.max(ops.stop_gradient(x))
    if cap != math.inf:
        batch_max = ops.minimum(batch_max, cap)
    batch_max = ops.maximum(batch_max, 1e-6)
    _, range_max = quantizer.update_range(0.0, batch_max, weights)
    return _fake_quant_from_zero(
        x, range_max, quantizer.num_bits, quantizer.narrow_range
    )


def _fake_quant_from_zero(x, range_max, num_bits, narrow_range):
    """TensorFlow's fake quant of `x` on `[0, range_max]`, with the input
    gradient of a ReLU6 scaled to the nudged range (`0 < x < max`): one
    pass where TensorFlow's gradient op takes three (it also reduces the
    range's gradients, which a range that is a statistic never uses)."""
    import tensorflow as tf

    range_max = tf.reshape(range_max, ())
    steps = float((1 << num_bits) - 1 - int(narrow_range))

    @tf.custom_gradient
    def quantize(x):
        outputs = tf.quantization.fake_quant_with_min_max_vars(
            x, 0.0, range_max, num_bits=num_bits, narrow_range=narrow_range
        )

        def grad(upstream):
            # A range from 0 nudges to [0, steps * scale].
            nudged_max = steps * (range_max / steps)
            return tf.raw_ops.Relu6Grad(
                gradients=upstream, features=x * (6.0 / nudged_max)
            )

        return outputs, grad

    return quantize(x)
