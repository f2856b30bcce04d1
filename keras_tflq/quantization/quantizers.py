"""Fake-quantization quantizers, with tfmot's names and constructor args.

`Quantizer` is the contract (see `quantizer_base`); the three quantizers
below are tfmot's, registered for saving as `keras_tflq>ClassName`.
"""

import keras
from keras import ops

from keras_tflq.quantization.quantizer_base import Quantizer
from keras_tflq.quantization.quantizer_base import RangeQuantizer

_PACKAGE = "keras_tflq"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LastValueQuantizer(RangeQuantizer):
    """Quantizes with the range of the latest value seen (for weights).

    In training, the range is the min/max of the tensor being quantized;
    at inference, the range of the last training step is used.

    Args:
        num_bits: bit width of the quantized values, 2 to 16.
        per_axis: one range per channel (along `axis`) instead of one for
            the whole tensor.
        symmetric: range symmetric around zero.
        narrow_range: use `[1, 2**num_bits - 1]` instead of
            `[0, 2**num_bits - 1]`.
        axis: the channel axis when `per_axis=True` (a keras_tflq
            extension; tfmot always uses the last axis). Defaults to `-1`.

    Example:

    >>> from keras_tflq import quantizers
    >>> q = quantizers.LastValueQuantizer(
    ...     num_bits=8, per_axis=False, symmetric=True, narrow_range=True)
    >>> q.get_config()["num_bits"]
    8
    """

    def _updated_range(self, batch_min, batch_max, weights):
        return batch_min, batch_max


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MovingAverageQuantizer(RangeQuantizer):
    """Quantizes with an exponential moving average of the range (activations).

    The first training step sets the range to the batch's min/max; later
    steps move it by `1 - ema_decay` toward each batch's range. The range
    of values known to be non-negative (a ReLU's output) has its minimum
    at 0.

    Args:
        num_bits: bit width of the quantized values, 2 to 16.
        per_axis: one range per channel (along `axis`).
        symmetric: range symmetric around zero.
        narrow_range: use `[1, 2**num_bits - 1]` instead of
            `[0, 2**num_bits - 1]`.
        ema_decay: decay of the moving average, in `[0, 1)`.
            Defaults to `0.999` (tfmot's value).
        axis: the channel axis when `per_axis=True`. Defaults to `-1`.

    Example:

    >>> from keras_tflq import quantizers
    >>> q = quantizers.MovingAverageQuantizer(
    ...     num_bits=8, per_axis=False, symmetric=False, narrow_range=False)
    >>> q.ema_decay
    0.999
    """

    def __init__(
        self,
        num_bits,
        per_axis,
        symmetric,
        narrow_range,
        ema_decay=0.999,
        axis=-1,
    ):
        super().__init__(num_bits, per_axis, symmetric, narrow_range, axis)
        if isinstance(ema_decay, bool) or not (
            isinstance(ema_decay, (int, float)) and 0.0 <= ema_decay < 1.0
        ):
            raise ValueError(
                "Expected `ema_decay` to be a float in [0, 1) for "
                f"MovingAverageQuantizer. Received: ema_decay={ema_decay!r}"
            )
        self.ema_decay = float(ema_decay)

    _accumulates = True

    def _updated_range(self, batch_min, batch_max, weights):
        initialized = weights["initialized"]
        # `initialized` is 0 before the first training step, then 1: the
        # first step takes the batch range.
        decay = self.ema_decay * initialized
        # decay * range + (1 - decay) * batch, in one op less. A batch
        # known to be non-negative (the Python 0.0 of a ReLU's output)
        # keeps the minimum at exactly 0, where every update takes it:
        # a stored minimum below 0 (the initial -6 of a range frozen from
        # the first step) is no statistic of the values.
        if isinstance(batch_min, float) and batch_min == 0.0:
            new_min = 0.0
        else:
            new_min = batch_min + decay * (weights["min_var"] - batch_min)
        new_max = batch_max + decay * (weights["max_var"] - batch_max)
        initialized.assign(1.0)
        return new_min, new_max

    def get_config(self):
        return {**super().get_config(), "ema_decay": self.ema_decay}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AllValuesQuantizer(RangeQuantizer):
    """Quantizes with the min/max over every value seen in training.

    Args:
        num_bits: bit width of the quantized values, 2 to 16.
        per_axis: one range per channel (along `axis`).
        symmetric: range symmetric around zero.
        narrow_range: use `[1, 2**num_bits - 1]` instead of
            `[0, 2**num_bits - 1]`.
        axis: the channel axis when `per_axis=True`. Defaults to `-1`.

    Example:

    >>> from keras_tflq import quantizers
    >>> q = quantizers.AllValuesQuantizer(
    ...     num_bits=8, per_axis=False, symmetric=False, narrow_range=False)
    >>> q.symmetric
    False
    """

    _accumulates = True

    def _updated_range(self, batch_min, batch_max, weights):
        initialized = weights["initialized"]
        seen = initialized > 0.5
        new_min = ops.where(
            seen, ops.minimum(weights["min_var"], batch_min), batch_min
        )
        new_max = ops.where(
            seen, ops.maximum(weights["max_var"], batch_max), batch_max
        )
        initialized.assign(1.0)
        return new_min, new_max


__all__ = [
    "Quantizer",
    "LastValueQuantizer",
    "MovingAverageQuantizer",
    "AllValuesQuantizer",
]
