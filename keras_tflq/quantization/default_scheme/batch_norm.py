"""BatchNormalization maths shared by the layers that fold or run it."""

from keras import ops

from keras_tflq.quantization import replicas


def batch_statistics(batch_norm, inputs, frozen):
    """The statistics `batch_norm` normalizes `inputs` with in training.

    The batch's mean and variance (over all axes but the last), which also
    move the moving statistics; once `frozen` (the layer's `bn_frozen`
    flag), the moving statistics, left as they are.

    Args:
        batch_norm: a built `BatchNormalization` layer on the last axis.
        inputs: the tensor it normalizes.
        frozen: `False`, `True`, or a boolean tensor (see
            `schedule_state.flag`).

    Returns:
        `(mean, variance)`, one value per channel each.
    """
    mean, variance = replicas.moments(
        inputs, list(range(len(inputs.shape) - 1))
    )
    _move_statistics(batch_norm, mean, variance, frozen)
    if frozen is False:
        return mean, variance
    return (
        ops.where(frozen, batch_norm.moving_mean, mean),
        ops.where(frozen, batch_norm.moving_variance, variance),
    )


def _move_statistics(batch_norm, mean, variance, frozen=False):
    """Moves `batch_norm`'s moving statistics toward the batch's, as Keras
    does (left as they are where `frozen`)."""
    momentum = batch_norm.momentum
    for moving, batch in (
        (batch_norm.moving_mean, mean),
        (batch_norm.moving_variance, variance),
    ):
        updated = momentum * moving + (1.0 - momentum) * batch
        if frozen is not False:
            updated = ops.where(frozen, moving, updated)
        moving.assign(updated)


def batch_normalize(batch_norm, inputs, frozen):
    """`inputs` normalized as `batch_norm` does in training: with the
    batch statistics (which move the moving ones) until `frozen`, then with
    the moving statistics.

    A float32 batch of rank 3 or 4 on one replica, with Python `frozen=False`,
    runs TensorFlow's fused batch-norm kernel (one op forward, one for the
    gradient, in place of about twenty); otherwise the same maths runs as
    `keras.ops` (what Keras' `BatchNormalization` runs). The arguments
    are those of `batch_statistics`.

    Returns:
        The normalized tensor.

    Example:

    >>> import keras
    >>> bn = keras.layers.BatchNormalization()
    >>> bn.build((2, 3))
    >>> y = batch_normalize(bn, ops.ones((2, 3)), frozen=False)
    """
    gamma = batch_norm.gamma if batch_norm.scale else None
    beta = batch_norm.beta if batch_norm.center else None
    if _fusable(batch_norm, inputs, frozen):
        return _fused_batch_normalize(batch_norm, inputs, gamma, beta)
    mean, variance = batch_statistics(batch_norm, inputs, frozen)
    return ops.batch_normalization(
        inputs,
        mean,
        variance,
        axis=-1,
        offset=beta,
        scale=gamma,
        epsilon=batch_norm.epsilon,
    )


# TensorFlow's fused kernel clamps a smaller epsilon up to this value.
_FUSED_MIN_EPSILON = 1.001e-5


def _fusable(batch_norm, inputs, frozen):
    import keras

    return (
        frozen is False
        and keras.backend.backend() == "tensorflow"
        and inputs.dtype == "float32"
        and len(inputs.shape) in (3, 4)
        and batch_norm.epsilon >= _FUSED_MIN_EPSILON
        and not replicas.is_multi_replica()
    )


def _fused_batch_normalize(batch_norm, inputs, gamma, beta):
    """Training-mode `BatchNormalization` with TensorFlow's fused kernel,
    the moving statistics moved as Keras moves them (with the biased batch
    variance: the kernel returns the unbiased one)."""
    import tensorflow as tf

    channels = inputs.shape[-1]
    images = inputs if len(inputs.shape) == 4 else inputs[:, None]
    outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        images,
        tf.ones((channels,)) if gamma is None else gamma,
        tf.zeros((channels,)) if beta is None else beta,
        epsilon=batch_norm.epsilon,
        is_training=True,
    )
    count = tf.cast(tf.size(images) // channels, variance.dtype)
    variance = variance * ((count - 1.0) / count)
    _move_statistics(
        batch_norm, tf.stop_gradient(mean), tf.stop_gradient(variance)
    )
    return outputs if len(inputs.shape) == 4 else outputs[:, 0]
