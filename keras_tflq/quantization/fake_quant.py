"""`fake_quant`: Keras' fake quantization, without needless transposes."""

import math

import keras
from keras import ops

# From this many elements up, a per-channel training fake quant runs as
# element-wise ops. Below it TensorFlow's kernel is faster: the element-wise
# ops cost ~50 us per step whatever the size, and TensorFlow's per-channel
# loop is short. Measured on 2 Xeon vCPUs, 1 thread (forward + gradient):
# TensorFlow 36 us vs 127 us on a 3x3x16x32 kernel (4,608 elements),
# 72 us vs 53 us on 1x1x32x192 (6,144), 2,727 us vs 769 us on 1x1x160x960.
ELEMENT_WISE_FROM = 6144


def _scalar(value):
    return ops.reshape(value, ()) if len(value.shape) else value


def _per_channel_training_op(num_bits, narrow_range, symmetric, magnitudes):
    """`tf.quantization.fake_quant_with_min_max_vars_per_channel` (channels
    last) as element-wise ops, with the same values and gradients.

    TensorFlow's per-channel kernels (forward and gradient) run one small
    parallel loop per channel: on a convolution kernel they cost as much
    as the convolution. The same maths broadcast over the channels runs
    in a few element-wise passes. Training only: the traced inference
    graph keeps TensorFlow's op, which the converter reads.

    With `symmetric` and `narrow_range` the range is `[-max, max]`, whose
    nudged zero point is the middle of the grid: TensorFlow's nudging
    then gives `(2**(num_bits-1) - 1) * scale` as the nudged ends, which
    the op computes without the zero-point arithmetic. `magnitudes`
    (`|x|`, given with such a range when no value of `x` lies outside
    it) replaces the clamp, which cannot change a value then (a value a
    rounding error past the nudged end rounds to the end's grid point
    either way): the gradient's mask is `|x| <= nudged max`.
    """
    import tensorflow as tf

    quant_min = 1.0 if narrow_range else 0.0
    quant_max = float((1 << num_bits) - 1)
    steps = quant_max - quant_min
    half = float((1 << (num_bits - 1)) - 1)

    def nudged(range_min, range_max):
        """TensorFlow's nudged range: `(min, max, scale, 1 / scale,
        zero point - quant_min)`."""
        if symmetric and narrow_range:
            width = range_max + range_max
            scale = width / steps
            return -half * scale, half * scale, scale, steps / width, half
        scale = (range_max - range_min) / steps
        inv_scale = steps / (range_max - range_min)
        # The zero point is rounded half away from zero (std::round; never
        # negative here) and clamped.
        zero_from_min = quant_min - range_min / scale
        zero = tf.floor(zero_from_min)
        zero += tf.cast(zero_from_min - zero >= 0.5, zero.dtype)
        zero = tf.clip_by_value(zero, quant_min, quant_max)
        nudged_min = (quant_min - zero) * scale
        nudged_max = (quant_max - zero) * scale
        quant_zero = tf.floor(-nudged_min * inv_scale + 0.5)
        return nudged_min, nudged_max, scale, inv_scale, quant_zero

    @tf.custom_gradient
    def per_channel(x, range_min, range_max):
        nudged_min, nudged_max, scale, inv_scale, quant_zero = nudged(
            range_min, range_max
        )
        if magnitudes is None:
            clamped = tf.maximum(tf.minimum(x, nudged_max), nudged_min)
        else:
            clamped = x
        shifted = (clamped - nudged_min) * inv_scale - quant_zero
        outputs = tf.floor(shifted + 0.5) * scale

        def grad(upstream):
            axes = list(range(len(x.shape) - 1))
            below = tf.where(x < nudged_min, upstream, 0.0)
            above = tf.where(x > nudged_max, upstream, 0.0)
            if magnitudes is None:
                kept = tf.equal(clamped, x)
            else:
                kept = magnitudes <= nudged_max
            inside = tf.where(kept, upstream, 0.0)
            return (
                inside,
                tf.reduce_sum(below, axes),
                tf.reduce_sum(above, axes),
            )

        return outputs, grad

    return per_channel


def fake_quant(
    inputs,
    range_min,
    range_max,
    num_bits,
    narrow_range,
    axis,
    training=False,
    symmetric=False,
    magnitudes=None,
):
    """`keras.quantizers.fake_quant_with_min_max_vars`, with the TensorFlow
    op called directly when Keras would only add reshapes or transposes.

    With `training=True`, a per-channel range on a tensor of at least
    `ELEMENT_WISE_FROM` elements runs as element-wise ops (same values,
    same gradients; see `_per_channel_training_op`). `symmetric=True`
    says that `range_min` is `-range_max` (a symmetric quantizer's range),
    which those ops then take as given; `magnitudes`, `|inputs|` when no
    value of `inputs` lies outside that range (a range just taken from
    `inputs`), lets them skip the clamp (with `narrow_range`)."""
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
                if magnitudes is not None:
                    magnitudes = ops.reshape(magnitudes, moved)
                outputs = fake_quant(
                    ops.reshape(x, moved),
                    range_min,
                    range_max,
                    num_bits,
                    narrow_range,
                    axis=-1,
                    training=training,
                    symmetric=symmetric,
                    magnitudes=magnitudes,
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
            if (
                training
                and None not in shape
                and math.prod(shape) >= ELEMENT_WISE_FROM
            ):
                # Tensors, not variables: the gradient is for values.
                own_range = symmetric and narrow_range and (
                    magnitudes is not None
                )
                op = _per_channel_training_op(
                    num_bits,
                    narrow_range,
                    symmetric,
                    magnitudes if own_range else None,
                )
                return op(
                    tf.convert_to_tensor(x),
                    tf.convert_to_tensor(range_min),
                    tf.convert_to_tensor(range_max),
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
