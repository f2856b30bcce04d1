"""Fake-quantization quantizers, with tfmot's names and constructor args.

A quantizer owns no state itself: `build()` creates its range variables on the
layer that uses it and returns them in a dict, and `__call__()` fake-quantizes
a tensor with them. This is the contract of
`tfmot.quantization.keras.quantizers.Quantizer`, so a tfmot user ports a
quantizer or a `QuantizeConfig` by changing imports only.
"""

import abc
import math

import keras
from keras import ops

from keras_tflq.quantization import replicas

_PACKAGE = "keras_tflq"


def _check_bool(name, value, owner):
    if not isinstance(value, bool):
        raise ValueError(
            f"Expected `{name}` to be a bool for {owner}. "
            f"Received: {name}={value!r}"
        )


class Quantizer(abc.ABC):
    """Base class of the quantizers used by a `QuantizeConfig`.

    Subclasses implement `build()` (create the variables the quantizer needs
    on the layer that owns it), `__call__()` (fake-quantize a tensor) and
    `get_config()`.
    """

    @abc.abstractmethod
    def build(self, tensor_shape, name, layer):
        """Creates the quantizer's variables on `layer`.

        Args:
            tensor_shape: shape of the tensor this quantizer quantizes.
            name: prefix for the variable names.
            layer: the layer that owns the variables (`layer.add_weight`).

        Returns:
            A dict of the created variables, passed back to `__call__()`.
        """

    @abc.abstractmethod
    def __call__(self, inputs, training, weights, **kwargs):
        """Fake-quantizes `inputs`.

        Args:
            inputs: the float tensor to quantize.
            training: whether the call is a training step (ranges update).
            weights: the dict returned by `build()`.
            **kwargs: `ranges_frozen` (a boolean tensor, or a Python bool
                when it is known when the step is traced) keeps the stored
                range in training; other keys are ignored, as in tfmot.

        Returns:
            The fake-quantized tensor.
        """

    @abc.abstractmethod
    def get_config(self):
        """Returns the constructor arguments as a dict."""

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == (
            other.get_config()
        )

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        # Equal quantizers (same class and config) hash alike.
        config = sorted(self.get_config().items())
        return hash((type(self), repr(config)))


class _RangeQuantizer(Quantizer):
    """Shared machinery of the min/max range quantizers (not exported).

    Args:
        num_bits: bit width of the quantized values, 2 to 16.
        per_axis: one range per slice along `axis` (per channel) instead
            of one for the whole tensor.
        symmetric: range symmetric around zero (`[-m, m]`), as TFLite
            requires for int8 weights and int16 activations.
        narrow_range: use `[1, 2**num_bits - 1]` instead of
            `[0, 2**num_bits - 1]` (the int8 weight range `[-127, 127]`).
        axis: the channel axis when `per_axis=True`. Defaults to `-1`
            (tfmot always uses the last axis).
    """

    def __init__(self, num_bits, per_axis, symmetric, narrow_range, axis=-1):
        owner = type(self).__name__
        if (
            isinstance(num_bits, bool)
            or not isinstance(num_bits, int)
            or not 2 <= num_bits <= 16
        ):
            raise ValueError(
                f"Expected `num_bits` to be an int between 2 and 16 for "
                f"{owner}. Received: num_bits={num_bits!r}"
            )
        _check_bool("per_axis", per_axis, owner)
        _check_bool("symmetric", symmetric, owner)
        _check_bool("narrow_range", narrow_range, owner)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(
                f"Expected `axis` to be an int for {owner}. "
                f"Received: axis={axis!r}"
            )
        self.num_bits = num_bits
        self.per_axis = per_axis
        self.symmetric = symmetric
        self.narrow_range = narrow_range
        self.axis = axis

    def _range_shape(self, tensor_shape):
        if not self.per_axis:
            return ()
        if tensor_shape is None or tensor_shape[self.axis] is None:
            raise ValueError(
                f"Expected a known size along axis {self.axis} for a "
                f"per-axis {type(self).__name__}. "
                f"Received: tensor_shape={tensor_shape}"
            )
        return (tensor_shape[self.axis],)

    # Whether the range accumulates over steps (and so must know the first).
    _accumulates = False

    def build(self, tensor_shape, name, layer):
        shape = self._range_shape(tensor_shape)
        weights = {
            "min_var": layer.add_weight(
                name=f"{name}_min",
                shape=shape,
                initializer=keras.initializers.Constant(-6.0),
                trainable=False,
            ),
            "max_var": layer.add_weight(
                name=f"{name}_max",
                shape=shape,
                initializer=keras.initializers.Constant(6.0),
                trainable=False,
            ),
        }
        if self._accumulates:
            weights["initialized"] = layer.add_weight(
                name=f"{name}_initialized",
                shape=(),
                initializer="zeros",
                trainable=False,
            )
        return weights

    def _reduce_axes(self, x):
        """The axes a range reduces over (all but `axis` when per-axis)."""
        if not self.per_axis:
            return None
        axis = self.axis % len(x.shape)
        return tuple(i for i in range(len(x.shape)) if i != axis)

    def _batch_range(self, x):
        """The range of `x` (per channel when `per_axis`), containing zero,
        symmetric if asked, and at least 1e-6 wide."""
        reduce_axes = self._reduce_axes(x)
        if self.symmetric:
            bound = ops.maximum(ops.max(ops.abs(x), axis=reduce_axes), 1e-6)
            return -bound, bound
        range_min = ops.minimum(ops.min(x, axis=reduce_axes), 0.0)
        range_max = ops.maximum(ops.max(x, axis=reduce_axes), 1e-6)
        return range_min, range_max

    @abc.abstractmethod
    def _updated_range(self, batch_min, batch_max, weights):
        """The new range in a training step, given the batch range."""

    def _mark_seen(self, weights):
        """Records that a training step ran (accumulating quantizers)."""
        if self._accumulates:
            weights["initialized"].assign(1.0)

    def compute_range(self, inputs, training, weights, ranges_frozen=None):
        """The range `__call__` quantizes `inputs` with, as `(min, max)`.

        In training, the range is updated from `inputs` and stored, unless
        `ranges_frozen` (as in `__call__`); it is a statistic of the
        values: no gradient flows into it. At inference, the stored range.
        """
        min_var, max_var = weights["min_var"], weights["max_var"]
        if not training or ranges_frozen is True:
            if training:
                self._mark_seen(weights)
            return min_var, max_var
        values = ops.stop_gradient(ops.convert_to_tensor(inputs))
        new_min, new_max = self._updated_range(
            *replicas.global_range(*self._batch_range(values)), weights
        )
        if ranges_frozen is not None and ranges_frozen is not False:
            new_min = ops.where(ranges_frozen, min_var, new_min)
            new_max = ops.where(ranges_frozen, max_var, new_max)
        min_var.assign(new_min)
        max_var.assign(new_max)
        return new_min, new_max

    def __call__(self, inputs, training, weights, **kwargs):
        # `ranges_frozen`: a boolean tensor, or a Python bool when it is
        # known when the step is traced. Frozen by a QuantizationSchedule:
        # keep the learned range.
        range_min, range_max = self.compute_range(
            inputs, training, weights, kwargs.get("ranges_frozen")
        )
        return fake_quant(
            inputs,
            range_min,
            range_max,
            num_bits=self.num_bits,
            narrow_range=self.narrow_range,
            axis=self.axis if self.per_axis else None,
        )

    def get_config(self):
        config = {
            "num_bits": self.num_bits,
            "per_axis": self.per_axis,
            "symmetric": self.symmetric,
            "narrow_range": self.narrow_range,
        }
        if self.axis != -1:
            config["axis"] = self.axis
        return config


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


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LastValueQuantizer(_RangeQuantizer):
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
class MovingAverageQuantizer(_RangeQuantizer):
    """Quantizes with an exponential moving average of the range (activations).

    The first training step sets the range to the batch's min/max; later
    steps move it by `1 - ema_decay` toward each batch's range.

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
        # decay * range + (1 - decay) * batch, in one op less.
        new_min = batch_min + decay * (weights["min_var"] - batch_min)
        new_max = batch_max + decay * (weights["max_var"] - batch_max)
        initialized.assign(1.0)
        return new_min, new_max

    def get_config(self):
        return {**super().get_config(), "ema_decay": self.ema_decay}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AllValuesQuantizer(_RangeQuantizer):
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
