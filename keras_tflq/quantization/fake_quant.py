"""`fake_quant`: Keras' fake quantization, without needless transposes."""

import math

import keras
from keras import ops


def _scalar(value):
    return ops.reshape(value, ()) if len(value.shape) else value


def fake_quant(inputs, range_min, range_max, num_bits, narrow_range, axis):
    """`keras.quantizers.fake_quant_with_min_max_vars`, with the TensorFlow
    op called directly when Keras would only add reshapes or transposes."""
    if keras.backend.backend() == "tensorflow" and not (
        keras.backend.is_keras_tensor(inputs)
    ):
        import tensorflow as tf

        x = ops.convert_to_tensor(inputs)
        shape = tuple(x.shape)
        if axis is not None and None not in shape:
            axis %= len(shape)
            if axis < len(shape) - 1 and math.prod(shape[axis + 1 :]) == 1:
                # Only 1s after the channels (a depthwise kernel): moving
                # the channel axis last is a reshape, not a transpose.
                moved = shape[:axis] + shape[axis + 1 :] + (shape[axis],)
                outputs = fake_quant(
                    ops.reshape(x, moved),
                    range_min,
                    range_max,
                    num_bits,
                    narrow_range,
                    axis=-1,
                )
                return ops.reshape(outputs, shape)
        if x.dtype == tf.float32 and (
            axis is None or axis % len(x.shape) == len(x.shape) - 1
        ):
            range_min = ops.convert_to_tensor(range_min)
            range_max = ops.convert_to_tensor(range_max)
            if axis is None:
                return tf.quantization.fake_quant_with_min_max_vars(
                    x,
                    _scalar(range_min),
                    _scalar(range_max),
                    num_bits=num_bits,
                    narrow_range=narrow_range,
                )
            return tf.quantization.fake_quant_with_min_max_vars_per_channel(
                x,
                range_min,
                range_max,
                num_bits=num_bits,
                narrow_range=narrow_range,
            )
    return keras.quantizers.fake_quant_with_min_max_vars(
        inputs,
        range_min,
        range_max,
        num_bits=num_bits,
        narrow_range=narrow_range,
        axis=axis,
    )
