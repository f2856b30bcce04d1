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
    for moving, batch in (
        (batch_norm.moving_mean, mean),
        (batch_norm.moving_variance, variance),
    ):
        updated = batch_norm.momentum * moving + (
            1.0 - batch_norm.momentum
        ) * batch
        if frozen is not False:
            updated = ops.where(frozen, moving, updated)
        moving.assign(updated)
    if frozen is False:
        return mean, variance
    return (
        ops.where(frozen, batch_norm.moving_mean, mean),
        ops.where(frozen, batch_norm.moving_variance, variance),
    )
