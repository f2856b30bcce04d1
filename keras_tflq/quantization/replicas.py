"""Statistics of the global batch under `tf.distribute`.

Under a `tf.distribute` strategy with several replicas each replica sees a
slice of the global batch. QAT keeps statistics of the values (activation
ranges, the batch moments of folded BatchNormalization layers) that must
describe the global batch, so that every replica stores the same value in
its copy of a range variable and a run on N replicas learns what a run on
one device learns from the same global batches. Outside a strategy (or with
one replica) these helpers return their inputs and add no ops.
"""

import keras
from keras import ops


def _replica_context():
    """The replica context of a multi-replica step, else `None`."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if not tf.distribute.has_strategy():
        return None
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync < 2:
        return None
    return context


def is_multi_replica():
    """Whether the caller runs in a step of several replicas."""
    return _replica_context() is not None


def global_range(range_min, range_max):
    """`(min, max)` over every replica of per-replica `range_min` and
    `range_max` (scalars or one value per channel).

    Example:

    >>> low, high = global_range(ops.min(x), ops.max(x))
    """
    context = _replica_context()
    if context is None:
        return range_min, range_max
    gathered = context.all_gather(
        ops.stack([range_min, range_max])[None], axis=0
    )
    return ops.min(gathered[:, 0], axis=0), ops.max(gathered[:, 1], axis=0)


def moments(inputs, axes):
    """`ops.moments(inputs, axes)` of the global batch: synchronized across
    replicas in a multi-replica step, as `BatchNormalization(
    synchronized=True)` computes them.

    Example:

    >>> mean, variance = moments(x, [0, 1, 2])
    """
    return ops.moments(inputs, axes, synchronized=is_multi_replica())
